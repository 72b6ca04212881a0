#![no_main]
//! `X-Iwa-Assertion` as a backend verifies it: arbitrary text never verifies (under an
//! HS256 secret and an Ed25519 key) and never panics; and an assertion signed for an
//! identity built from the input verifies back to the same claims, with either key.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use iwa::assertion::{verify, Signer, SigningKey, VerifyingKey};
use iwa::{AuthMethod, Group, Identity};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-fuzzing!!";
/// RFC 8037 A.1's private key (PKCS#8 v1 DER), a fixed Ed25519 key for the target.
const ED_PKCS8: [u8; 48] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a, 0xf4, 0x92, 0xec, 0x2c, 0xc4,
    0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32, 0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
];

struct Keys {
    signers: Vec<Signer>,
    verifying: Vec<VerifyingKey>,
}

fn keys() -> &'static Keys {
    static K: OnceLock<Keys> = OnceLock::new();
    K.get_or_init(|| {
        let hs = SigningKey::hs256(SECRET.to_vec()).expect("secret");
        let ed = SigningKey::ed25519_from_pkcs8_der(&ED_PKCS8).expect("ed25519 key");
        let verifying = vec![hs.verifying_key(), ed.verifying_key()];
        Keys {
            signers: vec![
                Signer::with_key(hs, "app", Duration::from_secs(60)),
                Signer::with_key(ed, "app", Duration::from_secs(60)),
            ],
            verifying,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keys();
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let text = String::from_utf8_lossy(data);
    if let Ok(claims) = verify(&k.verifying, &text, "app", "GET", "/", now, Duration::ZERO) {
        panic!("arbitrary input verified: {claims:?}");
    }

    // Round trip: an identity made of the input's pieces.
    let mut parts = text.split('\u{0}');
    let user = parts.next().unwrap_or("").to_owned();
    let path = format!("/{}", parts.next().unwrap_or(""));
    let mut id = Identity::from_principal(
        &format!("{user}@EX.TEST"),
        AuthMethod::Ntlm,
        &Default::default(),
    );
    id.sid = parts.next().map(str::to_owned);
    id.groups = parts
        .map(|g| Group {
            sid: None,
            name: Some(g.to_owned()),
        })
        .collect();
    let impersonator = user.get(..user.len() / 2);
    for signer in &k.signers {
        let Ok(token) = signer.sign(&id, impersonator, "POST", &path, now) else {
            continue;
        };
        let claims = verify(
            &k.verifying,
            &token,
            "app",
            "POST",
            &path,
            now,
            Duration::ZERO,
        )
        .expect("a genuine assertion verifies");
        assert_eq!(claims.upn, id.principal);
        assert_eq!(claims.sid, id.sid);
        assert_eq!(claims.act.as_deref(), impersonator);
        // Bound to its request.
        assert!(verify(
            &k.verifying,
            &token,
            "app",
            "GET",
            &path,
            now,
            Duration::ZERO
        )
        .is_err());
        assert!(verify(
            &k.verifying,
            &token,
            "other",
            "POST",
            &path,
            now,
            Duration::ZERO
        )
        .is_err());
    }
});
