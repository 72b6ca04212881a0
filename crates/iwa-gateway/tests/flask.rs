//! The Flask example (`examples/flask/app.py`) behind `iwa serve`, for real: alice logs in
//! with `curl --negotiate` and the app shows her name and groups from the assertion it
//! verified; with EdDSA and with HS256. Sent straight to Flask, requests without an
//! assertion, with a tampered, expired, wrong-audience, wrong-algorithm or replayed one
//! are refused, each for its own reason. Also: iwa hosting the app itself
//! (`[backend] command`, with the pairing token), and `iwa check` on its `iwa.toml`.

mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use iwa::assertion::{Signer, SigningKey};
use iwa::{AuthMethod, Identity};
use support::*;

const AUDIENCE: &str = "flask-example";
const ALICE_SID: &str = "S-1-5-21-1000-2000-3000-1104";
const HELPDESK_SID: &str = "S-1-5-21-1000-2000-3000-1105";
const ALL_STAFF_SID: &str = "S-1-5-21-1000-2000-3000-1106";

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/flask")
}

/// `python3 examples/flask/app.py` on a free port; SIGTERM (then SIGKILL) by PID on drop.
struct Flask {
    port: u16,
    child: ChildGuard,
    log: PathBuf,
}

impl Flask {
    fn start(dir: &Path, env: &[(&str, String)]) -> Flask {
        let port = iwa_testrealm::free_tcp_port().expect("free port");
        let log = dir.join(format!("flask-{port}.log"));
        let child = Command::new(python())
            .arg(example_dir().join("app.py"))
            .current_dir(dir)
            .env("PORT", port.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env_remove("IWA_PAIRING_TOKEN")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("flask log"))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} app.py: {e}", python()));
        let mut flask = Flask {
            port,
            child: ChildGuard::new(child),
            log,
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = flask.child.try_wait() {
                panic!("app.py exited with {status}:\n{}", flask.log());
            }
            assert!(
                Instant::now() < deadline,
                "app.py not listening:\n{}",
                flask.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        flask
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A request straight to Flask (not through iwa).
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: 0\r\n",
            self.port
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw_http(
            SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            req.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("request to Flask: {e}\n{}", self.log()))
    }

    fn get_with_assertion(&self, path: &str, token: &str) -> HttpResponse {
        self.request("GET", path, &[("X-Iwa-Assertion", token)])
    }
}

impl Drop for Flask {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- flask log ---\n{}\n--- end flask log ---", self.log());
        }
        self.child.stop();
    }
}

/// Asserts a refusal: `status` and the app's `refused: <reason>:` line.
fn assert_refused(r: &HttpResponse, status: u16, reason: &str) {
    let text = r.text();
    assert_eq!(r.status, status, "{text}");
    assert!(
        text.starts_with(&format!("refused: {reason}:")),
        "expected `refused: {reason}:`, got: {text}"
    );
}

/// A directory file giving alice a SID and two (nested) groups: the MIT test realm has
/// no PAC.
fn directory_file(dir: &Path) -> PathBuf {
    let path = dir.join("directory.toml");
    std::fs::write(
        &path,
        format!(
            "[users]\n\"IWA\\\\alice\" = \"{ALICE_SID}\"\n\n[groups.\"IWA\\\\Helpdesk Staff\"]\nsid = \"{HELPDESK_SID}\"\nmembers = [\"IWA\\\\alice\"]\n\n[groups.\"IWA\\\\All Staff\"]\nsid = \"{ALL_STAFF_SID}\"\nmembers = [\"IWA\\\\Helpdesk Staff\"]\n"
        ),
    )
    .unwrap();
    path
}

/// `[kerberos]` tail, `[directory]` and `[assertion]` with `key_line`.
fn gateway_extra(dir: &Path, key_line: &str) -> String {
    format!(
        "realm_domains = {{ \"IWA.TEST\" = \"IWA\" }}\n\n[directory]\nfile = {}\n\n[assertion]\n{key_line}\naudience = \"{AUDIENCE}\"\nlifetime = \"30s\"\n",
        toml_str(&directory_file(dir).display().to_string()),
    )
}

