//! settings.toml parsing and validation on arbitrary text.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlxbox_core::fuzzing::settings(data);
});
