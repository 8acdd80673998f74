//! The proxy's read of a request body (top-level `model`, `stream`) and the alias splice.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlxbox_core::fuzzing::request_body(data);
});
