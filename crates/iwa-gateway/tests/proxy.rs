//! Proxy behaviour: backend errors, status pass-through, keep-alive with authentication
//! on every request.

mod support;

use support::*;

#[test]
fn backend_down_is_502_and_gateway_keeps_serving() {
    let realm = realm();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, dead_backend_url()));
    let cc = alice(&realm);
    let r = curl_get(&cc, &realm, &gw.url("/"), &[]);
    assert_eq!(r.status, 502, "body: {}", String::from_utf8_lossy(&r.body));
    let again = curl_get(&cc, &realm, &gw.url("/"), &[]);
    assert_eq!(again.status, 502);
    let health = gw.get_raw("/.iwa/healthz", &[]).expect("healthz");
    assert_eq!(health.status, 200);
}

#[test]
fn backend_status_is_passed_through() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    for code in [404u16, 418, 500, 503] {
        let r = curl_get(&cc, &realm, &gw.url(&format!("/status/{code}")), &[]);
        assert_eq!(r.status, code, "backend status {code} not passed through");
        assert_eq!(r.echo().header("x-remote-user"), Some("alice@IWA.TEST"));
    }
}

#[test]
fn keepalive_curl_many_urls_one_connection() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let urls: Vec<String> = (0..6).map(|i| gw.url(&format!("/ka/{i}"))).collect();
    let results = curl(Some(&cc), &realm, &urls, &[]);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(
            r.status,
            200,
            "request {i}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let seen = r.echo();
        assert_eq!(seen.path, format!("/ka/{i}"));
        assert_identity(
            &seen,
            "alice@IWA.TEST",
            "alice@IWA.TEST",
            &format!("localhost:{}", gw.port),
        );
    }
    let connects: u32 = results.iter().map(|r| r.num_connects).sum();
    assert_eq!(
        connects,
        1,
        "curl opened {connects} connections for {} URLs",
        urls.len()
    );
}

#[test]
fn keepalive_fresh_token_per_request_on_one_connection() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = bob(&realm);
    let v = run_client(
        &cc,
        "keepalive_client.py",
        &[&gw.url("/k"), "--count", "8", "--anonymous-first"],
    );
    let responses = v["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 9, "{v}");
    assert_eq!(responses[0]["status"], 401, "anonymous first request: {v}");
    for (i, resp) in responses.iter().enumerate().skip(1) {
        assert_eq!(resp["status"], 200, "request {i}: {v}");
        assert_eq!(resp["mutual_ok"], true, "request {i} mutual auth: {v}");
        let seen: EchoRequest = serde_json::from_value(resp["body"].clone()).expect("echo");
        assert_identity(
            &seen,
            "bob@IWA.TEST",
            "bob@IWA.TEST",
            &format!("localhost:{}", gw.port),
        );
    }
    assert_eq!(
        v["distinct_local_ports"], 1,
        "the gateway closed the connection between requests: {v}"
    );
    assert_eq!(echo.requests().len(), 8);
}

#[test]
fn keepalive_requests_session_every_request_authenticated() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let v = run_client(
        &cc,
        "requests_gssapi_client.py",
        &[&gw.url("/s"), "--count", "5", "--mutual", "required"],
    );
    assert!(v.get("error").is_none(), "{v}");
    let responses = v["responses"].as_array().expect("responses");
    assert_eq!(responses.len(), 5);
    for (i, resp) in responses.iter().enumerate() {
        assert_eq!(resp["status"], 200, "request {i}: {v}");
        let seen: EchoRequest = serde_json::from_value(resp["body"].clone()).expect("echo");
        assert_eq!(
            seen.header("x-remote-user"),
            Some("alice@IWA.TEST"),
            "request {i}"
        );
    }
    assert_eq!(echo.requests().len(), 5);
}
