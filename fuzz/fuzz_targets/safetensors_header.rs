//! `wazn_fuzz::safetensors_header`: see its documentation for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wazn_fuzz::safetensors_header(data));
