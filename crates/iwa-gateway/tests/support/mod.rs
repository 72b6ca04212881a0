//! Harness for the gateway integration tests: one shared MIT realm (attached through
//! `IWA_TEST_REALM` when `scripts/test` started one, else created per test process),
//! a gateway process per test on a free port with its own temp dir, an echo backend,
//! and clients (curl, the python scripts in `tests/clients/`, and a raw HTTP/1.1 client
//! for requests no well-behaved client would send).
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use iwa_testrealm::{
    Ccache, ChildGuard, EchoBackend, EchoRequest, MitRealm, TempDir, ALICE, ALICE_PASSWORD, BOB,
    BOB_PASSWORD,
};

/// How long a gateway may take to answer `/.iwa/healthz` after spawn.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any single client call may take.
const CLIENT_TIMEOUT_SECS: u64 = 30;

/// The standard realm (alice, bob, HTTP/localhost, HTTP/other.test + keytabs).
pub fn realm() -> MitRealm {
    MitRealm::standard().unwrap_or_else(|e| panic!("test realm: {e}"))
}

/// A TGT for alice.
pub fn alice(realm: &MitRealm) -> Ccache {
    realm
        .kinit(ALICE, ALICE_PASSWORD)
        .unwrap_or_else(|e| panic!("kinit alice: {e}"))
}

/// A TGT for bob.
pub fn bob(realm: &MitRealm) -> Ccache {
    realm
        .kinit(BOB, BOB_PASSWORD)
        .unwrap_or_else(|e| panic!("kinit bob: {e}"))
}

/// The echo backend.
pub fn echo() -> EchoBackend {
    EchoBackend::start_blocking().unwrap_or_else(|e| panic!("echo backend: {e}"))
}

/// A `http://127.0.0.1:PORT` URL where nothing listens (port was free a moment ago).
pub fn dead_backend_url() -> String {
    let port = iwa_testrealm::free_tcp_port().expect("free port");
    format!("http://127.0.0.1:{port}")
}

/// What to put in a gateway's config.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    pub backend_url: String,
    pub keytab: PathBuf,
    /// Extra lines appended inside `[kerberos]`, e.g. `realm_domains = { "IWA.TEST" = "IWA" }`.
    pub kerberos_extra: String,
    /// Extra environment variables for the gateway process.
    pub env: Vec<(String, String)>,
    /// The listener speaks HTTPS (`[tls]` in the extra lines): readiness is checked
    /// with `curl -k https://…`.
    pub tls: bool,
    /// The body of `[backend]` instead of `url = <backend_url>` (e.g. a hosted app's
    /// `command = [...]`).
    pub backend_table: Option<String>,
}

impl GatewayConfig {
    /// Backend `backend_url`, keytab with only HTTP/localhost.
    pub fn new(realm: &MitRealm, backend_url: impl Into<String>) -> Self {
        GatewayConfig {
            backend_url: backend_url.into(),
            keytab: realm.http_keytab(),
            kerberos_extra: String::new(),
            env: Vec::new(),
            tls: false,
            backend_table: None,
        }
    }

    /// `[backend]` holds exactly these lines (replacing `url = …`).
    pub fn backend_table(mut self, lines: &str) -> Self {
        self.backend_table = Some(lines.to_owned());
        self
    }

    /// Sets an environment variable for the gateway process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn keytab(mut self, keytab: PathBuf) -> Self {
        self.keytab = keytab;
        self
    }

    pub fn kerberos_line(mut self, line: &str) -> Self {
        self.kerberos_extra.push_str(line);
        self.kerberos_extra.push('\n');
        self
    }

    /// The TOML text for a gateway listening on `port`.
    pub fn render(&self, port: u16) -> String {
        let backend = match &self.backend_table {
            Some(lines) => lines.clone(),
            None => format!("url = {}", toml_str(&self.backend_url)),
        };
        format!(
            "listen = \"127.0.0.1:{port}\"\n\n[backend]\n{}\n\n[kerberos]\nkeytab = {}\n{}",
            backend,
            toml_str(&self.keytab.display().to_string()),
            self.kerberos_extra
        )
    }
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The `iwa` binary under test.
pub fn iwa_bin() -> &'static str {
    env!("CARGO_BIN_EXE_iwa")
}