fn run_iwa(args: &[&str]) -> String {
    let out = Command::new(iwa_bin())
        .args(args)
        .output()
        .expect("run iwa");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "iwa {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `iwa keygen --ed25519`: the key pair and the kid it printed.
fn ed25519_keys(dir: &Path) -> (PathBuf, PathBuf, String) {
    let key = dir.join("assertion.key");
    let out = run_iwa(&["keygen", "--ed25519", "--out", key.to_str().unwrap()]);
    let kid = out
        .trim()
        .rsplit("kid ")
        .next()
        .expect("keygen prints the kid")
        .to_owned();
    (key, dir.join("assertion.pub"), kid)
}

fn alice_identity() -> Identity {
    let domains = [("IWA.TEST".to_owned(), "IWA".to_owned())].into();
    Identity::from_principal("alice@IWA.TEST", AuthMethod::Kerberos, &domains)
}

/// The claims edited as text under the original header and signature.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert!(claims.contains("IWA\\\\alice"), "{claims}");
    let forged = URL_SAFE_NO_PAD.encode(claims.replace("IWA\\\\alice", "IWA\\\\admin"));
    format!("{}.{forged}.{}", parts[0], parts[2])
}

/// Alice through the gateway sees herself; Flask refuses everything else it is sent
/// directly. `key` signs like the gateway; `foreign` is a key of the other algorithm.
fn check_flask_behind_gateway(gw: &Gateway, flask: &Flask, key: &SigningKey, foreign: &Signer) {
    let realm = realm();
    let cc = alice(&realm);

    // Through iwa, logged in with Kerberos: the page and the JSON.
    let r = curl_get(&cc, &realm, &gw.url("/"), &[]);
    let page = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 200, "{page}\n{}", gw.log());
    assert!(page.contains("Hello, IWA\\alice"), "{page}");
    for want in [
        "alice@IWA.TEST",
        "Kerberos",
        "IWA\\Helpdesk Staff",
        "IWA\\All Staff",
        HELPDESK_SID,
    ] {
        assert!(page.contains(want), "{want} not on the page:\n{page}");
    }
    assert!(!page.contains("Impersonator"), "{page}");
    let r = curl_get(&cc, &realm, &gw.url("/api/me?view=full&x=%2F"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let me: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(me["user"], "IWA\\alice", "{me}");
    assert_eq!(me["principal"], "alice@IWA.TEST", "{me}");
    // No PAC in the MIT realm: the directory file gives the SID, with the groups.
    assert_eq!(me["sid"], ALICE_SID, "{me}");
    assert_eq!(me["auth_method"], "Kerberos", "{me}");
    assert_eq!(me["impersonator"], serde_json::Value::Null, "{me}");
    assert_eq!(me["audience"], AUDIENCE, "{me}");
    let groups: Vec<&str> = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert!(groups.contains(&"IWA\\Helpdesk Staff"), "{me}");
    assert!(groups.contains(&"IWA\\All Staff"), "{me}");
    // Without a login the gateway challenges; Flask never sees the request.
    let r = gw.get_raw("/", &[]).unwrap();
    assert_eq!(r.status, 401);

    // Straight to Flask, around iwa: no assertion, or identity headers without one.
    assert_refused(&flask.request("GET", "/", &[]), 401, "missing");
    assert_refused(
        &flask.request("GET", "/", &[("X-Remote-User", "IWA\\admin")]),
        401,
        "missing",
    );
    let r = flask.request("GET", "/api/me", &[]);
    assert_eq!(r.status, 401);
    let err: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(err["error"], "missing", "{err}");

    // A genuine assertion, made with the gateway's key here, is accepted: so each
    // refusal below is for the one thing changed.
    let signer = Signer::with_key(key.clone(), AUDIENCE, Duration::from_secs(30));
    let now = SystemTime::now();
    let id = alice_identity();
    let genuine = signer.sign(&id, None, "GET", "/a?b=1", now).unwrap();
    let r = flask.get_with_assertion("/a?b=1", &genuine);
    assert_eq!(r.status, 404, "accepted, then no such page: {}", r.text());
    let me = signer.sign(&id, None, "GET", "/api/me", now).unwrap();
    let r = flask.get_with_assertion("/api/me", &me);
    assert_eq!(r.status, 200, "{}", r.text());
    // A SID and an impersonator are shown too.
    let mut with_sid = id.clone();
    with_sid.sid = Some(ALICE_SID.to_owned());
    let acting = signer
        .sign(&with_sid, Some("IWA\\helpdesk"), "GET", "/", now)
        .unwrap();
    let page = flask.get_with_assertion("/", &acting).text();
    assert!(page.contains(ALICE_SID), "{page}");
    assert!(
        page.contains("<th>Impersonator</th><td>IWA\\helpdesk</td>"),
        "{page}"
    );

    // Tampered: alice's claims turned into admin's under her signature.
    assert_refused(
        &flask.get_with_assertion("/a?b=1", &tampered(&genuine)),
        401,
        "bad-signature",
    );
    // Expired: issued 10 minutes ago with a 30 s lifetime.
    let old = signer
        .sign(&id, None, "GET", "/a", now - Duration::from_secs(600))
        .unwrap();
    assert_refused(&flask.get_with_assertion("/a", &old), 401, "expired");
    // Issued for another backend.
    let other_app = Signer::with_key(key.clone(), "other-app", Duration::from_secs(30))
        .sign(&id, None, "GET", "/a", now)
        .unwrap();
    assert_refused(
        &flask.get_with_assertion("/a", &other_app),
        403,
        "wrong-audience",
    );
    // Replayed on another path, another query, another method.
    assert_refused(
        &flask.get_with_assertion("/b", &genuine),
        403,
        "wrong-request",
    );
    assert_refused(
        &flask.get_with_assertion("/a?b=2", &genuine),
        403,
        "wrong-request",
    );
    assert_refused(
        &flask.get_with_assertion("/a", &genuine),
        403,
        "wrong-request",
    );
    let post = signer.sign(&id, None, "POST", "/a", now).unwrap();
    assert_refused(&flask.get_with_assertion("/a", &post), 403, "wrong-request");
    // The other algorithm (for EdDSA: HS256 keyed with the public key PEM, the classic
    // confusion attack), and a same-algorithm key that is not the gateway's.
    let confused = foreign.sign(&id, None, "GET", "/a", now).unwrap();
    assert_refused(
        &flask.get_with_assertion("/a", &confused),
        401,
        "wrong-algorithm",
    );
    let impostor_key = match key.algorithm() {
        iwa::assertion::Algorithm::EdDsa => SigningKey::generate_ed25519().unwrap().key,
        _ => SigningKey::hs256(b"not-the-gateway-secret-not-the-gateway".to_vec()).unwrap(),
    };
    let impostor = Signer::with_key(impostor_key, AUDIENCE, Duration::from_secs(30))
        .sign(&id, None, "GET", "/a", now)
        .unwrap();
    assert_refused(
        &flask.get_with_assertion("/a", &impostor),
        401,
        "bad-signature",
    );
    assert_refused(
        &flask.get_with_assertion("/a", "not.a.jws"),
        401,
        "malformed",
    );
}

#[test]
fn flask_verifies_eddsa_assertions() {
    let realm = realm();
    let dir = TempDir::new("iwa-flask-eddsa").unwrap();
    let (key_path, pub_path, kid) = ed25519_keys(dir.path());
    let flask = Flask::start(
        dir.path(),
        &[
            (
                "IWA_ASSERTION_PUBLIC_KEY_FILE",
                pub_path.display().to_string(),
            ),
            ("IWA_ASSERTION_AUDIENCE", AUDIENCE.to_owned()),
        ],
    );
    let cfg = GatewayConfig::new(&realm, flask.url()).kerberos_line(&gateway_extra(
        dir.path(),
        &format!(
            "private_key_file = {}",
            toml_str(&key_path.display().to_string())
        ),
    ));
    let gw = Gateway::start(&realm, &cfg);
    let check = run_iwa(&["check", "--config", gw.config_path().to_str().unwrap()]);
    assert!(
        check.contains(&format!("assertion: EdDSA, kid {kid}")),
        "{check}"
    );
    assert!(
        check.contains(std::fs::read_to_string(&pub_path).unwrap().trim()),
        "{check}"
    );
    let key = iwa::assertion::read_ed25519_private_key_file(&key_path).unwrap();
    assert_eq!(key.kid(), kid);
    let pem = std::fs::read(&pub_path).unwrap();
    let confused = Signer::with_key(
        SigningKey::hs256(pem).unwrap(),
        AUDIENCE,
        Duration::from_secs(30),
    );
    check_flask_behind_gateway(&gw, &flask, &key, &confused);
}

#[test]
fn flask_verifies_hs256_assertions() {
    let realm = realm();
    let dir = TempDir::new("iwa-flask-hs256").unwrap();
    let secret_path = dir.path().join("assertion.secret");
    run_iwa(&["keygen", "--out", secret_path.to_str().unwrap()]);
    let flask = Flask::start(
        dir.path(),
        &[
            (
                "IWA_ASSERTION_SECRET_FILE",
                secret_path.display().to_string(),
            ),
            ("IWA_ASSERTION_ALGORITHM", "HS256".to_owned()),
            ("IWA_ASSERTION_AUDIENCE", AUDIENCE.to_owned()),
        ],
    );
    let cfg = GatewayConfig::new(&realm, flask.url()).kerberos_line(&gateway_extra(
        dir.path(),
        &format!(
            "algorithm = \"HS256\"\nsecret_file = {}",
            toml_str(&secret_path.display().to_string())
        ),
    ));
    let gw = Gateway::start(&realm, &cfg);
    let mut secret = std::fs::read(&secret_path).unwrap();
    assert_eq!(secret.pop(), Some(b'\n'));
    let key = SigningKey::hs256(secret).unwrap();
    let check = run_iwa(&["check", "--config", gw.config_path().to_str().unwrap()]);
    assert!(
        check.contains(&format!("assertion: HS256, kid {}", key.kid())),
        "{check}"
    );
    let confused = Signer::with_key(
        SigningKey::generate_ed25519().unwrap().key,
        AUDIENCE,
        Duration::from_secs(30),
    );
    check_flask_behind_gateway(&gw, &flask, &key, &confused);
}

/// Kills a process left running when the test ends (pass or fail).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            if iwa_testrealm::process::pid_alive(pid) {
                iwa_testrealm::process::send_signal(pid, 9);
            }
        }
    }
}

