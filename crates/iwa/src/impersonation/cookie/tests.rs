use std::time::Duration;

use http::header::COOKIE;

use super::*;
use crate::impersonation::tests::{policy, rules, user};
use crate::ticket::{KeyRing, MemoryRevocationStore};

const T0: Duration = Duration::from_secs(1_800_000_000);

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + T0 + Duration::from_secs(secs)
}

fn impersonator_with(key: u8, store: Arc<MemoryRevocationStore>) -> Impersonator {
    Impersonator::new(ImpersonationSettings {
        codec: Arc::new(TicketCodec::new(KeyRing::from_keys(&[key; 32], &[]))),
        revocations: store,
        policy: Arc::new(policy()),
        rules: Arc::new(rules()),
        cookie_name: "iwa_impersonation".into(),
        lifetime: TicketLifetime {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute: Duration::from_secs(8 * 3600),
        },
        secure: false,
        require_reason: true,
    })
}

fn impersonator() -> Impersonator {
    impersonator_with(7, Arc::new(MemoryRevocationStore::new()))
}

fn helpdesk() -> Identity {
    user("hd", 1001, &[("Helpdesk", 1100), ("Sales", 1200)])
}

fn bob() -> Identity {
    user("bob", 1002, &[("Sales", 1200)])
}

/// The request headers a browser sends back after `set_cookie`.
fn cookie_headers(set_cookie: &HeaderValue) -> HeaderMap {
    let pair = set_cookie
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&format!("other=1; {pair}")).unwrap(),
    );
    h
}

fn started(imp: &Impersonator, now: SystemTime) -> HeaderMap {
    let s = imp
        .start(&helpdesk(), false, &bob(), "ticket 123", now)
        .expect("helpdesk may act as bob");
    cookie_headers(&s.set_cookie)
}

fn active(r: Resolution) -> Active {
    match r {
        Resolution::Active(a) => a,
        other => panic!("expected an active impersonation, got {other:?}"),
    }
}

fn ignored(r: Resolution) -> (Ignored, Option<HeaderValue>) {
    match r {
        Resolution::Ignored { why, clear } => (why, clear),
        other => panic!("expected an ignored cookie, got {other:?}"),
    }
}

#[test]
fn started_cookie_makes_the_target_effective() {
    let imp = impersonator();
    let s = imp
        .start(&helpdesk(), false, &bob(), "  ticket 123 ", at(0))
        .unwrap();
    let c = s.set_cookie.to_str().unwrap();
    assert!(c.starts_with("iwa_impersonation="), "{c}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(c.contains(attr), "{c} lacks {attr}");
    }
    assert!(!c.contains("Secure"));
    let a = active(imp.resolve(&helpdesk(), &cookie_headers(&s.set_cookie), at(10)));
    assert_eq!(a.target, bob());
    assert_eq!(a.reason, "ticket 123");
    assert_eq!(a.ticket_id, s.ticket_id);
    assert_eq!(a.expires_at, at(10 + 30 * 60 - 10));
    assert!(
        a.renewed.is_none(),
        "no renewal before half the idle window"
    );
}

#[test]
fn secure_listeners_get_secure_cookies() {
    let mut settings = impersonator().settings().clone();
    settings.secure = true;
    let imp = Impersonator::new(settings);
    let s = imp.start(&helpdesk(), false, &bob(), "t", at(0)).unwrap();
    assert!(s.set_cookie.to_str().unwrap().contains("; Secure"));
    let stop = imp.stop(None);
    assert!(stop.clear.unwrap().to_str().unwrap().contains("; Secure"));
}

#[test]
fn no_cookie_is_no_impersonation() {
    let imp = impersonator();
    assert!(matches!(
        imp.resolve(&helpdesk(), &HeaderMap::new(), at(0)),
        Resolution::None
    ));
}

