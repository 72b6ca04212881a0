#![no_main]
//! A request's `Cookie` header, as the gateway reads it: the session cookie
//! (`SessionSettings::lookup`) and the impersonation cookie
//! (`Impersonator::resolve`), under a fixed key ring. Whatever the bytes, the answer is
//! "absent" or "invalid/ignored" (a forgery cannot authenticate), never a panic; and
//! stripping leaves no cookie of that name behind.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::header::{HeaderMap, HeaderValue, COOKIE};
use iwa::impersonation::{ImpersonationSettings, Impersonator, Resolution};
use iwa::session::{SessionLookup, SessionSettings};
use iwa::ticket::{KeyRing, MemoryRevocationStore, TicketCodec, TicketLifetime};
use iwa::{AuthMethod, Identity};
use libfuzzer_sys::fuzz_target;

struct Fixture {
    session: SessionSettings,
    imp: Impersonator,
    real: Identity,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let codec = Arc::new(TicketCodec::new(KeyRing::from_keys(
            &[7u8; 32],
            &[[8u8; 32]],
        )));
        let imp = Impersonator::new(ImpersonationSettings {
            codec: codec.clone(),
            revocations: Arc::new(MemoryRevocationStore::new()),
            policy: Arc::new(iwa::impersonation::ImpersonationPolicy {
                allow_impersonation: vec!["alice@EX.TEST".into()],
                ..Default::default()
            }),
            rules: Arc::default(),
            cookie_name: "iwa_impersonation".into(),
            lifetime: TicketLifetime::DEFAULT,
            secure: false,
            require_reason: false,
        });
        Fixture {
            session: SessionSettings::new(codec),
            imp,
            real: Identity::from_principal(
                "alice@EX.TEST",
                AuthMethod::Kerberos,
                &Default::default(),
            ),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let f = fixture();
    let mut headers = HeaderMap::new();
    headers.insert(COOKIE, value);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match f.session.lookup(&headers, now) {
        SessionLookup::Valid { .. } => panic!("a forged session cookie was accepted"),
        SessionLookup::Invalid(e) => {
            let _ = e.to_string();
        }
        SessionLookup::Absent => {}
    }
    match f.imp.resolve(&f.real, &headers, now) {
        Resolution::Active(_) => panic!("a forged impersonation cookie was accepted"),
        Resolution::Ignored { why, .. } => {
            let _ = (why.code(), why.to_string());
        }
        Resolution::None => {}
    }
    f.imp.strip(&mut headers);
    assert!(!f.imp.has_cookie(&headers), "strip left the cookie");
    f.session.strip(&mut headers);
});
