//! A backend's reply (head, framing, chunked body) as the proxy reads it, cut into reads of the first
//! byte's size.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlxbox_core::fuzzing::backend_reply(data);
});