/// A running `iwa serve` process; SIGTERM (then SIGKILL) on drop. Its stderr goes to
/// `<dir>/gateway.log`, printed when a test panics.
pub struct Gateway {
    pub port: u16,
    pub dir: TempDir,
    child: ChildGuard,
    log: PathBuf,
    config_path: PathBuf,
}

impl Gateway {
    /// Start `iwa serve` with `cfg` and wait until `/.iwa/healthz` answers 200.
    /// Retries on a new port if the chosen one was taken meanwhile.
    pub fn start(realm: &MitRealm, cfg: &GatewayConfig) -> Gateway {
        let dir = TempDir::new("iwa-gw-test").expect("temp dir");
        let rcache = dir.path().join("rcache");
        std::fs::create_dir_all(&rcache).expect("rcache dir");
        let config_path = dir.path().join("iwa.toml");
        let mut last_log = String::new();
        for attempt in 1..=3 {
            let port = iwa_testrealm::free_tcp_port().expect("free port");
            std::fs::write(&config_path, cfg.render(port)).expect("write config");
            let log = dir.path().join(format!("gateway-{attempt}.log"));
            let stderr = std::fs::File::create(&log).expect("log file");
            let child = Command::new(iwa_bin())
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .envs(realm.env())
                .envs(cfg.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("KRB5RCACHEDIR", &rcache)
                .env_remove("KRB5CCNAME")
                .env_remove("KRB5_KTNAME")
                .env_remove("KRB5_CLIENT_KTNAME")
                .env("RUST_BACKTRACE", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", iwa_bin()));
            let mut child = ChildGuard::new(child);
            match wait_ready(&mut child, port, cfg.tls) {
                Ok(()) => {
                    return Gateway {
                        port,
                        dir,
                        child,
                        log,
                        config_path,
                    }
                }
                Err(why) => {
                    child.stop();
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    let lower = last_log.to_ascii_lowercase();
                    let in_use =
                        lower.contains("address already in use") || lower.contains("addrinuse");
                    if !in_use {
                        panic!(
                            "gateway not ready: {why}\nconfig:\n{}\n--- gateway log ---\n{last_log}",
                            cfg.render(port)
                        );
                    }
                }
            }
        }
        panic!("gateway could not bind a free port in 3 attempts\n--- log ---\n{last_log}");
    }

    /// `http://localhost:PORT<path>` (the SPN for this URL is HTTP/localhost).
    pub fn url(&self, path: &str) -> String {
        format!("http://localhost:{}{path}", self.port)
    }

    /// `https://localhost:PORT<path>` (a `[tls]` gateway).
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().is_none()
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        self.child.stop()
    }

    /// A raw request with `Connection: close`; `headers` are sent verbatim.
    pub fn get_raw(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<HttpResponse> {
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n",
            self.port
        );
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        raw_http(self.addr(), req.as_bytes())
    }

    /// Like [`Gateway::get_raw`] with `Authorization: Negotiate <token_b64>`.
    pub fn get_with_token(&self, path: &str, token_b64: &str) -> HttpResponse {
        let auth = format!("Negotiate {token_b64}");
        self.get_raw(path, &[("Authorization", &auth)])
            .unwrap_or_else(|e| panic!("request with token failed: {e}\n{}", self.log()))
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- gateway log ({}) ---\n{}\n--- end gateway log ---",
                self.log.display(),
                self.log()
            );
        }
        self.child.stop();
    }
}

