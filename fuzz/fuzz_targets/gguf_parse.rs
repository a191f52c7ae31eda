//! `wazn_fuzz::gguf_parse`: see its documentation for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wazn_fuzz::gguf_parse(data));
