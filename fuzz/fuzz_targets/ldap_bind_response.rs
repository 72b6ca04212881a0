#![no_main]
//! What the directory sends during our SASL GSSAPI bind: the message framing
//! (`message_length`), the `BindResponse` decoder, the security-layer offer and a
//! SASL buffer header. A message the framer accepts must be exactly as long as it
//! said, and the decoder must never read past it.

use iwa_proto::ldap::{
    decode_bind_response, decode_security_offer, message_length, sasl_frame_length,
    MAX_BIND_MESSAGE,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match message_length(data, MAX_BIND_MESSAGE) {
        Ok(Some(n)) => {
            assert!(n <= MAX_BIND_MESSAGE);
            if let Some(msg) = data.get(..n) {
                if let Ok(r) = decode_bind_response(msg) {
                    let _ = r.diagnostic_text();
                    if let Some(creds) = r.server_sasl_creds {
                        assert!(creds.len() < n);
                    }
                }
            }
        }
        // Only a header still incomplete: tag, length octet, at most 4 more.
        Ok(None) => assert!(data.len() < 6),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Err(e) = decode_bind_response(data) {
        let _ = e.to_string();
    }
    let _ = decode_security_offer(data.get(..4.min(data.len())).unwrap_or_default());
    if let Some(h) = data.get(..4) {
        if let Ok(len) = sasl_frame_length([h[0], h[1], h[2], h[3]], 1 << 20) {
            assert!((1..=1 << 20).contains(&len));
        }
    }
});
