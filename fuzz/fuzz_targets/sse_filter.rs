//! The reasoning filter over an SSE stream cut at arbitrary points (the first byte picks the chunk size).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mlxbox_core::fuzzing::sse_filter(data);
});