#[test]
fn start_refusals_carry_the_decision_codes() {
    let imp = impersonator();
    let cases = [
        (
            user("nobody", 1003, &[("Sales", 1200)]),
            bob(),
            false,
            "not_permitted",
        ),
        (helpdesk(), bob(), true, "nested"),
        (helpdesk(), helpdesk(), false, "self"),
        (
            helpdesk(),
            user("ceo", 1004, &[]),
            false,
            "protected_target",
        ),
        (
            helpdesk(),
            user("fin", 1005, &[("Finance", 1300)]),
            false,
            "escalation",
        ),
    ];
    for (actor, target, nested, code) in cases {
        let err = imp
            .start(&actor, nested, &target, "ticket 1", at(0))
            .expect_err(code);
        assert_eq!(err.code, code, "{err}");
    }
}

#[test]
fn reason_is_required_and_bounded() {
    let imp = impersonator();
    let err = imp
        .start(&helpdesk(), false, &bob(), "   ", at(0))
        .unwrap_err();
    assert_eq!(err.code, "reason_required");
    let long = "x".repeat(MAX_REASON_CHARS + 1);
    let err = imp
        .start(&helpdesk(), false, &bob(), &long, at(0))
        .unwrap_err();
    assert_eq!(err.code, "bad_request");
    let mut settings = imp.settings().clone();
    settings.require_reason = false;
    assert!(Impersonator::new(settings)
        .start(&helpdesk(), false, &bob(), "", at(0))
        .is_ok());
}

#[test]
fn tampered_cookie_is_ignored_and_cleared() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    let value = crate::session::cookie_value(&h, "iwa_impersonation").unwrap();
    // Flip one character in the middle of the ticket.
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let mut t = HeaderMap::new();
    t.insert(
        COOKIE,
        HeaderValue::from_str(&format!(
            "iwa_impersonation={}",
            String::from_utf8(bytes).unwrap()
        ))
        .unwrap(),
    );
    let (why, clear) = ignored(imp.resolve(&helpdesk(), &t, at(1)));
    assert_eq!(why.code(), "invalid_ticket");
    assert!(clear.unwrap().to_str().unwrap().contains("Max-Age=0"));
}

#[test]
fn cookie_from_another_key_ring_is_ignored() {
    let h = started(&impersonator(), at(0));
    let other = impersonator_with(8, Arc::new(MemoryRevocationStore::new()));
    let (why, _) = ignored(other.resolve(&helpdesk(), &h, at(1)));
    assert!(
        matches!(why, Ignored::Ticket(TicketError::UnknownKey { .. })),
        "{why:?}"
    );
}

#[test]
fn cookie_of_another_user_is_ignored() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    // Another helpdesk member who could impersonate bob themselves.
    let thief = user("hd2", 1009, &[("Helpdesk", 1100), ("Sales", 1200)]);
    let (why, _) = ignored(imp.resolve(&thief, &h, at(1)));
    assert_eq!(why.code(), "other_user");
    assert!(matches!(why, Ignored::OtherUser { ref owner, .. } if owner == "hd@EX.TEST"));
    // The owner's copy is still good.
    active(imp.resolve(&helpdesk(), &h, at(2)));
}

#[test]
fn stop_revokes_so_an_old_copy_is_dead() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    let copy = h.clone();
    let running = active(imp.resolve(&helpdesk(), &h, at(5)));
    let stopped = imp.stop(Some(running));
    assert_eq!(
        stopped.was.as_ref().map(|a| a.target.user.as_str()),
        Some("bob")
    );
    let clear = stopped.clear.unwrap();
    assert!(clear.to_str().unwrap().contains("Max-Age=0"));
    let (why, _) = ignored(imp.resolve(&helpdesk(), &copy, at(6)));
    assert_eq!(why.code(), "revoked");
    // Stopping with nothing running still clears the cookie.
    let again = imp.stop(None);
    assert!(again.was.is_none() && again.clear.is_some());
}

