//! A control-API config edit request (JSON) applied to the real mlx-box settings.toml.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlxbox_core::fuzzing::config_edit(data);
});
