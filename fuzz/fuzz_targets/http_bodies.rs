//! `wazn_fuzz::http_bodies`: see its documentation for the input and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wazn_fuzz::http_bodies(data));
