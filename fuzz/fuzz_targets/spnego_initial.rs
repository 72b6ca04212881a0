#![no_main]
//! The first Negotiate token. A decoded NegTokenInit must survive
//! encode → decode unchanged (extension fields aside, which are skipped).

use iwa_proto::spnego::{decode_initial_token, encode_initial_token, InitialToken};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_initial_token(data) {
        Ok(InitialToken::Spnego(init)) => {
            assert!(!init.mech_types.is_empty());
            for oid in &init.mech_types {
                let _ = oid.to_dotted();
            }
            let der = encode_initial_token(
                &init.mech_types,
                init.req_flags,
                init.mech_token,
                init.mech_list_mic,
            );
            match decode_initial_token(&der) {
                Ok(InitialToken::Spnego(again)) => {
                    assert_eq!(again.mech_types, init.mech_types);
                    assert_eq!(again.req_flags, init.req_flags);
                    assert_eq!(again.mech_token, init.mech_token);
                    assert_eq!(again.mech_list_mic, init.mech_list_mic);
                    assert_eq!(again.mech_types_der, init.mech_types_der);
                }
                // Re-encoding can only grow past MAX_TOKEN_LEN if the input was close to it.
                Err(iwa_proto::spnego::SpnegoError::TooLong { .. }) => {}
                other => panic!("re-encoded NegTokenInit did not decode: {other:?}"),
            }
        }
        Ok(InitialToken::Kerberos { token }) => assert_eq!(token, data),
        Ok(InitialToken::Ntlmssp { message }) => assert_eq!(message, data),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
