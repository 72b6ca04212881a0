//! `[[route]]`: anonymous, optional (IIS-style anonymous fallback, backend 401 →
//! challenge) and required routes with allow rules, longest prefix first.

mod support;

use support::*;

fn routed_gateway(realm: &iwa_testrealm::MitRealm, backend: &str) -> Gateway {
    let cfg = GatewayConfig::new(realm, backend).kerberos_line(
        "realm_domains = { \"IWA.TEST\" = \"IWA\" }\n\n\
         [[route]]\npath = \"/\"\nauth = \"optional\"\n\n\
         [[route]]\npath = \"/public\"\nauth = \"anonymous\"\n\n\
         [[route]]\npath = \"/admin\"\nallow_users = [\"IWA\\\\alice\"]\n\n\
         [[route]]\npath = \"/private\"\nauth = \"required\"\n",
    );
    Gateway::start(realm, &cfg)
}

#[test]
fn anonymous_route_needs_no_login_and_still_strips_identity_headers() {
    let realm = realm();
    let echo = echo();
    let gw = routed_gateway(&realm, &echo.url());
    let r = gw
        .get_raw(
            "/public/style.css",
            &[
                ("X-Remote-User", "IWA\\alice"),
                ("Authorization", "Negotiate AAAA"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = r.echo();
    assert_eq!(seen.header("x-remote-user"), None);
    assert_eq!(seen.header("authorization"), None);
}

#[test]
fn optional_route_is_anonymous_until_credentials_are_offered() {
    let realm = realm();
    let echo = echo();
    let gw = routed_gateway(&realm, &echo.url());
    let r = gw
        .get_raw("/home", &[("x_remote_user", "IWA\\alice")])
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echo().header("x-remote-user"),
        None,
        "anonymous request carries no identity"
    );
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let r = gw.get_with_token("/home", &token);
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-remote-user"), Some("IWA\\alice"));
}

#[test]
fn backend_401_on_an_anonymous_request_becomes_the_challenge() {
    let realm = realm();
    let echo = echo();
    let gw = routed_gateway(&realm, &echo.url());
    let r = gw.get_raw("/status/401", &[]).unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Negotiate"));
    // curl follows the challenge and the app then sees alice (and answers 401 again,
    // which an authenticated request passes through unchanged).
    let cc = alice(&realm);
    let r = curl_get(&cc, &realm, &gw.url("/status/401"), &[]);
    assert_eq!(r.status, 401);
    assert_eq!(
        echo.requests().last().unwrap().header("x-remote-user"),
        Some("IWA\\alice")
    );
}

#[test]
fn required_route_with_allow_users() {
    let realm = realm();
    let echo = echo();
    let gw = routed_gateway(&realm, &echo.url());
    assert_eq!(gw.get_raw("/admin", &[]).unwrap().status, 401);
    assert_eq!(gw.get_raw("/private/x", &[]).unwrap().status, 401);
    let a = curl_get(&alice(&realm), &realm, &gw.url("/admin/panel"), &[]);
    assert_eq!(a.status, 200);
    let before = echo.requests().len();
    let b = curl_get(&bob(&realm), &realm, &gw.url("/admin/panel"), &[]);
    assert_eq!(b.status, 403);
    let page = String::from_utf8_lossy(&b.body);
    assert!(page.contains("signed in as IWA\\bob"), "{page}");
    assert!(page.contains("named users"), "{page}");
    assert_eq!(
        echo.requests().len(),
        before,
        "a refused request reached the backend"
    );
    // Whole path segments: /administrator is not /admin.
    let b = curl_get(&bob(&realm), &realm, &gw.url("/administrator"), &[]);
    assert_eq!(b.status, 200);
}
