//! `wazn_fuzz::tokenizer_json`: see its documentation for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wazn_fuzz::tokenizer_json(data));
