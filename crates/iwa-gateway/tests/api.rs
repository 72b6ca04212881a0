//! `/.iwa/api/whoami`: always behind a login (even when `/` is anonymous), answered by
//! the gateway (never forwarded), with the caller's impersonation permissions.

mod support;

use serde_json::Value;
use support::*;

fn api_gateway(realm: &iwa_testrealm::MitRealm, backend: &str, dir: &TempDir) -> Gateway {
    let key = keygen(dir.path());
    let directory = dir.path().join("directory.toml");
    std::fs::write(&directory, "[users]\n\"IWA\\\\bob\" = \"\"\n").unwrap();
    let cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "\n[impersonation]\nallow_impersonation = [\"alice@IWA.TEST\"]\nkey_file = {}\n\n\
         [directory]\nfile = {}\n\n[[route]]\npath = \"/\"\nauth = \"anonymous\"\n",
        toml_str(&key.display().to_string()),
        toml_str(&directory.display().to_string()),
    ));
    Gateway::start(realm, &cfg)
}

#[test]
fn whoami_requires_a_login_and_reports_permissions() {
    let realm = realm();
    let echo = echo();
    let dir = TempDir::new("iwa-api").unwrap();
    let gw = api_gateway(&realm, &echo.url(), &dir);
    let r = gw
        .get_raw("/.iwa/api/whoami", &[("Accept", "application/json")])
        .unwrap();
    assert_eq!(r.status, 401, "the API is never anonymous");
    assert_eq!(r.header("www-authenticate"), Some("Negotiate"));

    let r = gw.get_with_token("/.iwa/api/whoami", &mint_token(&alice(&realm), "localhost"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["user"], "alice@IWA.TEST");
    assert_eq!(v["identity"]["principal"], "alice@IWA.TEST");
    assert_eq!(v["identity"]["method"], "Kerberos");
    assert_eq!(v["impersonating"], false);
    assert_eq!(v["permissions"]["allow_impersonation"], true);
    assert_eq!(v["permissions"]["increase_permissions"], false);

    let r = gw.get_with_token("/.iwa/api/whoami", &mint_token(&bob(&realm), "localhost"));
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["user"], "bob@IWA.TEST");
    assert_eq!(v["permissions"]["allow_impersonation"], false);

    let r = gw.get_with_token("/.iwa/api/nope", &mint_token(&alice(&realm), "localhost"));
    assert_eq!(r.status, 404);
    assert!(
        echo.requests()
            .iter()
            .all(|q| !q.path.starts_with("/.iwa/")),
        "API requests must not reach the backend"
    );
}
