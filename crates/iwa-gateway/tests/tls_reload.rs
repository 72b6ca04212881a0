//! TLS leftovers: the certificate and key are reloaded on SIGHUP without dropping
//! connections (channel bindings follow the certificate each connection got), and
//! HTTP/2 is negotiated by ALPN only on listeners without NTLM.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use iwa_testrealm::process::send_signal;
use iwa_testrealm::util::wait_until;
use serde_json::Value;
use support::*;

const SIGHUP: i32 = 1;

/// SHA-256 of the certificate's DER, lowercase hex.
fn fingerprint(cert: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("openssl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_once('=')
        .map(|(_, hex)| hex.trim().replace(':', "").to_ascii_lowercase())
        .unwrap_or_else(|| panic!("no fingerprint: {text}"))
}

/// A TLS gateway (Kerberos; NTLM too when `ntlm`) with `extended_protection = mode`,
/// serving `dir/tls.pem` + `dir/tls.key`.
fn gateway(realm: &MitRealm, backend: &str, dir: &Path, ntlm: bool, mode: &str) -> Gateway {
    let ntlm_section = if ntlm {
        let users = ntlm_users_file(dir, "Ntlm-Pa55word");
        format!(
            "\n[ntlm]\nusers_file = {}\ndomain = \"IWA\"\n",
            toml_str(&users.display().to_string())
        )
    } else {
        String::new()
    };
    let mut cfg = GatewayConfig::new(realm, backend).kerberos_line(&format!(
        "{ntlm_section}\n[tls]\ncert = {}\nkey = {}\nextended_protection = \"{mode}\"\n",
        toml_str(&dir.join("tls.pem").display().to_string()),
        toml_str(&dir.join("tls.key").display().to_string()),
    ));
    cfg.tls = true;
    Gateway::start(realm, &cfg)
}

fn client_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/tls_reload_client.py")
}

/// `tls_reload_client.py`, reading its JSON lines; with `hold` it waits for [`go`].
///
/// [`go`]: HeldClient::go
struct HeldClient {
    child: ChildGuard,
    out: BufReader<std::process::ChildStdout>,
}

impl HeldClient {
    fn start(gw: &Gateway, cc: &Ccache, hold: bool) -> HeldClient {
        let mut cmd = Command::new(python());
        cmd.arg(client_path())
            .args(["--port", &gw.port.to_string()])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if hold {
            cmd.arg("--hold");
        }
        cc.apply(&mut cmd);
        let mut child = cmd.spawn().expect("python runs");
        let out = BufReader::new(child.stdout.take().unwrap());
        HeldClient {
            child: ChildGuard::new(child),
            out,
        }
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("client printed {line:?}: {e}"))
    }

    fn go(&mut self) {
        let stdin = self.child.child_mut().unwrap().stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
}

/// A new connection's certificate and the status of one request bound to it.
fn new_connection(gw: &Gateway, cc: &Ccache) -> (String, u16) {
    let mut c = HeldClient::start(gw, cc, false);
    let hello = c.line();
    let status = c.line();
    (
        hello["cert_sha256"].as_str().unwrap().to_owned(),
        u16::try_from(status["status"].as_u64().unwrap()).unwrap(),
    )
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls-reload").unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    write_self_signed(&cert, &key);
    let old = fingerprint(&cert);
    let gw = gateway(&realm, &backend.url(), dir.path(), false, "require");

    // A keep-alive connection opened before the reload.
    let mut held = HeldClient::start(&gw, &cc, true);
    let hello = held.line();
    assert_eq!(hello["cert_sha256"], old.as_str());
    assert_eq!(held.line()["status"], 200, "{}", gw.log());

    // New pair in place, SIGHUP.
    let next = dir.path().join("next");
    std::fs::create_dir_all(&next).unwrap();
    write_self_signed(&next.join("tls.pem"), &next.join("tls.key"));
    let new = fingerprint(&next.join("tls.pem"));
    assert_ne!(new, old);
    std::fs::copy(next.join("tls.pem"), &cert).unwrap();
    std::fs::copy(next.join("tls.key"), &key).unwrap();
    assert!(send_signal(gw.pid(), SIGHUP));
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .log()
            .contains("SIGHUP: TLS certificate reloaded")),
        "{}",
        gw.log()
    );

    // New connections get the new certificate, and bindings for it are accepted
    // (extended_protection = "require").
    let (seen, status) = new_connection(&gw, &cc);
    assert_eq!(seen, new);
    assert_eq!(status, 200, "{}", gw.log());

    // The old connection still works, with bindings for the OLD certificate.
    held.go();
    let second = held.line();
    assert_eq!(second["status"], 200, "{second}\n{}", gw.log());
    assert_eq!(second["same_connection"], true, "{second}");
}