/// 200 from `/.iwa/healthz` over HTTPS (certificate not verified).
fn tls_healthz_ok(port: u16) -> bool {
    Command::new("curl")
        .args([
            "-sk",
            "--noproxy",
            "*",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("https://localhost:{port}/.iwa/healthz"))
        .output()
        .is_ok_and(|o| o.stdout == b"200")
}

fn wait_ready(child: &mut ChildGuard, port: u16, tls: bool) -> Result<(), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let req = format!(
        "GET /.iwa/healthz HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    );
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait() {
            return Err(format!("iwa serve exited early with {status}"));
        }
        if tls {
            if tls_healthz_ok(port) {
                return Ok(());
            }
        } else if let Ok(r) = raw_http(addr, req.as_bytes()) {
            if r.status == 200 {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("/.iwa/healthz not 200 within {READY_TIMEOUT:?}"))
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as an echo-backend report (panics with the body if it is not one).
    pub fn echo(&self) -> EchoRequest {
        EchoRequest::from_json(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an echo body ({e}); status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send `request` bytes, read until EOF (callers send `Connection: close`), parse.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> std::io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(CLIENT_TIMEOUT_SECS)))?;
    s.set_write_timeout(Some(Duration::from_secs(CLIENT_TIMEOUT_SECS)))?;
    // A server may answer (e.g. 431) and close before reading everything we send.
    let write_err = s.write_all(request).err();
    let mut buf = Vec::new();
    let read = s.read_to_end(&mut buf);
    if buf.is_empty() {
        if let Some(e) = write_err {
            return Err(e);
        }
        read?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    parse_response(&buf)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable response"))
}

/// Parse one HTTP/1.1 response (Content-Length, chunked, or read-to-EOF body).
pub fn parse_response(buf: &[u8]) -> Option<HttpResponse> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(buf.get(..end)?).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect();
    let rest = buf.get(end + 4..)?;
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(data.get(..line_end)?).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = data.get(line_end + 2..)?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// Result of one curl transfer.
#[derive(Debug)]
pub struct CurlResult {
    pub status: u16,
    /// Headers of the last response only.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub num_connects: u32,
}

impl CurlResult {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn echo(&self) -> EchoRequest {
        EchoRequest::from_json(&self.body).unwrap_or_else(|e| {
            panic!(
                "not an echo body ({e}); status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// `curl --negotiate -u :` (when `cc` is given) for each URL in ONE curl invocation
/// (so curl reuses one connection where it can). `extra` args go before the URLs.
pub fn curl(
    cc: Option<&Ccache>,
    realm: &MitRealm,
    urls: &[String],
    extra: &[&str],
) -> Vec<CurlResult> {
    let dir = TempDir::new("iwa-curl").expect("tmp");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--noproxy", "*", "--max-time"])
        .arg(CLIENT_TIMEOUT_SECS.to_string())
        .envs(realm.env());
    match cc {
        Some(cc) => {
            cc.apply(&mut cmd);
            cmd.args(["--negotiate", "-u", ":"]);
        }
        None => {
            cmd.env("KRB5CCNAME", format!("FILE:{}/none", dir.path().display()));
        }
    }
    cmd.args(extra);
    for (i, url) in urls.iter().enumerate() {
        cmd.arg("-D")
            .arg(dir.path().join(format!("h{i}")))
            .arg("-o")
            .arg(dir.path().join(format!("b{i}")))
            .arg("-w")
            .arg("%{http_code} %{num_connects}\\n")
            .arg(url);
    }
    let out = cmd
        .output()
        .expect("run curl (install curl: scripts/deps.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), urls.len(), "curl -w output: {stdout}");
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut it = line.split_whitespace();
            let status = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let num_connects = it.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let raw_headers =
                std::fs::read_to_string(dir.path().join(format!("h{i}"))).unwrap_or_default();
            // -D holds every response of the transfer (401 then 200): keep the last block.
            let headers = last_header_block(&raw_headers);
            let body = std::fs::read(dir.path().join(format!("b{i}"))).unwrap_or_default();
            CurlResult {
                status,
                headers,
                body,
                num_connects,
            }
        })
        .collect()
}

/// One authenticated curl GET.
pub fn curl_get(cc: &Ccache, realm: &MitRealm, url: &str, extra: &[&str]) -> CurlResult {
    curl(Some(cc), realm, &[url.to_owned()], extra)
        .pop()
        .expect("one result")
}

/// The interpreter for the python clients (`IWA_TEST_PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("IWA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Run `tests/clients/<script>` with `args` as `cc`'s principal; parse its JSON stdout.
pub fn run_client(cc: &Ccache, script: &str, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&path)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY");
    cc.apply(&mut cmd);
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("run {} {}: {e}", python(), path.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} {args:?}: no JSON on stdout ({e}); exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        )
    })
}

/// A fresh initial Negotiate token (base64) for HTTP@host minted by python-gssapi.
pub fn mint_token(cc: &Ccache, host: &str) -> String {
    let v = run_client(cc, "mint_token.py", &["--host", host]);
    v["token"]
        .as_str()
        .unwrap_or_else(|| panic!("mint_token.py: {v}"))
        .to_owned()
}

/// Assert the echo report shows an authenticated request from `user`/`principal`
/// forwarded by the gateway with the Host `host`.
pub fn assert_identity(seen: &EchoRequest, user: &str, principal: &str, host: &str) {
    let ctx = || format!("backend saw: {:#?}", seen.headers);
    assert_eq!(seen.header_all("x-remote-user"), vec![user], "{}", ctx());
    assert_eq!(
        seen.header_all("x-remote-user-principal"),
        vec![principal],
        "{}",
        ctx()
    );
    assert_eq!(
        seen.header_all("x-remote-auth-method"),
        vec!["Kerberos"],
        "{}",
        ctx()
    );
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "{}",
        ctx()
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"), "{}", ctx());
    assert_eq!(seen.header("x-forwarded-host"), Some(host), "{}", ctx());
    assert_eq!(seen.header("authorization"), None, "{}", ctx());
}

/// True for `Negotiate <non-empty base64>` (a mutual-authentication token).
pub fn is_negotiate_with_token(v: Option<&str>) -> bool {
    use base64::Engine as _;
    let Some(v) = v else { return false };
    let Some(tok) = v.strip_prefix("Negotiate ") else {
        return false;
    };
    let tok = tok.trim();
    !tok.is_empty()
        && base64::engine::general_purpose::STANDARD
            .decode(tok)
            .is_ok_and(|b| !b.is_empty())
}

/// True for a bare `Negotiate` challenge among the WWW-Authenticate values.
pub fn has_negotiate_challenge(values: &[&str]) -> bool {
    values.iter().any(|v| {
        v.split(',')
            .any(|c| c.trim().eq_ignore_ascii_case("negotiate"))
    })
}

/// Runs `tests/clients/ntlm_client.py` (pyspnego NTLM, raw or wrapped) against `gw`;
/// parses its JSON report.
pub fn ntlm_pyspnego(gw: &Gateway, args: &[&str]) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ntlm_client.py");
    let port = gw.port.to_string();
    let out = Command::new(python())
        .arg(&path)
        .args(["--port", &port])
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "ntlm_client.py {args:?}: {e}\nstdout: {stdout}\nstderr: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        )
    })
}

