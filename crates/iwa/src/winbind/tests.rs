//! The winbind validator without a domain: fake transports stand in for winbindd (a
//! fake DC that checks NTLMv2 with an NT hash, a dead winbindd, a hung one). The real
//! thing is covered by `crates/iwa-gateway/tests/ntlm_ad.rs` against a Samba AD DC.

use super::*;
use crate::ntlm::{filetime_now, start, NtlmSettings};
use iwa_proto::ntlm::client::ClientAuth;
use iwa_proto::ntlm::{crypto, NtlmError};
use std::sync::Condvar;
use std::time::Instant;

const DOMAIN_SID: &str = "S-1-5-21-1-2-3";

/// A domain controller in a box: knows alice's NT hash, checks NTProofStr like a DC,
/// returns the SessionBaseKey and SIDs (with the duplicate primary group winbind sends).
struct FakeDc {
    nt_hash: [u8; 16],
    /// Corrupts the returned session key (a DC answer that must fail the MIC).
    wrong_key: bool,
    guest: bool,
    seen: Mutex<Vec<LogonRequest>>,
}

impl FakeDc {
    fn new(password: &str) -> Self {
        FakeDc {
            nt_hash: crypto::nt_hash(password),
            wrong_key: false,
            guest: false,
            seen: Mutex::new(Vec::new()),
        }
    }
}

impl WinbindTransport for FakeDc {
    fn authenticate(&self, r: &LogonRequest) -> Result<LogonInfo, WbcFailure> {
        self.seen.lock().unwrap().push(r.clone());
        if !r.user.eq_ignore_ascii_case("alice") {
            return Err(WbcFailure::Auth {
                nt_status: 0xC000_0064,
                nt_string: "NT_STATUS_NO_SUCH_USER".into(),
                authoritative: true,
            });
        }
        let proof: [u8; 16] = r.nt_response[..16].try_into().unwrap();
        let temp = &r.nt_response[16..];
        // Like Samba: the domain as sent, else the empty domain.
        for domain in [r.domain.as_str(), ""] {
            let key = crypto::nt_owf_v2(&self.nt_hash, &r.user, domain);
            if crypto::nt_proof_str(&key, &r.challenge, temp) == proof {
                let mut session_key = crypto::session_base_key(&key, &proof);
                if self.wrong_key {
                    session_key[0] ^= 1;
                }
                let sid = |rid: u32| format!("{DOMAIN_SID}-{rid}");
                return Ok(LogonInfo {
                    account: "alice".into(),
                    domain: "EXAMPLE".into(),
                    user_flags: if self.guest {
                        WBC_AUTH_USER_INFO_GUEST
                    } else {
                        0
                    },
                    session_key,
                    sids: vec![sid(1103), sid(513), sid(513), sid(1107), sid(1108)],
                });
            }
        }
        Err(WbcFailure::Auth {
            nt_status: 0xC000_006A,
            nt_string: "NT_STATUS_WRONG_PASSWORD".into(),
            authoritative: true,
        })
    }
}

/// winbindd is not running.
struct Dead;

impl WinbindTransport for Dead {
    fn authenticate(&self, _: &LogonRequest) -> Result<LogonInfo, WbcFailure> {
        Err(WbcFailure::Wbc {
            code: wbc_err::WINBIND_NOT_AVAILABLE,
            text: "Winbind daemon is not available".into(),
        })
    }
}

/// winbindd accepts the request and never answers (until released).
#[derive(Default)]
struct Hung {
    released: Mutex<bool>,
    cv: Condvar,
    entered: Mutex<usize>,
}

impl Hung {
    fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.cv.notify_all();
    }
}

impl WinbindTransport for Hung {
    fn authenticate(&self, _: &LogonRequest) -> Result<LogonInfo, WbcFailure> {
        *self.entered.lock().unwrap() += 1;
        let mut r = self.released.lock().unwrap();
        while !*r {
            r = self.cv.wait(r).unwrap();
        }
        Err(WbcFailure::Wbc {
            code: wbc_err::WINBIND_NOT_AVAILABLE,
            text: "late".into(),
        })
    }
}

