//! Kerberos through the gateway with real clients: curl, requests-gssapi, pyspnego.
//! Each test: its own gateway and echo backend; the realm is shared (IWA_TEST_REALM).

mod support;

use std::time::Duration;

use support::*;

fn host(gw: &Gateway) -> String {
    format!("localhost:{}", gw.port)
}

#[test]
fn anonymous_gets_401_negotiate_challenge_and_healthz_is_open() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));

    let health = gw.get_raw("/.iwa/healthz", &[]).expect("healthz");
    assert_eq!(health.status, 200, "healthz must be anonymous");

    let r = gw.get_raw("/", &[]).expect("anonymous GET");
    assert_eq!(r.status, 401, "no credentials: {}", r.text());
    assert!(
        has_negotiate_challenge(&r.header_all("www-authenticate")),
        "challenge: {:?}",
        r.headers
    );

    // An unsupported scheme is "no usable credentials": 401 + challenge, not 400.
    let r = gw
        .get_raw("/", &[("Authorization", "Basic YWxpY2U6cGFzc3dvcmQ=")])
        .expect("basic GET");
    assert_eq!(r.status, 401, "Basic: {}", r.text());
    assert!(has_negotiate_challenge(&r.header_all("www-authenticate")));

    // curl with --negotiate but no ticket at all ends at 401 as well.
    let r = curl(None, &realm, &[gw.url("/")], &["--negotiate", "-u", ":"]);
    assert_eq!(r[0].status, 401);

    assert!(
        echo.requests().is_empty(),
        "backend reached without authentication: {:?}",
        echo.requests()
    );
}

#[test]
fn alice_via_curl_reaches_backend_with_identity_headers() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);

    let r = curl_get(&cc, &realm, &gw.url("/some/path?x=1&y=two"), &[]);
    assert_eq!(r.status, 200, "body: {}", String::from_utf8_lossy(&r.body));
    let seen = r.echo();
    assert_identity(&seen, "alice@IWA.TEST", "alice@IWA.TEST", &host(&gw));
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/some/path");
    assert_eq!(seen.query.as_deref(), Some("x=1&y=two"));
    assert!(
        is_negotiate_with_token(r.header("www-authenticate")),
        "mutual auth token missing on the 200: {:?}",
        r.headers
    );
    assert_eq!(echo.requests().len(), 1, "exactly one request forwarded");
}

#[test]
fn bob_via_curl_is_seen_as_bob() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = bob(&realm);
    let r = curl_get(&cc, &realm, &gw.url("/"), &[]);
    assert_eq!(r.status, 200, "body: {}", String::from_utf8_lossy(&r.body));
    assert_identity(&r.echo(), "bob@IWA.TEST", "bob@IWA.TEST", &host(&gw));
}

#[test]
fn realm_domains_maps_user_to_netbios_name() {
    let realm = realm();
    let echo = echo();
    let cfg = GatewayConfig::new(&realm, echo.url())
        .kerberos_line(r#"realm_domains = { "IWA.TEST" = "IWA" }"#);
    let gw = Gateway::start(&realm, &cfg);
    let cc = alice(&realm);
    let r = curl_get(&cc, &realm, &gw.url("/"), &[]);
    assert_eq!(r.status, 200, "body: {}", String::from_utf8_lossy(&r.body));
    assert_identity(&r.echo(), r"IWA\alice", "alice@IWA.TEST", &host(&gw));
}

#[test]
fn requests_gssapi_with_required_mutual_authentication() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let v = run_client(
        &cc,
        "requests_gssapi_client.py",
        &[&gw.url("/rg"), "--mutual", "required"],
    );
    assert!(v.get("error").is_none(), "requests-gssapi failed: {v}");
    let resp = &v["responses"][0];
    assert_eq!(resp["status"], 200, "{v}");
    assert!(
        is_negotiate_with_token(resp["www_authenticate"].as_str()),
        "{v}"
    );
    let seen: EchoRequest = serde_json::from_value(resp["body"].clone()).expect("echo body");
    assert_identity(&seen, "alice@IWA.TEST", "alice@IWA.TEST", &host(&gw));
    assert_eq!(seen.path, "/rg");
}

fn pyspnego(protocol: &str) {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = bob(&realm);
    let v = run_client(
        &cc,
        "pyspnego_client.py",
        &[&gw.url("/ps"), "--protocol", protocol],
    );
    assert_eq!(v["status"], 200, "{v}");
    let seen: EchoRequest = serde_json::from_value(v["body"].clone()).expect("echo body");
    assert_identity(&seen, "bob@IWA.TEST", "bob@IWA.TEST", &host(&gw));
    assert_eq!(
        v["mutual_ok"], true,
        "server token did not complete the context: {v}"
    );
}

#[test]
fn pyspnego_negotiate_protocol() {
    pyspnego("negotiate");
}

#[test]
fn pyspnego_raw_kerberos_protocol() {
    pyspnego("kerberos");
}

#[test]
fn sigterm_finishes_in_flight_request_and_exits_zero() {
    let realm = realm();
    let echo = echo();
    let mut gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let addr = gw.addr();
    let port = gw.port;
    let inflight = std::thread::spawn(move || {
        let req = format!(
            "GET /slow?ms=1500 HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\nAuthorization: Negotiate {token}\r\n\r\n"
        );
        raw_http(addr, req.as_bytes())
    });
    // Let the request reach the backend before asking the gateway to stop.
    let reached =
        iwa_testrealm::util::wait_until(Duration::from_secs(10), || !echo.requests().is_empty());
    assert!(reached, "slow request never reached the backend");
    assert!(
        iwa_testrealm::process::sigterm(gw.pid()),
        "gateway already gone"
    );
    let resp = inflight.join().expect("client thread");
    let status = gw.terminate().expect("exit status");
    match resp {
        Ok(r) => assert_eq!(r.status, 200, "in-flight request: {}", r.text()),
        Err(e) => panic!("in-flight request cut off by SIGTERM: {e}"),
    }
    assert!(
        status.success(),
        "iwa serve exited with {status} after SIGTERM"
    );
}
