#![no_main]
//! Any NTLMSSP message (NEGOTIATE, CHALLENGE, AUTHENTICATE). A decoded
//! message must survive encode → decode unchanged; the NTLMv2 response and
//! AV_PAIR decoders run on whatever they can reach.

use iwa_proto::ntlm::{AvPairs, NtlmMessage, NtlmV2Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match NtlmMessage::decode(data) {
        Ok(msg) => {
            let bytes = msg.encode().expect("a decoded message re-encodes");
            let again = NtlmMessage::decode(&bytes).expect("a re-encoded message decodes");
            assert_eq!(again, msg);
            if let NtlmMessage::Authenticate(a) = &msg {
                let _ = NtlmV2Response::decode(&a.nt_response);
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = AvPairs::decode(data);
});