fn validator(t: Arc<dyn WinbindTransport>, timeout: Duration, max: usize) -> WinbindValidator {
    let mut s = WinbindSettings::new("EXAMPLE");
    s.timeout = timeout;
    s.max_outstanding = max;
    WinbindValidator::with_transport(s, t)
}

fn handshake_with(
    v: &WinbindValidator,
    client: &ClientAuth,
    tamper: impl FnOnce(&mut Vec<u8>),
) -> Result<NtlmUser, NtlmFailure> {
    let config = Arc::new(NtlmSettings::new("EXAMPLE").server_config());
    let negotiate = iwa_proto::ntlm::client::negotiate(NegotiateFlags(0xe208_8297)).unwrap();
    let (state, challenge) = start(&config, &negotiate)?;
    let mut auth = client.authenticate(&negotiate, &challenge).unwrap();
    tamper(&mut auth);
    v.verify(state, &auth, filetime_now())
}

fn handshake(
    v: &WinbindValidator,
    user: &str,
    domain: &str,
    password: &str,
) -> Result<NtlmUser, NtlmFailure> {
    handshake_with(v, &ClientAuth::new(user, domain, password), |_| {})
}

#[test]
fn right_password_gives_the_directory_identity_and_sids() {
    let dc = Arc::new(FakeDc::new("pw"));
    let v = validator(dc.clone(), Duration::from_secs(5), 4);
    let u = handshake(&v, "ALICE", "example", "pw").unwrap();
    assert_eq!((u.user.as_str(), u.domain.as_str()), ("alice", "EXAMPLE"));
    assert_eq!(u.sid.as_deref(), Some("S-1-5-21-1-2-3-1103"));
    assert_eq!(
        u.group_sids,
        vec![
            "S-1-5-21-1-2-3-513",
            "S-1-5-21-1-2-3-1107",
            "S-1-5-21-1-2-3-1108"
        ]
    );
    // The client's random session key, recovered from the DC's SessionBaseKey under
    // KEY_EXCH (the MIC verified with it).
    assert_eq!(u.session_key, [0x55; 16]);
    let seen = dc.seen.lock().unwrap();
    assert_eq!(seen[0].user, "ALICE");
    assert_eq!(seen[0].domain, "example");
    assert_eq!(seen[0].workstation, "WORKSTATION");
}

#[test]
fn a_slot_is_free_as_soon_as_the_answer_is() {
    // One slot, calls back to back: each must find it free (the worker releases it
    // before the caller sees the result).
    let v = validator(Arc::new(FakeDc::new("pw")), Duration::from_secs(5), 1);
    for _ in 0..50 {
        handshake(&v, "alice", "EXAMPLE", "pw").unwrap();
        assert_eq!(v.workers.counts.lock().unwrap().outstanding, 0);
    }
    assert_eq!(v.workers.counts.lock().unwrap().threads, 1);
}

#[test]
fn no_domain_from_the_client_asks_for_the_configured_one() {
    let dc = Arc::new(FakeDc::new("pw"));
    let v = validator(dc.clone(), Duration::from_secs(5), 4);
    handshake(&v, "alice", "", "pw").unwrap();
    assert_eq!(dc.seen.lock().unwrap()[0].domain, "EXAMPLE");
}

