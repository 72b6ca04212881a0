//! Clients that lie or break things: spoofed identity headers, malformed and rejected
//! tokens, replays, tickets for another service. The gateway must refuse cleanly and
//! keep serving.

mod support;

use base64::Engine as _;
use support::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every identity header spelling a client might try; each value is unique so a leak
/// names itself.
const SPOOFED: &[&str] = &[
    "X-Remote-User",
    "x-remote-user",
    "X-REMOTE-USER",
    "x_remote_user",
    "X_Remote_User",
    "X-Remote-User-Principal",
    "x_remote_user_principal",
    "X-Remote-User-Sid",
    "X_REMOTE_USER_SID",
    "X-Remote-Groups",
    "x_remote_groups",
    "X-Remote-Group-Sids",
    "x_remote_group_sids",
    "X-Remote-Auth-Method",
    "x_remote_auth_method",
    "X-Remote-Impersonator",
    "X_REMOTE_IMPERSONATOR",
    "X-Iwa-Anything",
    "X-IWA-ASSERTION",
    "x-iwa-assertion",
    "x_iwa_assertion",
    "X_Iwa_Whatever",
];

fn spoof_value(i: usize) -> String {
    format!("spoofed-{i}")
}

fn assert_no_spoof_leaked(seen: &EchoRequest) {
    for (name, value) in &seen.headers {
        assert!(
            !value.contains("spoofed-"),
            "client header leaked to backend: {name}: {value}\nall: {:#?}",
            seen.headers
        );
        let norm = name.to_ascii_lowercase().replace('_', "-");
        if norm.starts_with("x-remote-") || norm.starts_with("x-iwa-") {
            assert!(
                !name.contains('_'),
                "underscore identity header reached backend: {name}"
            );
        }
    }
}

fn good_request_still_works(realm: &MitRealm, gw: &Gateway) {
    let cc = alice(realm);
    let r = curl_get(&cc, realm, &gw.url("/after"), &[]);
    assert_eq!(
        r.status,
        200,
        "gateway stopped serving good requests: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert_identity(
        &r.echo(),
        "alice@IWA.TEST",
        "alice@IWA.TEST",
        &format!("localhost:{}", gw.port),
    );
}

#[test]
fn spoofed_identity_headers_never_reach_backend_anonymous() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let values: Vec<String> = (0..SPOOFED.len()).map(spoof_value).collect();
    let headers: Vec<(&str, &str)> = SPOOFED
        .iter()
        .zip(&values)
        .map(|(n, v)| (*n, v.as_str()))
        .collect();

    let health = gw.get_raw("/.iwa/healthz", &headers).expect("healthz");
    assert_eq!(health.status, 200);
    assert!(!health.text().contains("spoofed-"), "{}", health.text());

    let r = gw.get_raw("/", &headers).expect("anonymous GET");
    assert_eq!(
        r.status,
        401,
        "spoofed headers must not authenticate: {}",
        r.text()
    );
    assert!(has_negotiate_challenge(&r.header_all("www-authenticate")));
    assert!(
        echo.requests().is_empty(),
        "backend reached: {:?}",
        echo.requests()
    );
}

#[test]
fn spoofed_identity_headers_never_reach_backend_authenticated() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let args: Vec<String> = SPOOFED
        .iter()
        .enumerate()
        .map(|(i, n)| format!("{n}: {}", spoof_value(i)))
        .collect();
    let mut extra: Vec<&str> = Vec::new();
    for a in &args {
        extra.push("-H");
        extra.push(a);
    }
    let r = curl_get(&cc, &realm, &gw.url("/"), &extra);
    assert_eq!(r.status, 200, "body: {}", String::from_utf8_lossy(&r.body));
    let seen = r.echo();
    assert_no_spoof_leaked(&seen);
    assert_identity(
        &seen,
        "alice@IWA.TEST",
        "alice@IWA.TEST",
        &format!("localhost:{}", gw.port),
    );
    for absent in [
        "x-remote-user-sid",
        "x-remote-groups",
        "x-remote-group-sids",
        "x-remote-impersonator",
    ] {
        assert_eq!(
            seen.header(absent),
            None,
            "{absent} set for an MIT user without PAC groups"
        );
    }
    // Sanity: curl really sent them (the underscore spelling included).
    assert!(args.iter().any(|a| a.starts_with("x_remote_user:")));
}

#[test]
fn malformed_authorization_is_400_and_gateway_keeps_serving() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    for bad in [
        "Negotiate !!!not base64!!!",
        "Negotiate",
        "Negotiate    ",
        "Negotiate YWJj=ZGVm",
    ] {
        let r = gw.get_raw("/", &[("Authorization", bad)]).expect("request");
        assert_eq!(
            r.status,
            400,
            "Authorization: {bad:?} → {} {}",
            r.status,
            r.text()
        );
    }
    assert!(echo.requests().is_empty());
    good_request_still_works(&realm, &gw);
}

