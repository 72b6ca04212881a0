#![no_main]
//! NegTokenResp (later Negotiate legs). A decoded token must survive
//! encode → decode unchanged.

use iwa_proto::spnego::{decode_neg_token_resp, SpnegoError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_neg_token_resp(data) {
        Ok(resp) => {
            let der = resp.encode();
            match decode_neg_token_resp(&der) {
                Ok(again) => assert_eq!(again, resp),
                Err(SpnegoError::TooLong { .. }) => {}
                Err(e) => panic!("re-encoded NegTokenResp did not decode: {e}"),
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
