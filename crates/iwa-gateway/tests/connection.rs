//! `kerberos.connection_bound`: a login lasts for its TCP connection (IIS's
//! authPersistNonNTLM, mod_auth_gssapi's GssapiConnectionBound), and only when enabled.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// Sends one keep-alive GET on `s` and returns (status, body).
fn get(s: &mut TcpStream, port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code: u16 = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).unwrap();
    (code, String::from_utf8_lossy(&body).into_owned())
}

fn connect(gw: &Gateway) -> TcpStream {
    let s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn login_persists_on_its_connection_only_when_enabled() {
    let realm = realm();
    let echo = echo();
    let cc = alice(&realm);
    let gw = Gateway::start(
        &realm,
        &GatewayConfig::new(&realm, echo.url()).kerberos_line("connection_bound = true"),
    );
    let token = mint_token(&cc, "localhost");
    let mut s = connect(&gw);
    let (code, body) = get(&mut s, gw.port, "/1", Some(&format!("Negotiate {token}")));
    assert_eq!(code, 200, "{body}");
    for i in 2..5 {
        let (code, body) = get(&mut s, gw.port, &format!("/{i}"), None);
        assert_eq!(
            code, 200,
            "request {i} on the authenticated connection: {body}"
        );
        let seen = iwa_testrealm::EchoRequest::from_json(body.as_bytes()).unwrap();
        assert_eq!(seen.header("x-remote-user"), Some("alice@IWA.TEST"));
    }
    // Another connection knows nothing of it.
    let mut other = connect(&gw);
    let (code, _) = get(&mut other, gw.port, "/x", None);
    assert_eq!(code, 401);
    // A failed new handshake on the first connection forgets the login.
    let (code, _) = get(&mut s, gw.port, "/bad", Some("Negotiate AAAA"));
    assert_eq!(code, 401);
    let (code, _) = get(&mut s, gw.port, "/after", None);
    assert_eq!(
        code, 401,
        "identity must not survive a failed re-authentication"
    );
}

#[test]
fn login_is_per_request_by_default() {
    let realm = realm();
    let echo = echo();
    let cc = alice(&realm);
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let token = mint_token(&cc, "localhost");
    let mut s = connect(&gw);
    let (code, _) = get(&mut s, gw.port, "/1", Some(&format!("Negotiate {token}")));
    assert_eq!(code, 200);
    let (code, _) = get(&mut s, gw.port, "/2", None);
    assert_eq!(code, 401);
}
