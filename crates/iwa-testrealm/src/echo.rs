//! An HTTP/1.1 echo backend: answers every request with JSON describing what it received,
//! so tests can see exactly which headers a proxy forwarded.
//!
//! * any path: `200` with [`EchoRequest`] as JSON (one line, `\n`-terminated);
//! * `/status/<code>`: the same JSON with status `<code>`;
//! * `/slow?ms=N`: the same JSON after sleeping `N` ms (at most 60 s).
//!
//! Keep-alive is supported. [`EchoBackend`] runs the server on its own thread and tokio
//! runtime, so it works the same from sync tests and from async code (a test that
//! blocks on `curl` cannot starve it).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};

use crate::error::{RealmError, Result};

/// What the echo backend saw; also the JSON body it answers with.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EchoRequest {
    /// Request method.
    pub method: String,
    /// Request path (without query).
    pub path: String,
    /// Query string without `?`, if any.
    pub query: Option<String>,
    /// All headers, names lowercased, duplicates kept, values as (lossy UTF-8) strings,
    /// in order of first appearance (hyper's `HeaderMap` groups repeated names together).
    pub headers: Vec<(String, String)>,
    /// Number of the TCP connection this request came on (1, 2, ... per backend).
    pub conn: u64,
    /// Length of the request body.
    pub body_len: usize,
}

impl EchoRequest {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All values of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Parse an echo response body.
    pub fn from_json(body: &[u8]) -> Result<EchoRequest, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[derive(Default)]
struct Shared {
    log: Mutex<Vec<EchoRequest>>,
    conns: AtomicU64,
}

/// A running echo backend on `127.0.0.1:<free port>`; stops when dropped.
pub struct EchoBackend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for EchoBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoBackend")
            .field("addr", &self.addr)
            .finish()
    }
}

impl EchoBackend {
    /// Start on `127.0.0.1:0` (async flavour; the server still runs on its own thread).
    pub async fn start() -> Result<EchoBackend> {
        EchoBackend::start_blocking()
    }

    /// Start on `127.0.0.1:0` from sync code.
    pub fn start_blocking() -> Result<EchoBackend> {
        EchoBackend::bind_blocking(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Start on a given address.
    pub fn bind_blocking(addr: SocketAddr) -> Result<EchoBackend> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| RealmError::io(format!("bind {addr}"), e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| RealmError::io("set_nonblocking", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| RealmError::io("local_addr", e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RealmError::io("tokio runtime", e))?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("echo-{}", addr.port()))
            .spawn(move || {
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => {
                            serve_shared(l, sh, async move {
                                let _ = rx.await;
                            })
                            .await
                        }
                        Err(e) => eprintln!("echo backend: {e}"),
                    }
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| RealmError::io("spawn echo thread", e))?;
        Ok(EchoBackend {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<EchoRequest> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Number of TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.conns.load(Ordering::Relaxed)
    }
}

impl Drop for EchoBackend {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serve the echo protocol on `listener` until `shutdown` completes (for the
/// `iwa-realm echo` subcommand and for embedding in other runtimes).
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    serve_shared(listener, Arc::new(Shared::default()), shutdown).await;
}

async fn serve_shared(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((s, _)) => s,
                Err(_) => {
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let conn = shared.conns.fetch_add(1, Ordering::Relaxed) + 1;
        let sh = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, conn, sh.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn handle(
    req: Request<Incoming>,
    conn: u64,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body_len = match body.collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = parts.uri.path().to_owned();
    let seen = EchoRequest {
        method: parts.method.as_str().to_owned(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers,
        conn,
        body_len,
    };
    if let Ok(mut log) = shared.log.lock() {
        log.push(seen.clone());
    }

    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = match code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
        {
            Some(s) if s.as_u16() >= 200 => s,
            _ => StatusCode::BAD_REQUEST,
        };
    } else if path == "/slow" {
        let ms = seen
            .query
            .as_deref()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("ms="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            .min(60_000);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    let mut json = serde_json::to_vec(&seen).unwrap_or_default();
    json.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(json)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(resp)
}
