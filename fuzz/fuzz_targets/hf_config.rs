//! `wazn_fuzz::hf_config`: see its documentation for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wazn_fuzz::hf_config(data));
