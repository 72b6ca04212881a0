//! Runs the generator briefly in `none` mode against a tiny in-process HTTP server.

use std::time::Duration;

use iwa_loadgen::{Mode, RunConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A keep-alive HTTP/1.1 server answering every request with a fixed body.
async fn serve(listener: TcpListener) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            loop {
                // Answer each complete request head (GETs carry no body).
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";
                    if sock.write_all(resp).await.is_err() {
                        return;
                    }
                }
                match sock.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn none_mode_counts_requests_without_errors() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(serve(listener));

    let mut cfg = RunConfig::new(format!("http://{addr}/"), Mode::None);
    cfg.connections = 4;
    cfg.warmup = Duration::from_millis(100);
    cfg.duration = Some(Duration::from_secs(1));
    let report = iwa_loadgen::run(cfg).await.unwrap();

    server.abort();
    assert!(report.ok > 0, "no requests counted: {}", report.human());
    assert_eq!(report.errors, 0, "errors: {}", report.human());
    assert!(report.rps > 0.0);
    assert!(report.latency_us.p50 > 0.0 && report.latency_us.p50 <= report.latency_us.max);
    assert_eq!(report.connects, 4, "keep-alive connections were reopened");
}
