//! `iwa check`: validates config and keytab without serving.

mod support;

use std::process::Command;

use support::*;

fn check(realm: &MitRealm, config: &str) -> (bool, String) {
    let dir = TempDir::new("iwa-check").expect("tmp");
    let path = dir.path().join("iwa.toml");
    std::fs::write(&path, config).expect("write config");
    let out = Command::new(iwa_bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .envs(realm.env())
        .env("KRB5RCACHEDIR", dir.path())
        .env_remove("KRB5_KTNAME")
        .output()
        .expect("run iwa check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_good_config_lists_keytab_principals() {
    let realm = realm();
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9").keytab(realm.both_keytab());
    let (ok, text) = check(&realm, &cfg.render(8080));
    assert!(ok, "iwa check failed on a good config:\n{text}");
    for want in [
        "HTTP/localhost@IWA.TEST",
        "HTTP/other.test@IWA.TEST",
        "aes256-cts-hmac-sha1-96",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        text.to_ascii_lowercase().contains("kvno"),
        "no kvno in:\n{text}"
    );
}

#[test]
fn check_reports_unknown_key_and_missing_keytab_with_key_paths() {
    let realm = realm();
    let missing = realm.dir().join("does-not-exist.keytab");
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9").keytab(missing.clone());
    let mut text = cfg.render(8080);
    text = text.replace("[backend]\n", "[backend]\ncolour = \"blue\"\n");
    let (ok, out) = check(&realm, &text);
    assert!(!ok, "iwa check accepted a bad config:\n{out}");
    assert!(
        out.contains("backend.colour"),
        "unknown key path missing:\n{out}"
    );
    assert!(
        out.contains("kerberos.keytab"),
        "keytab key path missing:\n{out}"
    );
    assert!(
        out.contains(&missing.display().to_string()),
        "missing keytab path not named:\n{out}"
    );
}

#[test]
fn check_fails_when_pinned_service_principal_is_not_in_keytab() {
    let realm = realm();
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9")
        .kerberos_line(r#"service_principal = "HTTP/other.test@IWA.TEST""#);
    let (ok, out) = check(&realm, &cfg.render(8080));
    assert!(
        !ok,
        "service_principal absent from the keytab passed:\n{out}"
    );
    assert!(out.contains("HTTP/other.test"), "{out}");
}

#[test]
fn serve_refuses_bad_config_with_nonzero_exit() {
    let realm = realm();
    let dir = TempDir::new("iwa-serve-bad").expect("tmp");
    let path = dir.path().join("iwa.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:1\"\nbogus = 1\n").expect("write");
    let out = Command::new(iwa_bin())
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .envs(realm.env())
        .output()
        .expect("run iwa serve");
    assert!(!out.status.success(), "serve started with a bad config");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bogus"),
        "error does not name the bad key:\n{err}"
    );
}

#[test]
fn check_validates_the_ldap_gssapi_keytab() {
    // `[ldap] bind = "gssapi"` with the keytab defaulting to [kerberos]'s: the
    // principal must have a key in it. Offline: no directory or KDC is contacted.
    let realm = realm();
    let cfg = GatewayConfig::new(&realm, "http://127.0.0.1:9");
    let ldap = |principal: &str| {
        format!(
            "{}\n[ldap]\nurl = \"ldap://dc1.example.test\"\nbase_dn = \"DC=example,DC=test\"\nbind = \"gssapi\"\nprincipal = {}\n",
            cfg.render(8080),
            toml_str(principal)
        )
    };
    let (ok, out) = check(&realm, &ldap("HTTP/localhost@IWA.TEST"));
    assert!(ok, "{out}");
    assert!(
        out.contains("SASL GSSAPI as HTTP/localhost@IWA.TEST to ldap/dc1.example.test@IWA.TEST"),
        "{out}"
    );
    assert!(out.contains("sealed by the SASL GSSAPI layer"), "{out}");
    let (ok, out) = check(&realm, &ldap("iwa-svc@IWA.TEST"));
    assert!(!ok, "a principal without a key passed:\n{out}");
    assert!(
        out.contains("ldap.principal iwa-svc@IWA.TEST has no key in the keytab"),
        "{out}"
    );
}
