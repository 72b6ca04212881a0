//! Proxy mechanics with authentication on: streamed request bodies (the gateway never
//! holds a whole body), hop-by-hop headers, WebSocket-style upgrades, and `iwa demo`.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use support::*;

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

#[test]
fn large_upload_is_streamed_not_buffered() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    const SIZE: usize = 96 * 1024 * 1024;
    let body = gw.dir.path().join("upload.bin");
    {
        let mut f = std::fs::File::create(&body).unwrap();
        let chunk = vec![0x5au8; 1024 * 1024];
        for _ in 0..SIZE / chunk.len() {
            f.write_all(&chunk).unwrap();
        }
    }
    let token = mint_token(&cc, "localhost");
    let r = curl(
        None,
        &realm,
        &[gw.url("/upload")],
        &[
            "-H",
            &format!("Authorization: Negotiate {token}"),
            "-H",
            "Expect:",
            "--data-binary",
            &format!("@{}", body.display()),
        ],
    )
    .pop()
    .expect("one result");
    assert_eq!(r.status, 200);
    let seen = r.echo();
    assert_eq!(seen.body_len, SIZE, "backend got the whole body");
    assert_eq!(seen.header("x-remote-user"), Some("alice@IWA.TEST"));
    // A gateway that buffered the body would have peaked above its size.
    let peak = vm_hwm_kib(gw.pid());
    assert!(
        peak < 48 * 1024,
        "gateway peak RSS {peak} KiB for a {} MiB upload",
        SIZE >> 20
    );
}

#[test]
fn hop_by_hop_and_authorization_are_not_forwarded() {
    let realm = realm();
    let echo = echo();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, echo.url()));
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let auth = format!("Negotiate {token}");
    let r = gw
        .get_raw(
            "/hop",
            &[
                ("Authorization", &auth),
                ("Connection", "close, X-Drop-Me"),
                ("X-Drop-Me", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("Forwarded", "for=6.6.6.6"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Keep-Me", "yes"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", gw.log());
    let seen = r.echo();
    for gone in [
        "x-drop-me",
        "keep-alive",
        "te",
        "proxy-authorization",
        "authorization",
        "forwarded",
    ] {
        assert_eq!(
            seen.header(gone),
            None,
            "{gone} was forwarded: {:#?}",
            seen.headers
        );
    }
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header("x-keep-me"), Some("yes"));
    assert_eq!(seen.header("x-remote-user"), Some("alice@IWA.TEST"));
}

/// A backend that switches protocols and then echoes bytes upper-cased; it reports the
/// request head it received.
fn upgrade_backend() -> (String, std::sync::mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let _ = tx.send(head);
        let mut w = stream;
        w.write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 64];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let up: Vec<u8> = buf[..n].to_ascii_uppercase();
            if w.write_all(&up).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

#[test]
fn upgrade_is_passed_through_after_authentication() {
    let realm = realm();
    let (backend, heads) = upgrade_backend();
    let gw = Gateway::start(&realm, &GatewayConfig::new(&realm, backend));
    let cc = alice(&realm);
    let token = mint_token(&cc, "localhost");
    let mut s = TcpStream::connect(gw.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /ws HTTP/1.1\r\nHost: localhost:{}\r\nAuthorization: Negotiate {token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nX-Remote-User: EVIL\\mallory\r\n\r\n",
        gw.port
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(
        status.starts_with("HTTP/1.1 101"),
        "status line: {status:?}\n{}",
        gw.log()
    );
    let mut saw_upgrade = false;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        saw_upgrade |= line.to_ascii_lowercase().starts_with("upgrade: websocket");
    }
    assert!(saw_upgrade, "101 without Upgrade header");
    let head = heads.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert!(head.contains("x-remote-user: alice@iwa.test"), "{head}");
    assert!(!head.contains("mallory"), "{head}");
    assert!(!head.contains("authorization:"), "{head}");
    s.write_all(b"hello through the tunnel").unwrap();
    let mut got = vec![0u8; 24];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"HELLO THROUGH THE TUNNEL");
}

#[test]
fn demo_once_shows_sso_working() {
    let out = std::process::Command::new(iwa_bin())
        .args(["demo", "--once"])
        .env_remove("IWA_TEST_REALM")
        .output()
        .expect("iwa demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("x-remote-user: IWA\\alice"), "{stdout}");
    assert!(stdout.contains("demo OK"), "{stdout}");
}