#[test]
fn directory_refusals_name_the_nt_status() {
    let v = validator(Arc::new(FakeDc::new("pw")), Duration::from_secs(5), 4);
    let e = handshake(&v, "alice", "EXAMPLE", "wrong").unwrap_err();
    assert!(
        matches!(
            e,
            NtlmFailure::Directory {
                status: 0xC000_006A,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("NT_STATUS_WRONG_PASSWORD"), "{e}");
    assert!(e.to_string().contains("EXAMPLE\\alice"), "{e}");
    let e = handshake(&v, "mallory", "EXAMPLE", "pw").unwrap_err();
    assert!(matches!(e, NtlmFailure::UnknownUser { .. }), "{e:?}");
}

#[test]
fn the_mic_is_checked_with_the_key_the_dc_returned() {
    let mut dc = FakeDc::new("pw");
    dc.wrong_key = true;
    let v = validator(Arc::new(dc), Duration::from_secs(5), 4);
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    assert!(
        matches!(e, NtlmFailure::Refused(NtlmError::MicMismatch)),
        "{e:?}"
    );
    // And a tampered message with the right key: the MIC covers it.
    let v = validator(Arc::new(FakeDc::new("pw")), Duration::from_secs(5), 4);
    let client = ClientAuth::new("alice", "EXAMPLE", "pw");
    let e = handshake_with(&v, &client, |m| {
        // NegotiateFlags at offset 60: clear a bit the MIC protects.
        m[60] ^= 0x10;
    })
    .unwrap_err();
    assert!(matches!(e, NtlmFailure::Refused(_)), "{e:?}");
}

#[test]
fn guest_logons_are_refused() {
    let mut dc = FakeDc::new("pw");
    dc.guest = true;
    let v = validator(Arc::new(dc), Duration::from_secs(5), 4);
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    assert!(matches!(e, NtlmFailure::Guest { .. }), "{e:?}");
}

#[test]
fn checks_that_need_no_secret_come_before_the_dc() {
    let dc = Arc::new(FakeDc::new("pw"));
    let v = validator(dc.clone(), Duration::from_secs(5), 4);
    let e = handshake_with(&v, &ClientAuth::new("alice", "EXAMPLE", "pw"), |m| {
        m.truncate(20);
    })
    .unwrap_err();
    assert!(matches!(e, NtlmFailure::Refused(_)), "{e:?}");
    assert!(dc.seen.lock().unwrap().is_empty());
}

#[test]
fn winbind_not_running_is_unavailable() {
    let v = validator(Arc::new(Dead), Duration::from_secs(5), 4);
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    match &e {
        NtlmFailure::Unavailable(why) => {
            assert!(why.contains("winbindd_priv"), "{why}");
            assert!(why.contains("not available"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let status = crate::error::AuthError::Ntlm(e).status();
    assert_eq!(status, http::StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn a_hung_winbindd_times_out_and_outstanding_calls_are_bounded() {
    let hung = Arc::new(Hung::default());
    let v = Arc::new(validator(hung.clone(), Duration::from_millis(200), 2));
    let t = Instant::now();
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    assert!(
        matches!(&e, NtlmFailure::Unavailable(w) if w.contains("did not answer within 200 ms")),
        "{e:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A second stuck call fills the two slots; the third fails at once.
    assert!(matches!(
        handshake(&v, "alice", "EXAMPLE", "pw"),
        Err(NtlmFailure::Unavailable(_))
    ));
    let t = Instant::now();
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    assert!(
        matches!(&e, NtlmFailure::Unavailable(w) if w.contains("already outstanding")),
        "{e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(*hung.entered.lock().unwrap(), 2);
    // winbindd wakes up: the slots come back.
    hung.release();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = v.workers.counts.lock().unwrap().outstanding;
        if c == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "outstanding stays {c}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let e = handshake(&v, "alice", "EXAMPLE", "pw").unwrap_err();
    assert!(
        matches!(&e, NtlmFailure::Unavailable(w) if w.contains("late")),
        "{e:?}"
    );
    // Threads are reused, never more than the bound.
    assert!(v.workers.counts.lock().unwrap().threads <= 2);
}

#[test]
fn a_missing_library_is_a_clear_error() {
    let e = Libwbclient::load("libwbclient-iwa-test-absent.so.0").unwrap_err();
    assert!(e.contains("libwbclient-iwa-test-absent.so.0"), "{e}");
    assert!(e.contains("apt install libwbclient0"), "{e}");
    assert!(e.contains("validator = \"local\""), "{e}");
    // A library without the functions (libc) is refused too.
    let e = Libwbclient::load("libc.so.6").unwrap_err();
    assert!(e.contains("wbcCtxCreate not found"), "{e}");
}

#[test]
fn sid_strings() {
    assert_eq!(
        sid_string(1, [0, 0, 0, 0, 0, 5], &[21, 1, 2, 3, 1103]),
        "S-1-5-21-1-2-3-1103"
    );
    assert_eq!(sid_string(1, [0, 0, 0, 0, 0, 1], &[0]), "S-1-1-0");
    assert_eq!(
        sid_string(1, [0, 1, 0, 0, 0, 0], &[7]),
        "S-1-0x000100000000-7"
    );
    let (user, groups) = split_sids(vec![
        "S-1-5-21-9-1103".into(),
        "S-1-5-21-9-513".into(),
        "S-1-5-21-9-513".into(),
        "S-1-5-21-9-1103".into(),
        "S-1-5-21-9-1107".into(),
    ]);
    assert_eq!(user.as_deref(), Some("S-1-5-21-9-1103"));
    assert_eq!(groups, vec!["S-1-5-21-9-513", "S-1-5-21-9-1107"]);
    assert_eq!(split_sids(vec![]), (None, vec![]));
}

#[test]
fn status_mapping() {
    let r = LogonRequest {
        user: "carol".into(),
        domain: "EXAMPLE".into(),
        workstation: String::new(),
        challenge: [0; 8],
        nt_response: Vec::new(),
    };
    let auth = |s: u32| WbcFailure::Auth {
        nt_status: s,
        nt_string: "NT_STATUS_FROM_DC".into(),
        authoritative: true,
    };
    let e = map_failure(&r, auth(0xC000_0072));
    assert_eq!(
        e.to_string(),
        "the domain refused the logon of EXAMPLE\\carol: NT_STATUS_ACCOUNT_DISABLED (0xc0000072)"
    );
    assert!(map_failure(&r, auth(0xC000_0234))
        .to_string()
        .contains("NT_STATUS_ACCOUNT_LOCKED_OUT"));
    assert!(map_failure(&r, auth(0xC000_0071))
        .to_string()
        .contains("NT_STATUS_PASSWORD_EXPIRED"));
    // An unlisted refusal keeps the DC's name for it.
    assert!(map_failure(&r, auth(0xC000_9999))
        .to_string()
        .contains("NT_STATUS_FROM_DC"));
    // The DC unreachable behind winbindd: 503.
    assert!(matches!(
        map_failure(&r, auth(0xC000_005E)),
        NtlmFailure::Unavailable(w) if w.contains("NT_STATUS_NO_LOGON_SERVERS")
    ));
    assert!(matches!(
        map_failure(
            &r,
            WbcFailure::Wbc {
                code: wbc_err::DOMAIN_NOT_FOUND,
                text: "Domain not found".into()
            }
        ),
        NtlmFailure::Unavailable(_)
    ));
}

/// The declarations match wbclient.h on x86_64 (sizes and offsets printed by a C
/// program compiled against /usr/include/samba-4.0/wbclient.h).
#[test]
#[cfg(target_pointer_width = "64")]
fn c_layouts_match_wbclient_h() {
    use std::mem::{offset_of, size_of};
    assert_eq!(size_of::<WbcAuthUserParams>(), 80);
    assert_eq!(offset_of!(WbcAuthUserParams, level), 32);
    assert_eq!(offset_of!(WbcAuthUserParams, password), 40);
    assert_eq!(size_of::<WbcAuthUserInfo>(), 184);
    assert_eq!(offset_of!(WbcAuthUserInfo, domain_name), 32);
    assert_eq!(offset_of!(WbcAuthUserInfo, user_session_key), 52);
    assert_eq!(offset_of!(WbcAuthUserInfo, logon_time), 80);
    assert_eq!(offset_of!(WbcAuthUserInfo, logon_server), 128);
    assert_eq!(offset_of!(WbcAuthUserInfo, num_sids), 168);
    assert_eq!(offset_of!(WbcAuthUserInfo, sids), 176);
    assert_eq!(size_of::<WbcAuthErrorInfo>(), 40);
    assert_eq!(offset_of!(WbcAuthErrorInfo, authoritative), 32);
    assert_eq!(size_of::<WbcSidWithAttr>(), 72);
    assert_eq!(size_of::<WbcDomainSid>(), 68);
    assert_eq!(size_of::<WbcInterfaceDetails>(), 48);
    assert_eq!(offset_of!(WbcInterfaceDetails, netbios_domain), 32);
}
