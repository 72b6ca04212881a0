//! `[session]`: a login sets an AEAD session cookie; later requests with it skip the
//! handshake; the backend never sees it; tampered or foreign cookies are refused.

mod support;

use std::process::Command;

use support::*;

fn keygen(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    let out = Command::new(iwa_bin())
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn session_gateway(
    realm: &iwa_testrealm::MitRealm,
    backend: &str,
    key: &std::path::Path,
) -> Gateway {
    let cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "\n[session]\nkey_file = {}\n",
        toml_str(&key.display().to_string())
    ));
    Gateway::start(realm, &cfg)
}

#[test]
fn login_sets_a_cookie_that_replaces_the_handshake() {
    let realm = realm();
    let echo = echo();
    let keys = iwa_testrealm::TempDir::new("iwa-session-keys").unwrap();
    let key = keygen(keys.path(), "session.key");
    let gw = session_gateway(&realm, &echo.url(), &key);
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let r = gw.get_with_token("/login", &token);
    assert_eq!(r.status, 200);
    let set = r
        .header("set-cookie")
        .expect("a session cookie after login")
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    let pair = set.split(';').next().unwrap().to_owned();

    // The cookie alone, on a new connection, is alice; the backend never sees it.
    let cookie = format!("theme=dark; {pair}");
    let r = gw.get_raw("/later", &[("Cookie", &cookie)]).unwrap();
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = r.echo();
    assert_eq!(seen.header("x-remote-user"), Some("alice@IWA.TEST"));
    assert_eq!(seen.header("cookie"), Some("theme=dark"));

    // Tampered: one character changed in the ticket.
    let (name, value) = pair.split_once('=').unwrap();
    let mut bytes = value.as_bytes().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    let forged = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let r = gw.get_raw("/forged", &[("Cookie", &forged)]).unwrap();
    assert_eq!(r.status, 401);

    // A gateway with another key does not accept it.
    let other_key = keygen(keys.path(), "other.key");
    let gw2 = session_gateway(&realm, &echo.url(), &other_key);
    let r = gw2.get_raw("/elsewhere", &[("Cookie", &pair)]).unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn key_files_must_be_private_and_well_formed() {
    let realm = realm();
    let keys = iwa_testrealm::TempDir::new("iwa-session-keys").unwrap();
    let key = keygen(keys.path(), "session.key");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg_path = keys.path().join("iwa.toml");
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9").kerberos_line(&format!(
        "\n[session]\nkey_file = {}\n",
        toml_str(&key.display().to_string())
    ));
    std::fs::write(&cfg_path, cfg.render(1)).unwrap();
    let out = Command::new(iwa_bin())
        .args(["check", "--config"])
        .arg(&cfg_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("session.key_file") && text.contains("chmod 600"),
        "{text}"
    );
}

/// The session ticket is a bearer credential: it never reaches the backend, also on
/// routes where nobody is authenticated.
#[test]
fn cookie_is_removed_on_anonymous_routes_too() {
    let realm = realm();
    let echo = echo();
    let keys = iwa_testrealm::TempDir::new("iwa-session-keys").unwrap();
    let key = keygen(keys.path(), "session.key");
    let cfg = GatewayConfig::new(&realm, echo.url()).kerberos_line(&format!(
        "\n[session]\nkey_file = {}\n\n[[route]]\npath = \"/pub\"\nauth = \"anonymous\"\n\n[[route]]\npath = \"/maybe\"\nauth = \"optional\"\n",
        toml_str(&key.display().to_string())
    ));
    let gw = Gateway::start(&realm, &cfg);
    let r = gw.get_with_token("/login", &mint_token(&alice(&realm), "localhost"));
    let pair = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for path in ["/pub/page", "/maybe/page"] {
        let r = gw
            .get_raw(path, &[("Cookie", &format!("a=1; {pair}"))])
            .unwrap();
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.echo().header("cookie"), Some("a=1"), "{path}");
    }
}
