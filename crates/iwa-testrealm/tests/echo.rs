//! The echo backend reports what it received, keeps connections alive, and stops on drop.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use iwa_testrealm::{EchoBackend, EchoRequest};

/// Send one request on `s` and read one response (Content-Length framed).
fn roundtrip(s: &mut TcpStream, req: &str) -> (u16, EchoRequest) {
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "connection closed early: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("content-length");
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).expect("read body");
                assert!(n > 0);
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head[9..12].parse().expect("status");
            let body = EchoRequest::from_json(&buf[end + 4..end + 4 + len]).expect("json");
            return (status, body);
        }
    }
}

#[test]
fn echoes_headers_in_order_with_duplicates_on_one_connection() {
    let echo = EchoBackend::start_blocking().expect("echo");
    let mut s = TcpStream::connect(echo.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (status, seen) = roundtrip(
        &mut s,
        "GET /a/b?x=1 HTTP/1.1\r\nHost: h\r\nX-Dup: 1\r\nx_under: u\r\nX-DUP: 2\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.path, "/a/b");
    assert_eq!(seen.query.as_deref(), Some("x=1"));
    assert_eq!(seen.header_all("x-dup"), vec!["1", "2"]);
    assert_eq!(seen.header("X_UNDER"), Some("u"));
    let names: Vec<&str> = seen.headers.iter().map(|(n, _)| n.as_str()).collect();
    // hyper's HeaderMap keeps first-appearance order and groups duplicates together.
    assert_eq!(names, vec!["host", "x-dup", "x-dup", "x_under"]);

    let (status, second) = roundtrip(
        &mut s,
        "POST /status/418 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(status, 418);
    assert_eq!(second.body_len, 3);
    assert_eq!(second.conn, seen.conn, "keep-alive: same connection");
    assert_eq!(echo.connections(), 1);
    assert_eq!(echo.requests().len(), 2);
}

#[tokio::test]
async fn slow_endpoint_waits_and_async_start_works() {
    let echo = EchoBackend::start().await.expect("echo");
    let addr = echo.addr();
    let took = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        let t = Instant::now();
        let (status, seen) = roundtrip(&mut s, "GET /slow?ms=300 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(status, 200);
        assert_eq!(seen.path, "/slow");
        t.elapsed()
    })
    .await
    .expect("join");
    assert!(took >= Duration::from_millis(300), "{took:?}");
}

#[test]
fn stops_on_drop() {
    let echo = EchoBackend::start_blocking().expect("echo");
    let addr = echo.addr();
    assert!(TcpStream::connect(addr).is_ok());
    drop(echo);
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after drop"
    );
}