#[test]
fn another_user_cannot_stop_someone_elses_impersonation() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    // A thief's request resolves to "ignored", so there is nothing of theirs to stop.
    let thief = user("hd2", 1009, &[("Helpdesk", 1100)]);
    assert!(matches!(
        imp.resolve(&thief, &h, at(1)),
        Resolution::Ignored { .. }
    ));
    assert!(imp.stop(None).was.is_none());
    active(imp.resolve(&helpdesk(), &h, at(2)));
}

#[test]
fn sliding_window_renews_after_half_and_expires_when_idle() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    // Before half of the 30 min idle window: no renewal.
    assert!(active(imp.resolve(&helpdesk(), &h, at(14 * 60)))
        .renewed
        .is_none());
    // After half: renewed, and the renewed cookie lives 30 min from now.
    let a = active(imp.resolve(&helpdesk(), &h, at(16 * 60)));
    let renewed = cookie_headers(a.renewed.as_ref().expect("renewed"));
    assert_eq!(a.expires_at, at(16 * 60 + 30 * 60));
    active(imp.resolve(&helpdesk(), &renewed, at(40 * 60)));
    // The original cookie, never renewed, died at 30 min idle.
    let (why, _) = ignored(imp.resolve(&helpdesk(), &h, at(30 * 60 + 1)));
    assert_eq!(why.code(), "expired_idle");
    // The renewed one dies 30 min after its renewal.
    let (why, _) = ignored(imp.resolve(&helpdesk(), &renewed, at(46 * 60 + 1)));
    assert_eq!(why.code(), "expired_idle");
}

#[test]
fn absolute_cap_holds_however_often_it_is_renewed() {
    let imp = impersonator();
    let mut h = started(&imp, at(0));
    let mut now = 0;
    // Use it every 20 minutes for 8 hours: each use renews.
    while now + 20 * 60 < 8 * 3600 {
        now += 20 * 60;
        let a = active(imp.resolve(&helpdesk(), &h, at(now)));
        if let Some(c) = a.renewed {
            h = cookie_headers(&c);
        }
        assert!(a.expires_at <= at(8 * 3600));
    }
    let (why, _) = ignored(imp.resolve(&helpdesk(), &h, at(8 * 3600 + 1)));
    assert_eq!(why.code(), "expired_absolute");
}

#[test]
fn losing_allow_impersonation_ends_it_at_the_next_request() {
    let imp = impersonator();
    let h = started(&imp, at(0));
    // The actor left the Helpdesk group: same principal and SID, fewer groups.
    let demoted = user("hd", 1001, &[("Sales", 1200)]);
    let (why, _) = ignored(imp.resolve(&demoted, &h, at(1)));
    assert_eq!(why.code(), "no_longer_permitted");
    // And the ticket is revoked, so regaining the group does not revive it.
    let (why, _) = ignored(imp.resolve(&helpdesk(), &h, at(2)));
    assert_eq!(why.code(), "revoked");
}

#[test]
fn strip_removes_only_the_impersonation_cookie() {
    let imp = impersonator();
    let mut h = started(&imp, at(0));
    assert!(imp.has_cookie(&h));
    imp.strip(&mut h);
    assert!(!imp.has_cookie(&h));
    assert_eq!(h.get(COOKIE).unwrap(), "other=1");
}

#[test]
fn a_target_with_huge_group_list_is_refused_not_truncated() {
    let imp = impersonator();
    let mut target = bob();
    for i in 0..400 {
        target.groups.push(crate::identity::Group {
            sid: Some(format!("S-1-5-21-1-2-3-{}", 5000 + i)),
            name: Some(format!("EX\\Group number {i}")),
        });
    }
    let mut settings = imp.settings().clone();
    let mut p = (*settings.policy).clone();
    p.increase_permissions.push("EX\\hd".into());
    settings.policy = Arc::new(p);
    let err = Impersonator::new(settings)
        .start(&helpdesk(), false, &target, "t", at(0))
        .unwrap_err();
    assert_eq!(err.code, "target_too_large");
}
