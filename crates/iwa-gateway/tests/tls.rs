//! TLS termination and Extended Protection (channel bindings): curl (no bindings) and
//! pyspnego over HTTPS with bindings for this certificate, for another certificate, or
//! none, with Kerberos and NTLM, in each `extended_protection` mode.

mod support;

use std::process::Command;

use serde_json::Value;
use support::*;

const PASSWORD: &str = "Ntlm-Pa55word";

/// A TLS gateway with Kerberos and NTLM; `mode` is `extended_protection` (None: the
/// default); `extra` goes at the end of the config.
fn tls_gateway(
    realm: &MitRealm,
    backend: &str,
    dir: &TempDir,
    mode: Option<&str>,
    extra: &str,
) -> Gateway {
    let (cert, key) = self_signed_cert(dir.path());
    let users = ntlm_users_file(dir.path(), PASSWORD);
    let mode_line = mode
        .map(|m| format!("extended_protection = \"{m}\"\n"))
        .unwrap_or_default();
    let mut cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n[ntlm]\nusers_file = {}\ndomain = \"IWA\"\ndns_domain = \"iwa.test\"\n\n[tls]\ncert = {}\nkey = {}\n{mode_line}{extra}",
        toml_str(&users.display().to_string()),
        toml_str(&cert.display().to_string()),
        toml_str(&key.display().to_string()),
    ));
    cfg.tls = true;
    Gateway::start(realm, &cfg)
}

/// pyspnego over HTTPS (`tests/clients/tls_client.py`).
fn pyspnego(gw: &Gateway, cc: &Ccache, protocol: &str, cb: &str) -> Value {
    let port = gw.port.to_string();
    // Offering h2 checks that a listener with NTLM picks http/1.1.
    let mut args = vec![
        "--port",
        &port,
        "--protocol",
        protocol,
        "--cb",
        cb,
        "--offer-h2",
    ];
    if protocol == "ntlm" {
        args.extend(["--user", "IWA\\alice", "--password", PASSWORD]);
    }
    let v = run_client(cc, "tls_client.py", &args);
    eprintln!("tls_client {protocol} {cb}: {v}");
    v
}

fn header<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v["headers"].as_array()?.iter().find(|p| p[0] == name)?[1].as_str()
}

fn curl_https(gw: &Gateway, realm: &MitRealm, cc: &Ccache) -> CurlResult {
    curl_get(cc, realm, &gw.https_url("/curl"), &["-k"])
}

#[test]
fn allow_mode_accepts_curl_and_bound_clients_refuses_wrong_bindings() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls").unwrap();
    // Default mode (allow), with session cookies.
    let key_file = dir.path().join("session.key");
    let out = Command::new(iwa_bin())
        .args(["keygen", "--out"])
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = format!(
        "\n[session]\nkey_file = {}\n",
        toml_str(&key_file.display().to_string())
    );
    let gw = tls_gateway(&realm, &backend.url(), &dir, None, &session);

    // curl --negotiate sends no channel bindings: fine in allow.
    let r = curl_https(&gw, &realm, &cc);
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = r.echo();
    assert_eq!(seen.header_all("x-remote-user"), vec!["IWA\\alice"]);
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    let cookie = r.header("set-cookie").expect("session cookie");
    assert!(cookie.contains("; Secure"), "cookie: {cookie}");

    for protocol in ["kerberos", "ntlm"] {
        let v = pyspnego(&gw, &cc, protocol, "real");
        assert_eq!(v["status"], 200, "{protocol} real: {v}\n{}", gw.log());
        assert_eq!(header(&v, "x-forwarded-proto"), Some("https"));
        assert_eq!(header(&v, "x-remote-user"), Some("IWA\\alice"));
        assert_eq!(v["alpn"], "http/1.1");
        let v = pyspnego(&gw, &cc, protocol, "none");
        assert_eq!(v["status"], 200, "{protocol} none: {v}\n{}", gw.log());
        let v = pyspnego(&gw, &cc, protocol, "wrong");
        assert_eq!(v["status"], 401, "{protocol} wrong: {v}");
    }
    let log = gw.log();
    assert!(log.contains("channel bindings do not match"), "{log}");
    assert!(log.contains("MsvAvChannelBindings) do not match"), "{log}");
}

