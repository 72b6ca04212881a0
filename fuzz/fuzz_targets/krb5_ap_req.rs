#![no_main]
//! The clear-text parts of a Kerberos AP-REQ initial context token (replay-cache
//! key, log fields).

use iwa_proto::krb5::parse_initial_context_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_initial_context_token(data) {
        Ok(info) => {
            let _ = info.service_principal();
            let _ = format!("{info:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