/// A gateway config hosting the Flask example (`[backend] command`) with EdDSA
/// assertions; `tail` is appended. Returns it with the private key's path.
fn hosted_flask_config(realm: &MitRealm, dir: &Path, tail: &str) -> (GatewayConfig, PathBuf) {
    let (key_path, pub_path, _) = ed25519_keys(dir);
    let table = format!(
        "command = [{}, {}]\nenv = {{ IWA_ASSERTION_PUBLIC_KEY_FILE = {}, IWA_ASSERTION_AUDIENCE = \"{AUDIENCE}\", PYTHONDONTWRITEBYTECODE = \"1\" }}\nstartup_timeout = \"20s\"\n",
        toml_str(&python()),
        toml_str(&example_dir().join("app.py").display().to_string()),
        toml_str(&pub_path.display().to_string()),
    );
    let cfg = GatewayConfig::new(realm, "http://unused")
        .backend_table(&table)
        .kerberos_line(&format!(
            "{}{tail}",
            gateway_extra(
                dir,
                &format!(
                    "private_key_file = {}",
                    toml_str(&key_path.display().to_string())
                ),
            )
        ));
    (cfg, key_path)
}

/// The hosted app's PID and port, from its start line in iwa's log: `app[PID]: app.py:
/// EdDSA assertions for audience 'flask-example', pairing token required;
/// http://127.0.0.1:PORT/`. The last such line (the app may have been restarted).
fn hosted_app(log: &str) -> Option<(u32, u16)> {
    let line = log
        .lines()
        .rfind(|l| l.contains("pairing token required; http://127.0.0.1:"))?;
    let pid = line.split("app[").nth(1)?.split(']').next()?.parse().ok()?;
    let port = line
        .rsplit("http://127.0.0.1:")
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some((pid, port))
}