#[test]
fn require_mode_refuses_clients_without_bindings() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls").unwrap();
    let gw = tls_gateway(&realm, &backend.url(), &dir, Some("require"), "");

    let r = curl_https(&gw, &realm, &cc);
    assert_eq!(r.status, 401, "curl sends no bindings");
    for protocol in ["kerberos", "ntlm"] {
        let v = pyspnego(&gw, &cc, protocol, "real");
        assert_eq!(v["status"], 200, "{protocol} real: {v}\n{}", gw.log());
        assert_eq!(header(&v, "x-remote-user"), Some("IWA\\alice"));
        let v = pyspnego(&gw, &cc, protocol, "none");
        assert_eq!(v["status"], 401, "{protocol} none: {v}");
        let v = pyspnego(&gw, &cc, protocol, "wrong");
        assert_eq!(v["status"], 401, "{protocol} wrong: {v}");
    }
    let log = gw.log();
    assert!(
        log.contains("Kerberos login without channel bindings refused"),
        "{log}"
    );
    assert!(
        log.contains("NTLM login without channel bindings refused"),
        "{log}"
    );
}

#[test]
fn off_mode_ignores_bindings() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls").unwrap();
    let gw = tls_gateway(&realm, &backend.url(), &dir, Some("off"), "");

    assert_eq!(curl_https(&gw, &realm, &cc).status, 200);
    for protocol in ["kerberos", "ntlm"] {
        for cb in ["real", "wrong", "none"] {
            let v = pyspnego(&gw, &cc, protocol, cb);
            assert_eq!(v["status"], 200, "{protocol} {cb}: {v}\n{}", gw.log());
        }
    }
}

#[test]
fn plain_http_is_refused_and_check_reports_the_certificate() {
    let realm = realm();
    let backend = echo();
    let dir = TempDir::new("iwa-tls").unwrap();
    let gw = tls_gateway(&realm, &backend.url(), &dir, None, "");
    // A plain-HTTP request on the TLS port gets no HTTP answer.
    assert!(gw.get_raw("/.iwa/healthz", &[]).is_err());
    let out = Command::new(iwa_bin())
        .arg("check")
        .arg("--config")
        .arg(gw.config_path())
        .envs(realm.env())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("CN=localhost"), "{text}");
    assert!(text.contains("extended_protection Allow"), "{text}");
}

#[test]
fn group_readable_key_is_refused() {
    let dir = TempDir::new("iwa-tls").unwrap();
    let (cert, key) = self_signed_cert(dir.path());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let config = dir.path().join("iwa.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:1\"\n[backend]\nurl = \"http://127.0.0.1:2\"\n[fake]\nuser = \"IWA\\\\alice\"\n[tls]\ncert = {}\nkey = \"tls.key\"\n",
            toml_str(&cert.display().to_string())
        ),
    )
    .unwrap();
    let out = Command::new(iwa_bin())
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tls.key") && text.contains("chmod 600"),
        "{text}"
    );
}

/// On a TLS listener the impersonation cookie is `Secure`, and the same-origin check
/// wants the `https` origin.
#[test]
fn impersonation_over_tls_has_secure_cookies_and_https_origin() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls-imp").unwrap();
    let key = keygen(dir.path());
    let directory = dir.path().join("directory.toml");
    std::fs::write(
        &directory,
        "[users]\n\"IWA\\\\bob\" = \"S-1-5-21-9-9-9-1002\"\n",
    )
    .unwrap();
    let gw = tls_gateway(
        &realm,
        &backend.url(),
        &dir,
        None,
        &format!(
            "\n[impersonation]\nallow_impersonation = [\"IWA\\\\alice\"]\nkey_file = {}\n\n[directory]\nfile = {}\n",
            toml_str(&key.display().to_string()),
            toml_str(&directory.display().to_string()),
        ),
    );
    let start = |origin: &str| {
        let mut args = vec!["-k".to_owned()];
        args.extend(json_request_args(
            "POST",
            origin,
            Some(r#"{"user": "IWA\\bob", "reason": "tls"}"#),
        ));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl_get(&cc, &realm, &gw.https_url("/.iwa/api/impersonation"), &args)
    };
    let plain = format!("http://localhost:{}", gw.port);
    assert_eq!(
        start(&plain).status,
        403,
        "an http origin is another origin"
    );
    let r = start(&format!("https://localhost:{}", gw.port));
    assert_eq!(r.status, 204, "{}", gw.log());
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
}
