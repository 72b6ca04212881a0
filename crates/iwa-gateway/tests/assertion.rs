//! `[assertion]`: authenticated requests reach the backend with `X-Iwa-Assertion`, an
//! HS256 JWS the backend verifies with the shared secret; anonymous ones carry none, and
//! a client-sent one never gets through. (EdDSA, and a real Flask backend: `flask.rs`.)

mod support;

use std::time::{Duration, SystemTime};

use support::*;

#[test]
fn backend_can_verify_the_identity_it_receives() {
    let realm = realm();
    let echo = echo();
    let dir = iwa_testrealm::TempDir::new("iwa-assertion").unwrap();
    let secret_path = dir.path().join("assertion.key");
    let secret = b"this-is-a-32-byte-or-longer-shared-secret".to_vec();
    std::fs::write(&secret_path, &secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n[assertion]\nsecret_file = {}\naudience = \"echo-app\"\n\n[[route]]\npath = \"/pub\"\nauth = \"anonymous\"\n",
        toml_str(&secret_path.display().to_string())
    ));
    let gw = Gateway::start(&realm, &cfg);
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let r = gw.get_with_token("/orders?id=7", &token);
    assert_eq!(r.status, 200);
    let seen = r.echo();
    let jws = seen
        .header("x-iwa-assertion")
        .expect("an assertion for an authenticated request");
    let key = iwa::assertion::VerifyingKey::hs256(&secret).unwrap();
    let keys = std::slice::from_ref(&key);
    let claims = iwa::assertion::verify(
        keys,
        jws,
        "echo-app",
        "GET",
        "/orders?id=7",
        SystemTime::now(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("assertion does not verify: {e}"));
    assert_eq!(claims.sub, "IWA\\alice");
    assert_eq!(claims.upn, "alice@IWA.TEST");
    assert_eq!(claims.amr, "Kerberos");
    // Bound to this request and this backend.
    assert!(iwa::assertion::verify(
        keys,
        jws,
        "echo-app",
        "GET",
        "/admin",
        SystemTime::now(),
        Duration::ZERO
    )
    .is_err());
    assert!(iwa::assertion::verify(
        keys,
        jws,
        "other-app",
        "GET",
        "/orders?id=7",
        SystemTime::now(),
        Duration::ZERO
    )
    .is_err());
    assert!(iwa::assertion::verify(
        &[iwa::assertion::VerifyingKey::hs256(b"wrong-secret-wrong-secret-wrong-secret").unwrap()],
        jws,
        "echo-app",
        "GET",
        "/orders?id=7",
        SystemTime::now(),
        Duration::ZERO
    )
    .is_err());

    // Anonymous: none, and a forged one from the client is stripped.
    let r = gw.get_raw("/pub/x", &[("X-Iwa-Assertion", jws)]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().header("x-iwa-assertion"), None);
}

/// With a path prefix in `backend.url`, `htu` is the path the backend receives, so the
/// backend's own check of its request path passes.
#[test]
fn htu_is_the_path_the_backend_receives() {
    let realm = realm();
    let echo = echo();
    let dir = iwa_testrealm::TempDir::new("iwa-assertion-prefix").unwrap();
    let secret_path = dir.path().join("assertion.key");
    let secret = b"this-is-a-32-byte-or-longer-shared-secret".to_vec();
    std::fs::write(&secret_path, &secret).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = GatewayConfig::new(&realm, format!("{}/app", echo.url())).kerberos_line(&format!(
        "\n[assertion]\nsecret_file = {}\naudience = \"echo-app\"\n",
        toml_str(&secret_path.display().to_string())
    ));
    let gw = Gateway::start(&realm, &cfg);
    let r = gw.get_with_token("/orders?id=7", &mint_token(&alice(&realm), "localhost"));
    assert_eq!(r.status, 200);
    let seen = r.echo();
    assert_eq!(seen.path, "/app/orders");
    let key = iwa::assertion::VerifyingKey::hs256(&secret).unwrap();
    let jws = seen.header("x-iwa-assertion").unwrap();
    iwa::assertion::verify(
        std::slice::from_ref(&key),
        jws,
        "echo-app",
        "GET",
        "/app/orders?id=7",
        SystemTime::now(),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("the backend's own path must verify: {e}"));
}