/// `curl --negotiate` as an AD user (kinit against the Samba DC); returns (status, body).
pub fn curl_negotiate_ad(
    dc: &iwa_testrealm::samba::SambaDc,
    user: &str,
    password: &str,
    url: &str,
) -> (u16, Vec<u8>) {
    let r = curl_ad(dc, user, password, url, &[]);
    (r.status, r.body)
}

/// `curl --negotiate` as an AD user (kinit against the Samba DC) with `extra` arguments
/// before the URL (a cookie jar, a method, a body).
pub fn curl_ad(
    dc: &iwa_testrealm::samba::SambaDc,
    user: &str,
    password: &str,
    url: &str,
    extra: &[&str],
) -> CurlResult {
    let cc = dc.kinit(user, password).expect("kinit against the DC");
    let dir = TempDir::new("iwa-curl-ad").expect("tmp");
    let headers = dir.path().join("h");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "--negotiate",
            "-u",
            ":",
        ])
        .arg("-D")
        .arg(&headers)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(extra)
        .arg(url)
        .env("KRB5_CONFIG", dc.krb5_conf())
        .env("KRB5CCNAME", cc.name())
        .output()
        .expect("curl");
    let text = out.stdout;
    let split = text.iter().rposition(|&b| b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&text[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    let raw = std::fs::read_to_string(&headers).unwrap_or_default();
    CurlResult {
        status,
        headers: last_header_block(&raw),
        body: text[..split].to_vec(),
        num_connects: 0,
    }
}

/// The headers of the last response in a `curl -D` dump (a 401 then a 200 is two
/// blocks), names lowercased.
fn last_header_block(raw: &str) -> Vec<(String, String)> {
    raw.split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        })
        .collect()
}