fn assert_rejected(gw: &Gateway, token_b64: &str, what: &str) {
    let r = gw.get_with_token("/", token_b64);
    assert_eq!(
        r.status,
        401,
        "{what}: expected 401, got {} {}",
        r.status,
        r.text()
    );
    assert!(
        has_negotiate_challenge(&r.header_all("www-authenticate")),
        "{what}: 401 without a fresh Negotiate challenge: {:?}",
        r.headers
    );
}

#[test]
fn garbage_and_truncated_tokens_are_401() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);

    let garbage =
        B64.encode(b"this is definitely not a GSS-API token, just bytes \x00\x01\x02\xff");
    assert_rejected(&gw, &garbage, "garbage");
    // A SPNEGO-looking prefix with nothing valid behind it.
    assert_rejected(
        &gw,
        &B64.encode([0x60, 0x82, 0x01, 0x00, 0x06, 0x06, 0x2b]),
        "bogus DER",
    );

    let token = B64.decode(mint_token(&cc, "localhost")).expect("b64");
    for (what, cut) in [
        ("half", token.len() / 2),
        ("minus one byte", token.len() - 1),
        ("16 bytes", 16),
    ] {
        assert_rejected(
            &gw,
            &B64.encode(&token[..cut]),
            &format!("truncated token ({what})"),
        );
    }
    assert!(echo.requests().is_empty(), "{:?}", echo.requests());
    assert!(gw.get_raw("/.iwa/healthz", &[]).expect("healthz").status == 200);
    good_request_still_works(&realm, &gw);
}

#[test]
fn huge_token_is_refused_without_5xx() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let huge = B64.encode(vec![0x41u8; 75 * 1024]); // 100 KiB of base64
    assert!(huge.len() >= 100 * 1024);
    let auth = format!("Negotiate {huge}");
    let r = gw
        .get_raw("/", &[("Authorization", &auth)])
        .unwrap_or_else(|e| panic!("no HTTP response to a 100 KiB token: {e}\n{}", gw.log()));
    assert!(
        matches!(r.status, 400 | 401 | 431),
        "100 KiB token: expected 400/401/431, got {} {}",
        r.status,
        r.text()
    );
    assert!(echo.requests().is_empty());
    good_request_still_works(&realm, &gw);
}

#[test]
fn replayed_token_is_refused() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");

    let first = gw.get_with_token("/first", &token);
    assert_eq!(first.status, 200, "fresh token: {}", first.text());
    assert_identity(
        &first.echo(),
        "alice@IWA.TEST",
        "alice@IWA.TEST",
        &format!("localhost:{}", gw.port),
    );
    let second = gw.get_with_token("/second", &token);
    assert_eq!(
        second.status,
        401,
        "replayed token accepted: {}",
        second.text()
    );
    assert_eq!(echo.requests().len(), 1, "replay reached the backend");
    good_request_still_works(&realm, &gw);
}

#[test]
fn ticket_for_another_service_is_refused() {
    let realm = realm();
    let echo = echo();
    // Keytab with only HTTP/localhost; the client asks for HTTP/other.test.
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let token = mint_token(&cc, "other.test");
    assert_rejected(&gw, &token, "ticket for HTTP/other.test");
    assert!(echo.requests().is_empty());
    good_request_still_works(&realm, &gw);
}

#[test]
fn any_key_in_keytab_is_accepted_unless_service_principal_is_pinned() {
    let realm = realm();
    let echo = echo();
    let cc = alice(&realm);

    // Default: any key in the keytab → a ticket for HTTP/other.test is fine.
    let open = Gateway::start(
        &realm,
        &GatewayConfig::new(&realm, echo.url()).keytab(realm.both_keytab()),
    );
    let r = open.get_with_token("/", &mint_token(&cc, "other.test"));
    assert_eq!(
        r.status,
        200,
        "both-keytab gateway refused HTTP/other.test: {}",
        r.text()
    );
    assert_eq!(r.echo().header("x-remote-user"), Some("alice@IWA.TEST"));
    drop(open);

    // Pinned to HTTP/localhost: the same keytab, but other.test tickets are refused.
    let pinned = Gateway::start(
        &realm,
        &GatewayConfig::new(&realm, echo.url())
            .keytab(realm.both_keytab())
            .kerberos_line(r#"service_principal = "HTTP/localhost@IWA.TEST""#),
    );
    assert_rejected(
        &pinned,
        &mint_token(&cc, "other.test"),
        "pinned: ticket for HTTP/other.test",
    );
    let ok = pinned.get_with_token("/", &mint_token(&cc, "localhost"));
    assert_eq!(
        ok.status,
        200,
        "pinned: ticket for HTTP/localhost: {}",
        ok.text()
    );
}