#[test]
fn iwa_hosts_the_flask_example() {
    let realm = realm();
    let cc = alice(&realm);
    let dir = TempDir::new("iwa-flask-hosted").unwrap();
    let (cfg, key_path) = hosted_flask_config(&realm, dir.path(), "");
    // Declared before the gateway: dropped after it, so iwa stops the app first.
    let mut app_pid = KillOnDrop(None);
    let gw = Gateway::start(&realm, &cfg);
    let deadline = Instant::now() + Duration::from_secs(20);
    let page = loop {
        let r = curl_get(&cc, &realm, &gw.url("/"), &[]);
        if r.status == 200 {
            break String::from_utf8_lossy(&r.body).into_owned();
        }
        assert_eq!(r.status, 503, "while the app starts\n{}", gw.log());
        assert!(Instant::now() < deadline, "app not up:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(page.contains("Hello, IWA\\alice"), "{page}");
    assert!(page.contains("IWA\\All Staff"), "{page}");

    // The app's start line, in iwa's log: `app[PID]: app.py: EdDSA assertions for
    // audience 'flask-example', pairing token required; http://127.0.0.1:PORT/`.
    let log = gw.log();
    let (pid, port) = hosted_app(&log)
        .unwrap_or_else(|| panic!("the app's start line is not in the log:\n{log}"));
    app_pid.0 = Some(pid);

    // Straight to the app with a genuine assertion but no pairing token, or a wrong one.
    let key = iwa::assertion::read_ed25519_private_key_file(&key_path).unwrap();
    let token = Signer::with_key(key, AUDIENCE, Duration::from_secs(30))
        .sign(&alice_identity(), None, "GET", "/", SystemTime::now())
        .unwrap();
    let app = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for pairing in ["", "X-Iwa-Pairing-Token: forged\r\n"] {
        let req = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Iwa-Assertion: {token}\r\n{pairing}Connection: close\r\n\r\n"
        );
        let r = raw_http(app, req.as_bytes()).unwrap();
        assert_refused(&r, 403, "pairing");
    }
}

#[test]
fn example_config_passes_iwa_check() {
    let realm = realm();
    let dir = TempDir::new("iwa-flask-example").unwrap();
    let text = std::fs::read_to_string(example_dir().join("iwa.toml")).unwrap();
    assert!(text.contains("\"/etc/iwa/http.keytab\""), "{text}");
    let text = text.replace(
        "/etc/iwa/http.keytab",
        &realm.http_keytab().display().to_string(),
    );
    let config = dir.path().join("iwa.toml");
    std::fs::write(&config, text).unwrap();
    let (_, _, kid) = ed25519_keys(dir.path());
    let out = run_iwa(&["check", "--config", config.to_str().unwrap()]);
    assert!(
        out.contains(&format!(
            "assertion: EdDSA, kid {kid}, audience \"flask-example\", lifetime 60s"
        )),
        "{out}"
    );
    assert!(out.contains("hosted"), "{out}");
}

/// pyspnego (`tls_client.py`) as alice over HTTPS to `/api/me`, Kerberos with channel
/// bindings `cb` (`real`, `wrong`, `none`): the status, and the app's JSON on 200.
fn me_over_tls(gw: &Gateway, cc: &Ccache, cb: &str) -> (u64, serde_json::Value) {
    let port = gw.port.to_string();
    let v = run_client(
        cc,
        "tls_client.py",
        &[
            "--port",
            &port,
            "--protocol",
            "kerberos",
            "--cb",
            cb,
            "--path",
            "/api/me",
        ],
    );
    let status = v["status"].as_u64().unwrap_or(0);
    let body = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(serde_json::Value::Null);
    (status, body)
}

/// The whole picture at once: iwa hosts the Flask example over TLS, in each
/// Extended Protection mode, and the app verifies the assertion of every request that
/// gets through; killed, the app is restarted on a new port and serves again; stopping
/// iwa stops it.
#[test]
fn hosted_flask_over_tls_with_channel_binding_in_every_mode() {
    let realm = realm();
    let cc = alice(&realm);
    for (mode, wrong_ok, none_ok) in [
        ("off", true, true),
        ("allow", false, true),
        ("require", false, false),
    ] {
        let dir = TempDir::new("iwa-flask-tls").unwrap();
        let (cert, key) = self_signed_cert(dir.path());
        let tls = format!(
            "\n[tls]\ncert = {}\nkey = {}\nextended_protection = \"{mode}\"\n",
            toml_str(&cert.display().to_string()),
            toml_str(&key.display().to_string()),
        );
        let (mut cfg, _) = hosted_flask_config(&realm, dir.path(), &tls);
        cfg.tls = true;
        let mut app_pid = KillOnDrop(None);
        let mut gw = Gateway::start(&realm, &cfg);
        let deadline = Instant::now() + Duration::from_secs(20);
        let me = loop {
            let (status, me) = me_over_tls(&gw, &cc, "real");
            if status == 200 {
                break me;
            }
            assert_eq!(status, 503, "{mode}: while the app starts\n{}", gw.log());
            assert!(
                Instant::now() < deadline,
                "{mode}: app not up\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // Flask verified the assertion and reports who called.
        assert_eq!(me["user"], "IWA\\alice", "{mode}: {me}");
        let (status, _) = me_over_tls(&gw, &cc, "wrong");
        assert_eq!(
            status == 200,
            wrong_ok,
            "{mode}: bindings for another certificate: {status}"
        );
        let (status, _) = me_over_tls(&gw, &cc, "none");
        assert_eq!(status == 200, none_ok, "{mode}: no bindings: {status}");

        let (pid, port) = hosted_app(&gw.log()).expect("the app's start line");
        app_pid.0 = Some(pid);
        if mode == "require" {
            // Killed → restarted (new PID and port) → served again.
            iwa_testrealm::process::send_signal(pid, 9);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some((new_pid, new_port)) = hosted_app(&gw.log()) {
                    if new_pid != pid {
                        app_pid.0 = Some(new_pid);
                        assert_ne!(new_port, 0);
                        let (status, me) = me_over_tls(&gw, &cc, "real");
                        if status == 200 {
                            assert_eq!(me["user"], "IWA\\alice");
                            break;
                        }
                    }
                }
                assert!(Instant::now() < deadline, "not restarted\n{}", gw.log());
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = port;
        }
        // Stopping iwa stops the app: no orphan.
        let app = app_pid.0.unwrap();
        gw.terminate();
        assert!(
            iwa_testrealm::util::wait_until(Duration::from_secs(15), || {
                !iwa_testrealm::process::pid_alive(app)
            }),
            "{mode}: the app outlived iwa"
        );
    }
}
