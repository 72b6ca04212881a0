use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use super::*;
use crate::identity::{AuthMethod, Group, Identity};

const KEY_A: [u8; 32] = [0xa1; 32];
const KEY_B: [u8; 32] = [0xb2; 32];
const IDLE: u64 = 1800;
const ABSOLUTE: u64 = 8 * 3600;

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn at(secs: u64) -> SystemTime {
    t0() + Duration::from_secs(secs)
}

fn codec(current: [u8; 32], previous: &[[u8; 32]]) -> TicketCodec {
    TicketCodec::new(KeyRing::from_keys(&current, previous))
}

fn alice() -> Identity {
    let mut id = Identity::from_principal("alice@EX.TEST", AuthMethod::Kerberos, &BTreeMap::new());
    id.domain = Some("EX".into());
    id.sid = Some("S-1-5-21-1-2-3-1104".into());
    id.groups = vec![
        Group {
            sid: Some("S-1-5-21-1-2-3-513".into()),
            name: Some("Domain Users".into()),
        },
        Group {
            sid: Some("S-1-5-21-1-2-3-1200".into()),
            name: None,
        },
    ];
    id
}

fn bob() -> Identity {
    let mut id = Identity::from_principal("bob@EX.TEST", AuthMethod::Kerberos, &BTreeMap::new());
    id.sid = Some("S-1-5-21-1-2-3-1105".into());
    id
}

fn lifetime() -> TicketLifetime {
    TicketLifetime {
        idle_timeout: Duration::from_secs(IDLE),
        absolute: Duration::from_secs(ABSOLUTE),
    }
}

fn session_claims(not_after: Option<SystemTime>) -> TicketClaims<SessionPayload> {
    let id = alice();
    TicketClaims::issue(
        Purpose::Session,
        Subject::of(&id),
        TicketIdentity::from(&id),
        lifetime(),
        not_after,
        t0(),
    )
    .unwrap()
}

fn impersonation_claims() -> TicketClaims<ImpersonationPayload> {
    let actor = alice();
    TicketClaims::issue(
        Purpose::Impersonation,
        Subject::of(&actor),
        ImpersonationPayload {
            target: TicketIdentity::from(&bob()),
            reason: "ticket 123".into(),
        },
        lifetime(),
        None,
        t0(),
    )
    .unwrap()
}

fn open_session(
    c: &TicketCodec,
    v: &str,
    now: SystemTime,
) -> Result<TicketClaims<SessionPayload>, TicketError> {
    c.open(Purpose::Session, v, now)
}

fn raw(value: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value).unwrap()
}