/// curl arguments for a state-changing request to the gateway's API the way a
/// same-origin `fetch` sends it: method, JSON content type, `Origin`, and the body.
pub fn json_request_args(method: &str, origin: &str, body: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "-X".to_owned(),
        method.to_owned(),
        "-H".to_owned(),
        "Content-Type: application/json".to_owned(),
        "-H".to_owned(),
        format!("Origin: {origin}"),
    ];
    if let Some(body) = body {
        args.push("--data-binary".to_owned());
        args.push(body.to_owned());
    }
    args
}

/// An NTLM users file for IWA\\alice and IWA\\bob with `password`, made with `iwa hash`.
pub fn ntlm_users_file(dir: &Path, password: &str) -> std::path::PathBuf {
    let users = dir.join("ntlm-users");
    let mut lines = String::new();
    for account in ["IWA\\alice", "IWA\\bob"] {
        let out = Command::new(iwa_bin())
            .args(["hash", "--user", account])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{password}\n").as_bytes())?;
                c.wait_with_output()
            })
            .expect("iwa hash");
        assert!(out.status.success());
        lines.push_str(&String::from_utf8(out.stdout).unwrap());
    }
    std::fs::write(&users, lines).unwrap();
    users
}

/// A fresh ticket key (`iwa keygen`) in `dir`.
pub fn keygen(dir: &Path) -> PathBuf {
    let key = dir.join("ticket.key");
    let out = Command::new(iwa_bin())
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .expect("iwa keygen");
    assert!(out.status.success(), "iwa keygen: {out:?}");
    key
}

/// `[ldap]` for the Samba DC with the admin's simple bind over loopback; the password
/// file (mode 0600) goes into `dir`.
pub fn ad_ldap_section(dc: &iwa_testrealm::samba::SambaDc, dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let pw = dir.join("ldap.password");
    std::fs::write(
        &pw,
        format!("{}\n", iwa_testrealm::samba::AD_ADMIN_PASSWORD),
    )
    .expect("write password file");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!(
        "\n[ldap]\nurl = {}\nbase_dn = {}\nbind_dn = {}\nbind_password_file = {}\ndomain = \"EXAMPLE\"\ntimeout = \"3s\"\n",
        toml_str(&dc.ldap_url()),
        toml_str(iwa_testrealm::samba::AD_BASE_DN),
        toml_str(&dc.admin_bind_dn()),
        toml_str(&pw.display().to_string()),
    )
}

/// A gateway in front of `backend` for the Samba DC's realm (its HTTP/localhost keytab
/// and krb5.conf) with impersonation: members of Helpdesk Staff may impersonate,
/// targets come from LDAP, audit events go to `dir/audit.jsonl`. `extra` is appended.
pub fn ad_impersonation_gateway(
    realm: &MitRealm,
    dc: &iwa_testrealm::samba::SambaDc,
    backend: &str,
    dir: &Path,
    extra: &str,
) -> Gateway {
    let key = keygen(dir);
    let mut cfg = GatewayConfig::new(realm, backend)
        .keytab(dc.http_keytab())
        .kerberos_line(&format!(
            "\n[impersonation]\nallow_impersonation = [\"EXAMPLE\\\\Helpdesk Staff\"]\nkey_file = {}\n\n\
             [log]\naudit_file = {}\n{}\n{extra}",
            toml_str(&key.display().to_string()),
            toml_str(&dir.join("audit.jsonl").display().to_string()),
            ad_ldap_section(dc, dir),
        ));
    cfg.env
        .push(("KRB5_CONFIG".into(), dc.krb5_conf().display().to_string()));
    Gateway::start(realm, &cfg)
}

/// A self-signed certificate for `localhost` and its key (mode 0600) at these paths.
pub fn write_self_signed(cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes"])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .args(["-days", "1", "-keyout"])
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// [`write_self_signed`] as `dir/tls.pem` and `dir/tls.key`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("tls.pem"), dir.join("tls.key"));
    write_self_signed(&cert, &key);
    (cert, key)
}
