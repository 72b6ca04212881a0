#![no_main]
//! `Authorization` header values; a decoded Negotiate token is fed on to the
//! SPNEGO decoder, as the gateway does.

use iwa_proto::authz::{challenge_value, parse_authorization, ChallengeScheme, Credentials};
use iwa_proto::spnego::decode_initial_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_authorization(data) {
        Ok(Credentials::Negotiate(token)) => {
            assert!(!token.is_empty());
            let _ = decode_initial_token(&token);
            let again = challenge_value(ChallengeScheme::Negotiate, Some(&token));
            assert_eq!(
                parse_authorization(again.as_bytes()),
                Ok(Credentials::Negotiate(token))
            );
        }
        Ok(Credentials::Ntlm(token)) => {
            let again = challenge_value(ChallengeScheme::Ntlm, Some(&token));
            assert_eq!(
                parse_authorization(again.as_bytes()),
                Ok(Credentials::Ntlm(token))
            );
        }
        Ok(Credentials::Other(name)) => assert!(name.len() <= 32),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