fn encode(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

// ---- round trips and format ----

#[test]
fn session_ticket_round_trips() {
    let c = codec(KEY_A, &[]);
    let kerberos_end = at(10 * 3600);
    let claims = session_claims(Some(kerberos_end));
    let value = c.seal(&claims).unwrap();
    let opened = open_session(&c, &value, at(60)).unwrap();
    assert_eq!(opened, claims);
    assert_eq!(opened.not_after(), Some(kerberos_end));
    let identity = opened.payload().to_identity(opened.not_after()).unwrap();
    let mut want = alice();
    want.expires = Some(kerberos_end);
    assert_eq!(identity, want);
}

#[test]
fn impersonation_ticket_round_trips() {
    let c = codec(KEY_A, &[]);
    let claims = impersonation_claims();
    let value = c.seal(&claims).unwrap();
    let opened: TicketClaims<ImpersonationPayload> =
        c.open(Purpose::Impersonation, &value, at(1)).unwrap();
    assert_eq!(opened, claims);
    assert_eq!(opened.payload().reason, "ticket 123");
    assert_eq!(opened.payload().target.principal, "bob@EX.TEST");
    assert_eq!(opened.subject().principal, "alice@EX.TEST");
}

#[test]
fn wire_layout_is_version_key_id_nonce_ciphertext_tag() {
    let c = codec(KEY_A, &[]);
    let claims = session_claims(None);
    let value = c.seal(&claims).unwrap();
    assert!(value.len() <= MAX_TICKET_LEN);
    assert!(value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let bytes = raw(&value);
    assert_eq!(bytes[0], TICKET_VERSION);
    assert_eq!(bytes[1..9], KeyId::of(&KEY_A).0);
    let plaintext_len = serde_json::to_vec(&claims).unwrap().len();
    assert_eq!(bytes.len(), HEADER_LEN + plaintext_len + TAG_LEN);
    // A fresh nonce every time: the same claims never seal to the same value.
    let again = c.seal(&claims).unwrap();
    assert_ne!(again, value);
    assert_ne!(raw(&again)[9..HEADER_LEN], bytes[9..HEADER_LEN]);
}

/// A ticket sealed by this version of the code: key KEY_A, nonce 00 01 .. 17, the
/// claims of `session_claims(Some(at(3600)))` with ticket id 00 01 .. 0f. If this stops opening, cookies in
/// browsers break on upgrade: bump `TICKET_VERSION` and keep reading the old one instead.
const GOLDEN: &str = concat!(
    "AVL-YJR0O_1PAAECAwQFBgcICQoLDA0ODxAREhMUFRYXizknfIhJjydKVMp3",
    "I_ZBsaJYYX-IQFXcYO6eTkgB9qtQKI6HLPCZ7y91GG37dhpmB0J4wGYRlMuTKROdw6foIxEyH04mZsT6",
    "xVjRKkl2_R3F_w1y2Uyqo3bbW26jI_aaT8YktSkrryD9sAm2NrHy_5mHXSJlsJlObfC6YCzoXjjUs3w2",
    "mwg07uecx8pfDhaBPQBWuOWMjUXClVsOCtejw_pJomgNAGs7Bv8BOHdNEPZR6NY6cjp80SMvyeQPufsE",
    "VMw_HvOTgr4NAwbyswyTeeAVCLpaB5g6wIMc9x8EgkhayhJ5dt7Qvho-C_cQQXHm2S9m6wKmPreHfd5A",
    "cXAewccUQwuwFHA_7u-fMSIYG4aKpK8-UTtmlm0c9Y-g-GY_vAm9N8U3vWGpXYlYMt6Qwz2nNFCso0Xy",
    "-pPzuvmiKMxJX0xt2ogWxza0q0aTB85pWhgaRFzhlEA273T4ohXCEsxROXf33hRySzmbT1y1cIB_Z2um",
    "Qr2uvZcIYRX-8R3ulO24X376JYckzQ4JPyTCsxaxNyg_D3TW3-HJgUhY8u4VxNJHFKA1GP83QXLBpmNX",
    "hFNbbH7ROxGh28hjAgTXV8NdZ9RbKPgLW66YDrUT5VRuY52G6nH4MGvm1-PB9f2c7h9fEyZi8nOYsaoO",
    "clTT5bHwuw",
);

#[test]
fn golden_ticket_still_opens() {
    let c = codec(KEY_A, &[]);
    let mut nonce = [0u8; NONCE_LEN];
    for (i, b) in nonce.iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut claims = serde_json::to_value(session_claims(Some(at(3600)))).unwrap();
    claims["ticket_id"] = serde_json::json!((0..16).collect::<Vec<u8>>());
    let expected: TicketClaims<SessionPayload> = serde_json::from_value(claims).unwrap();
    // Same key, nonce and claims: the same bytes (format and field order are stable).
    assert_eq!(c.seal_with_nonce(&expected, nonce).unwrap(), GOLDEN);
    let opened = open_session(&c, GOLDEN, at(5)).unwrap();
    assert_eq!(opened, expected);
    assert_eq!(opened.purpose(), Purpose::Session);
    assert_eq!(opened.issued_at(), t0());
    assert_eq!(opened.last_renewed_at(), t0());
    assert_eq!(opened.absolute_expiry(), at(ABSOLUTE));
    assert_eq!(opened.idle_timeout(), Duration::from_secs(IDLE));
    assert_eq!(opened.not_after(), Some(at(3600)));
    assert_eq!(
        opened.ticket_id().to_string(),
        "000102030405060708090a0b0c0d0e0f"
    );
}

// ---- rejections before authentication ----

#[test]
fn oversized_input_is_refused_before_decoding() {
    let c = codec(KEY_A, &[]);
    let long = "A".repeat(MAX_TICKET_LEN + 1);
    assert_eq!(
        open_session(&c, &long, t0()),
        Err(TicketError::TooLarge {
            len: MAX_TICKET_LEN + 1,
            max: MAX_TICKET_LEN
        })
    );
    let junk = "!".repeat(MAX_TICKET_LEN + 1);
    assert!(matches!(
        open_session(&c, &junk, t0()),
        Err(TicketError::TooLarge { .. })
    ));
}

#[test]
fn sealing_refuses_a_ticket_too_big_for_a_cookie() {
    let c = codec(KEY_A, &[]);
    let mut id = alice();
    id.groups = (0..200)
        .map(|i| Group {
            sid: Some(format!("S-1-5-21-1004336348-1177238915-682003330-{i}")),
            name: Some(format!("group number {i}")),
        })
        .collect();
    let claims = TicketClaims::issue(
        Purpose::Session,
        Subject::of(&id),
        TicketIdentity::from(&id),
        lifetime(),
        None,
        t0(),
    )
    .unwrap();
    assert!(matches!(
        c.seal(&claims),
        Err(TicketError::TooLarge {
            max: MAX_TICKET_LEN,
            ..
        })
    ));
}

#[test]
fn malformed_base64_is_refused() {
    let c = codec(KEY_A, &[]);
    let good = c.seal(&session_claims(None)).unwrap();
    let standard_alphabet = good.replace('-', "+").replace('_', "/") + "+/";
    for bad in [
        "not base64!".to_owned(),
        format!("{good}="),
        format!("{good}=="),
        standard_alphabet,
        format!("{good} "),
        // a length no encoder produces (4n + 1 characters)
        format!("{good}{}", "A".repeat((5 - good.len() % 4) % 4)),
    ] {
        assert_eq!(
            open_session(&c, &bad, t0()),
            Err(TicketError::NotBase64),
            "{bad}"
        );
    }
}

#[test]
fn truncated_tickets_are_refused() {
    let c = codec(KEY_A, &[]);
    let bytes = raw(&c.seal(&session_claims(None)).unwrap());
    for len in [0, 1, 5, HEADER_LEN, HEADER_LEN + TAG_LEN - 1] {
        assert_eq!(
            open_session(&c, &encode(&bytes[..len]), t0()),
            Err(TicketError::Truncated {
                len,
                min: HEADER_LEN + TAG_LEN
            }),
            "{len}"
        );
    }
    // Header and a tag but no ciphertext: well-formed, fails authentication.
    assert_eq!(
        open_session(&c, &encode(&bytes[..HEADER_LEN + TAG_LEN]), t0()),
        Err(TicketError::Forged)
    );
}

// ---- tampering with each region ----

#[test]
fn tampering_with_any_region_is_detected() {
    let c = codec(KEY_A, &[KEY_B]);
    let claims = session_claims(None);
    let bytes = raw(&c.seal(&claims).unwrap());
    let len = bytes.len();
    let flip = |i: usize, mask: u8| {
        let mut b = bytes.clone();
        b[i] ^= mask;
        encode(&b)
    };

    // version
    assert_eq!(
        open_session(&c, &flip(0, 0x03), t0()),
        Err(TicketError::UnsupportedVersion { found: 2 })
    );
    // key id: every byte
    for i in 1..9 {
        let err = open_session(&c, &flip(i, 0x01), t0()).unwrap_err();
        assert!(
            matches!(err, TicketError::UnknownKey { .. }),
            "byte {i}: {err:?}"
        );
    }
    // key id swapped for another key in the ring: the AAD and key no longer match
    let mut other = bytes.clone();
    other[1..9].copy_from_slice(&KeyId::of(&KEY_B).0);
    assert_eq!(
        open_session(&c, &encode(&other), t0()),
        Err(TicketError::Forged)
    );
    // nonce, ciphertext and tag: every byte, every bit position once
    for i in 9..len {
        let region = match i {
            _ if i < HEADER_LEN => "nonce",
            _ if i < len - TAG_LEN => "ciphertext",
            _ => "tag",
        };
        let mask = 1u8 << (i % 8);
        assert_eq!(
            open_session(&c, &flip(i, mask), t0()),
            Err(TicketError::Forged),
            "{region} byte {i}"
        );
    }
    // appended bytes
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        open_session(&c, &encode(&longer), t0()),
        Err(TicketError::Forged)
    );
    // untouched, it still opens
    assert_eq!(open_session(&c, &encode(&bytes), t0()).unwrap(), claims);
}

#[test]
fn a_ticket_from_another_key_ring_is_an_unknown_key() {
    let ours = codec(KEY_A, &[]);
    let theirs = codec(KEY_B, &[]);
    let value = theirs.seal(&session_claims(None)).unwrap();
    let err = open_session(&ours, &value, t0()).unwrap_err();
    assert_eq!(
        err,
        TicketError::UnknownKey {
            key_id: KeyId::of(&KEY_B)
        }
    );
    assert!(err.to_string().contains(&KeyId::of(&KEY_B).to_string()));
}

// ---- rotation ----

#[test]
fn rotation_keeps_old_tickets_while_the_old_key_is_listed() {
    let before = codec(KEY_A, &[]);
    let old_ticket = before.seal(&session_claims(None)).unwrap();

    let rotated = codec(KEY_B, &[KEY_A]);
    assert!(open_session(&rotated, &old_ticket, at(10)).is_ok());
    let new_ticket = rotated.seal(&session_claims(None)).unwrap();
    assert_eq!(
        raw(&new_ticket)[1..9],
        KeyId::of(&KEY_B).0,
        "the new current key seals"
    );
    assert!(open_session(&rotated, &new_ticket, at(10)).is_ok());

    let dropped = codec(KEY_B, &[]);
    assert_eq!(
        open_session(&dropped, &old_ticket, at(10)),
        Err(TicketError::UnknownKey {
            key_id: KeyId::of(&KEY_A)
        })
    );
    assert!(open_session(&dropped, &new_ticket, at(10)).is_ok());
    // Staged rollout: an instance that lists the new key as previous opens its tickets.
    let staged = codec(KEY_A, &[KEY_B]);
    assert!(open_session(&staged, &new_ticket, at(10)).is_ok());
}

// ---- purpose ----

#[test]
fn a_session_ticket_is_not_an_impersonation_ticket_and_vice_versa() {
    let c = codec(KEY_A, &[]);
    let session = c.seal(&session_claims(None)).unwrap();
    assert_eq!(
        c.open::<ImpersonationPayload>(Purpose::Impersonation, &session, at(1)),
        Err(TicketError::WrongPurpose {
            expected: Purpose::Impersonation,
            found: Purpose::Session
        })
    );
    // Even with a payload type that would decode, the purpose decides.
    assert!(matches!(
        c.open::<serde_json::Value>(Purpose::Impersonation, &session, at(1)),
        Err(TicketError::WrongPurpose { .. })
    ));
    let imp = c.seal(&impersonation_claims()).unwrap();
    assert_eq!(
        open_session(&c, &imp, at(1)),
        Err(TicketError::WrongPurpose {
            expected: Purpose::Session,
            found: Purpose::Impersonation
        })
    );
}

#[test]
fn authenticated_claims_of_the_wrong_shape_are_invalid_claims() {
    let c = codec(KEY_A, &[]);
    let value = c.seal(&impersonation_claims()).unwrap();
    // Right purpose, but the caller expects a different payload type.
    assert_eq!(
        c.open::<u32>(Purpose::Impersonation, &value, at(1)),
        Err(TicketError::InvalidClaims)
    );
}

// ---- times ----

#[test]
fn not_yet_valid_beyond_the_clock_skew() {
    let c = codec(KEY_A, &[]);
    let value = c.seal(&session_claims(None)).unwrap();
    let skew = TicketCodec::DEFAULT_CLOCK_SKEW.as_secs();
    let earlier = t0() - Duration::from_secs(skew);
    assert!(open_session(&c, &value, earlier).is_ok(), "within the skew");
    let too_early = t0() - Duration::from_secs(skew + 1);
    assert!(matches!(
        open_session(&c, &value, too_early),
        Err(TicketError::NotYetValid { .. })
    ));
    let strict = codec(KEY_A, &[]).with_clock_skew(Duration::ZERO);
    assert!(matches!(
        open_session(&strict, &value, t0() - Duration::from_secs(1)),
        Err(TicketError::NotYetValid { .. })
    ));
}

#[test]
fn idle_timeout_expires_an_unrenewed_ticket() {
    let c = codec(KEY_A, &[]);
    let value = c.seal(&session_claims(None)).unwrap();
    assert!(
        open_session(&c, &value, at(IDLE)).is_ok(),
        "the deadline itself is valid"
    );
    assert_eq!(
        open_session(&c, &value, at(IDLE + 1)),
        Err(TicketError::IdleExpired { at: at(IDLE) })
    );
}

#[test]
fn renewal_is_due_once_half_the_idle_window_has_passed() {
    let claims = session_claims(None);
    assert!(!claims.needs_renewal(t0()));
    assert!(!claims.needs_renewal(at(IDLE / 2 - 1)));
    assert!(claims.needs_renewal(at(IDLE / 2)));
    assert!(claims.needs_renewal(at(IDLE)));

    let renewed = claims.clone().renew(at(IDLE / 2));
    assert_eq!(
        renewed.ticket_id(),
        claims.ticket_id(),
        "same id: revocation still applies"
    );
    assert_eq!(renewed.issued_at(), claims.issued_at());
    assert_eq!(renewed.absolute_expiry(), claims.absolute_expiry());
    assert_eq!(renewed.last_renewed_at(), at(IDLE / 2));
    assert_eq!(renewed.expires_at(), at(IDLE / 2 + IDLE));
    assert!(!renewed.needs_renewal(at(IDLE / 2 + IDLE / 2 - 1)));
    assert!(renewed.needs_renewal(at(IDLE)));
    // Renewing with an older clock never moves the window backwards.
    assert_eq!(renewed.clone().renew(at(1)).last_renewed_at(), at(IDLE / 2));

    let c = codec(KEY_A, &[]);
    let value = c.seal(&renewed).unwrap();
    assert!(
        open_session(&c, &value, at(IDLE + 1)).is_ok(),
        "the renewal extended it"
    );
    assert_eq!(
        open_session(&c, &value, at(IDLE / 2 + IDLE + 1)),
        Err(TicketError::IdleExpired {
            at: at(IDLE / 2 + IDLE)
        })
    );
}

#[test]
fn renewal_never_passes_the_absolute_cap() {
    let c = codec(KEY_A, &[]);
    let mut claims = session_claims(None);
    let mut now = 0;
    // Renew as often as sliding expiration allows, all day long.
    while now <= ABSOLUTE + IDLE {
        if claims.needs_renewal(at(now)) {
            claims = claims.renew(at(now));
        }
        now += 60;
    }
    assert!(claims.expires_at() <= claims.absolute_expiry());
    assert_eq!(claims.hard_expiry(), at(ABSOLUTE));
    let value = c.seal(&claims).unwrap();
    assert!(open_session(&c, &value, at(ABSOLUTE)).is_ok());
    assert_eq!(
        open_session(&c, &value, at(ABSOLUTE + 1)),
        Err(TicketError::AbsoluteExpired { at: at(ABSOLUTE) })
    );
}

#[test]
fn renewal_is_not_due_when_it_cannot_extend_the_ticket() {
    let mut claims = session_claims(None);
    // Renewed late in its life: the cap is nearer than a full idle window.
    claims = claims.renew(at(ABSOLUTE - IDLE));
    assert_eq!(claims.expires_at(), at(ABSOLUTE));
    assert!(!claims.needs_renewal(at(ABSOLUTE - IDLE / 2)));
    assert!(!claims.needs_renewal(at(ABSOLUTE - 1)));
    // One renewal earlier it still gains a little.
    let claims = session_claims(None).renew(at(ABSOLUTE - IDLE - 100));
    assert!(claims.needs_renewal(at(ABSOLUTE - IDLE - 100 + IDLE / 2)));
}

#[test]
fn a_session_never_outlives_its_kerberos_ticket() {
    let c = codec(KEY_A, &[]);
    let kerberos_end = 1000; // sooner than both the idle window and the cap
    let claims = session_claims(Some(at(kerberos_end)));
    assert_eq!(claims.hard_expiry(), at(kerberos_end));
    assert_eq!(claims.expires_at(), at(kerberos_end));
    assert!(
        !claims.needs_renewal(at(IDLE / 2)),
        "renewing cannot help once not_after is nearer"
    );
    let renewed = claims.renew(at(kerberos_end - 1));
    let value = c.seal(&renewed).unwrap();
    assert!(open_session(&c, &value, at(kerberos_end)).is_ok());
    assert_eq!(
        open_session(&c, &value, at(kerberos_end + 1)),
        Err(TicketError::CredentialExpired {
            at: at(kerberos_end)
        })
    );
}

#[test]
fn absolute_cap_is_reported_before_idle_expiry() {
    let c = codec(KEY_A, &[]);
    let value = c.seal(&session_claims(None)).unwrap();
    assert!(matches!(
        open_session(&c, &value, at(ABSOLUTE + 1)),
        Err(TicketError::AbsoluteExpired { .. })
    ));
}

// ---- binding ----

#[test]
fn binding_compares_sids_when_both_are_known_else_principals() {
    let claims = impersonation_claims(); // subject: alice, S-...-1104
    let sid = Some("S-1-5-21-1-2-3-1104");
    assert!(claims.bound_to("alice@EX.TEST", sid));
    assert!(claims.bound_to("alice@EX.TEST", Some("s-1-5-21-1-2-3-1104")));
    // bob presenting alice's copied cookie
    assert!(!claims.bound_to("bob@EX.TEST", Some("S-1-5-21-1-2-3-1105")));
    assert!(!claims.bound_to("bob@EX.TEST", None));
    // a different account that reuses the name (deleted and re-created) has a new SID
    assert!(!claims.bound_to("alice@EX.TEST", Some("S-1-5-21-1-2-3-9999")));
    // SID unknown on this request: fall back to the exact principal
    assert!(claims.bound_to("alice@EX.TEST", None));
    assert!(!claims.bound_to("ALICE@EX.TEST", None));
    assert!(!claims.bound_to("alice@OTHER.TEST", None));

    let mut no_sid = alice();
    no_sid.sid = None;
    let claims = TicketClaims::issue(
        Purpose::Impersonation,
        Subject::of(&no_sid),
        (),
        lifetime(),
        None,
        t0(),
    )
    .unwrap();
    assert!(claims.bound_to("alice@EX.TEST", Some("S-1-5-21-1-2-3-1104")));
    assert!(!claims.bound_to("bob@EX.TEST", Some("S-1-5-21-1-2-3-1104")));
}

// ---- revocation through the claims ----

#[test]
fn a_revoked_ticket_and_its_renewals_are_refused_until_they_would_expire() {
    let c = codec(KEY_A, &[]);
    let store = MemoryRevocationStore::new();
    let claims = impersonation_claims();
    let value = c.seal(&claims).unwrap();
    let opened: TicketClaims<ImpersonationPayload> =
        c.open(Purpose::Impersonation, &value, at(1)).unwrap();
    assert_eq!(opened.check_revocation(&store, at(1)), Ok(()));

    let renewed = opened.clone().renew(at(IDLE / 2));
    store.revoke(opened.ticket_id(), opened.hard_expiry());
    assert_eq!(
        opened.check_revocation(&store, at(2)),
        Err(TicketError::Revoked)
    );
    assert_eq!(
        renewed.check_revocation(&store, at(IDLE / 2)),
        Err(TicketError::Revoked)
    );
    assert_eq!(
        renewed.check_revocation(&store, at(ABSOLUTE)),
        Err(TicketError::Revoked)
    );
    // Past the hard expiry the ticket is dead anyway and the entry may go.
    assert_eq!(renewed.check_revocation(&store, at(ABSOLUTE + 1)), Ok(()));
}

// ---- identities and errors ----

#[test]
fn every_auth_method_survives_the_ticket_and_garbage_does_not() {
    for method in [AuthMethod::Kerberos, AuthMethod::Ntlm, AuthMethod::Fake] {
        let mut id = alice();
        id.method = method;
        let back = TicketIdentity::from(&id).to_identity(None).unwrap();
        assert_eq!(back, id);
    }
    let mut t = TicketIdentity::from(&alice());
    t.method = "Basic".into();
    assert_eq!(t.to_identity(None), Err(TicketError::InvalidClaims));
}

#[test]
fn errors_never_contain_the_ticket() {
    let c = codec(KEY_A, &[]);
    let value = c.seal(&session_claims(None)).unwrap();
    let mut bytes = raw(&value);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = encode(&bytes);
    for bad in [tampered.as_str(), &value[..20], "****"] {
        let err = open_session(&c, bad, t0()).unwrap_err();
        let msg = format!("{err} {err:?}");
        assert!(!msg.contains(&value[..16]), "{msg}");
    }
}

#[test]
fn expiry_messages_give_unix_times() {
    let msg = TicketError::AbsoluteExpired { at: at(ABSOLUTE) }.to_string();
    assert!(msg.contains("unix time 1700028800"), "{msg}");
    let msg = TicketError::NotYetValid {
        issued_at: at(100),
        now: t0(),
    }
    .to_string();
    assert!(
        msg.contains("1700000100") && msg.contains("1700000000"),
        "{msg}"
    );
}