#[test]
fn a_broken_new_pair_keeps_the_old_one() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-tls-reload").unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    write_self_signed(&cert, &key);
    let old = fingerprint(&cert);
    let gw = gateway(&realm, &backend.url(), dir.path(), false, "require");
    let good_cert = std::fs::read(&cert).unwrap();

    // Garbage certificate.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    assert!(send_signal(gw.pid(), SIGHUP));
    assert!(
        wait_until(Duration::from_secs(10), || gw.log().contains(
            "SIGHUP: TLS certificate not reloaded, keeping the previous one"
        )),
        "{}",
        gw.log()
    );
    assert_eq!(new_connection(&gw, &cc), (old.clone(), 200));

    // A certificate that does not match the key.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_self_signed(&other.join("tls.pem"), &other.join("tls.key"));
    std::fs::copy(other.join("tls.pem"), &cert).unwrap();
    assert!(send_signal(gw.pid(), SIGHUP));
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .log()
            .matches("keeping the previous one")
            .count()
            >= 2),
        "{}",
        gw.log()
    );
    assert_eq!(new_connection(&gw, &cc), (old.clone(), 200));

    // A key others can read.
    std::fs::write(&cert, &good_cert).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(send_signal(gw.pid(), SIGHUP));
    assert!(
        wait_until(Duration::from_secs(10), || gw
            .log()
            .contains("readable by group or others")),
        "{}",
        gw.log()
    );
    assert_eq!(new_connection(&gw, &cc), (old, 200));
}

/// `curl --http2 -k --negotiate`: (status, HTTP version, body).
fn curl_h2(gw: &Gateway, realm: &MitRealm, cc: &Ccache) -> (u16, String, Vec<u8>) {
    let dir = TempDir::new("iwa-curl-h2").unwrap();
    let body = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time", "30", "--http2", "-k"])
        .args(["--negotiate", "-u", ":", "-o"])
        .arg(&body)
        .args(["-w", "%{http_code} %{http_version}"])
        .arg(gw.https_url("/h2"))
        .envs(realm.env());
    cc.apply(&mut cmd);
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, version) = text.split_once(' ').unwrap_or((&text, ""));
    (
        code.parse().unwrap_or(0),
        version.to_owned(),
        std::fs::read(&body).unwrap_or_default(),
    )
}

#[test]
fn http2_by_alpn_only_when_ntlm_is_off() {
    let realm = realm();
    let backend = echo();
    let cc = alice(&realm);

    let dir = TempDir::new("iwa-tls-h2").unwrap();
    write_self_signed(&dir.path().join("tls.pem"), &dir.path().join("tls.key"));
    let gw = gateway(&realm, &backend.url(), dir.path(), false, "allow");
    let (status, version, body) = curl_h2(&gw, &realm, &cc);
    assert_eq!(status, 200, "{}", gw.log());
    assert_eq!(version, "2", "HTTP/2 not negotiated without NTLM");
    let seen = EchoRequest::from_json(&body).unwrap();
    assert_eq!(seen.header("x-remote-user"), Some("alice@IWA.TEST"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    // :authority becomes the app's Host, as HTTP/1.1's Host would.
    let host = format!("localhost:{}", gw.port);
    assert_eq!(
        seen.header("host"),
        Some(host.as_str()),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-forwarded-host"), Some(host.as_str()));
    assert!(
        gw.log().contains("ALPN offers h2 and http/1.1"),
        "{}",
        gw.log()
    );
    drop(gw);

    let dir = TempDir::new("iwa-tls-h2").unwrap();
    write_self_signed(&dir.path().join("tls.pem"), &dir.path().join("tls.key"));
    let gw = gateway(&realm, &backend.url(), dir.path(), true, "allow");
    let (status, version, _) = curl_h2(&gw, &realm, &cc);
    assert_eq!(status, 200, "{}", gw.log());
    assert_eq!(version, "1.1", "HTTP/2 offered with NTLM on");
}
