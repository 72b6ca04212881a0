//! The HTTP/1.1 client that carries requests to the backend: hyper's connection-level
//! client (`hyper::client::conn::http1`) over plain TCP with `TCP_NODELAY`, and a small
//! pool of idle keep-alive connections of our own.
//!
//! Why not hyper-util's pooled `Client`: per request it hashes the pool key twice
//! (SipHash over scheme and authority), allocates a checkout, and spawns a task that
//! waits for the connection to become idle again before putting it back. Here a
//! connection goes back to the pool when the response body that came over it ends (the
//! body's `Drop`), under one short uncontended lock, when hyper has it ready for the
//! next request (nearly always by then; otherwise a task waits for that first, as
//! hyper-util does every time).
//!
//! A pooled connection the backend closed while idle is noticed by its connection task
//! (hyper reads the EOF) and skipped. One that fails before any byte of the request was
//! written — hyper hands the request back in that case — is retried once on a new
//! connection; a request that may have reached the backend is never sent again.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::Authority;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

/// How long a connection may sit unused in the pool before it is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept at most; more are closed when they come back.
const MAX_IDLE: usize = 1024;
/// How often idle connections past [`IDLE_TIMEOUT`] are closed.
const REAP_EVERY: Duration = Duration::from_secs(15);

/// Why a request did not get a response from the backend.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendError {
    /// No connection: refused, unreachable, the name did not resolve, or the connect
    /// timeout passed.
    Connect {
        authority: Authority,
        source: std::io::Error,
    },
    /// The connection failed while the request was sent or the response read.
    Request {
        authority: Authority,
        source: hyper::Error,
    },
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Connect { authority, source } => {
                write!(f, "cannot connect to {authority}: {source}")
            }
            BackendError::Request { authority, source } => {
                write!(f, "request to {authority} failed: {source}")
            }
        }
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BackendError::Connect { source, .. } => Some(source),
            BackendError::Request { source, .. } => Some(source),
        }
    }
}

impl BackendError {
    /// Whether no connection could be made at all (as opposed to one failing mid-way).
    pub fn is_connect(&self) -> bool {
        matches!(self, BackendError::Connect { .. })
    }
}

/// An idle keep-alive connection: its request half (the connection itself runs in its
/// own task) and where it goes.
struct Idle<B> {
    authority: Authority,
    sender: http1::SendRequest<B>,
    since: Instant,
}

struct Shared<B> {
    /// Most recently returned at the back (taken first: its buffers are warm).
    idle: Mutex<VecDeque<Idle<B>>>,
    builder: http1::Builder,
    connect_timeout: Duration,
    reaper: std::sync::Once,
}

/// The backend client: connects, pools and sends requests with bodies of type `B` (the
/// gateway forwards the client's streamed `Incoming`). One per gateway.
pub struct BackendClient<B = Incoming> {
    shared: Arc<Shared<B>>,
}

impl<B> BackendClient<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    pub fn new(connect_timeout: Duration) -> Self {
        BackendClient {
            shared: Arc::new(Shared {
                idle: Mutex::new(VecDeque::new()),
                builder: http1::Builder::new(),
                connect_timeout,
                reaper: std::sync::Once::new(),
            }),
        }
    }

    /// Sends `req` (origin-form URI, `Host` set) to `authority` over a pooled or new
    /// connection. The response body returns the connection to the pool when it ends.
    pub async fn send(
        &self,
        authority: &Authority,
        req: Request<B>,
    ) -> Result<Response<BackendBody<B>>, BackendError> {
        let mut sender = loop {
            match self.shared.take(authority) {
                Some(mut s) => {
                    if s.ready().await.is_ok() {
                        break s;
                    }
                    // Closed while idle, before anything was sent on it: next one.
                }
                // Boxed: the connecting future is large and rarely needed, and would
                // otherwise make every request's future larger.
                None => return Box::pin(self.send_new(authority, req)).await,
            }
        };
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.leased(authority, sender, resp)),
            Err(mut e) => match e.take_message() {
                // Not a byte of it was written, on a connection that had served
                // requests before (the backend closed it in the meantime): send it
                // again, on a new connection, whose failure is then the answer.
                Some(req) => {
                    debug!(
                        "pooled backend connection failed before the request was sent, \
                         retrying on a new one: {}",
                        e.error()
                    );
                    Box::pin(self.send_new(authority, req)).await
                }
                None => Err(BackendError::Request {
                    authority: authority.clone(),
                    source: e.into_error(),
                }),
            },
        }
    }

    /// Sends `req` over a new connection.
    async fn send_new(
        &self,
        authority: &Authority,
        req: Request<B>,
    ) -> Result<Response<BackendBody<B>>, BackendError> {
        let sender = self.connect(authority).await?;
        self.send_on(authority, sender, req).await
    }

    async fn send_on(
        &self,
        authority: &Authority,
        mut sender: http1::SendRequest<B>,
        req: Request<B>,
    ) -> Result<Response<BackendBody<B>>, BackendError> {
        match sender.send_request(req).await {
            Ok(resp) => Ok(self.leased(authority, sender, resp)),
            Err(source) => Err(BackendError::Request {
                authority: authority.clone(),
                source,
            }),
        }
    }

    fn leased(
        &self,
        authority: &Authority,
        sender: http1::SendRequest<B>,
        resp: Response<Incoming>,
    ) -> Response<BackendBody<B>> {
        let lease = Lease {
            authority: authority.clone(),
            sender,
            pool: Arc::downgrade(&self.shared),
        };
        resp.map(|inner| BackendBody {
            inner,
            lease: Some(lease),
            done: false,
        })
    }

    /// A new connection to `authority`: resolved (unless it is an IP address), each
    /// address tried in turn with an even share of the connect timeout (as hyper-util's
    /// connector does), `TCP_NODELAY` on, and its connection task spawned.
    async fn connect(&self, authority: &Authority) -> Result<http1::SendRequest<B>, BackendError> {
        let failed = |source| BackendError::Connect {
            authority: authority.clone(),
            source,
        };
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        let literal = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let addrs: Vec<SocketAddr> = match literal.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(failed)?
                .collect(),
        };
        let share = u32::try_from(addrs.len().max(1)).unwrap_or(u32::MAX);
        let per_address = self.shared.connect_timeout / share;
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the backend name resolved to no address",
        );
        for addr in addrs {
            let stream = match tokio::time::timeout(per_address, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    );
                    continue;
                }
            };
            stream.set_nodelay(true).map_err(failed)?;
            let (sender, conn) = self
                .shared
                .builder
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|source| BackendError::Request {
                    authority: authority.clone(),
                    source,
                })?;
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    debug!("backend connection ended: {e}");
                }
            });
            return Ok(sender);
        }
        Err(failed(last))
    }

    /// How many idle connections the pool holds.
    pub fn idle_connections(&self) -> usize {
        self.shared.lock().len()
    }
}

impl<B: Send + 'static> Shared<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Idle<B>>> {
        // The pool holds no invariant a panic could break halfway.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently returned live connection to `authority`. Closed, expired and
    /// other-address connections met on the way are dropped (a hosted app that moved to
    /// a new port leaves only dead connections to its old one).
    fn take(&self, authority: &Authority) -> Option<http1::SendRequest<B>> {
        let mut idle = self.lock();
        while let Some(c) = idle.pop_back() {
            if c.authority == *authority
                && !c.sender.is_closed()
                && c.since.elapsed() < IDLE_TIMEOUT
            {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, authority: Authority, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        self.reaper.call_once(|| spawn_reaper(Arc::downgrade(self)));
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back(Idle {
            authority,
            sender,
            since: Instant::now(),
        });
    }

    fn reap(&self) {
        let mut idle = self.lock();
        idle.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
    }
}

/// Closes idle connections past their time, for as long as the pool exists.
fn spawn_reaper<B: Send + 'static>(pool: Weak<Shared<B>>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    rt.spawn(async move {
        let mut every = tokio::time::interval(REAP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match pool.upgrade() {
                Some(p) => p.reap(),
                None => return,
            }
        }
    });
}

/// A connection lent to one request; back to the pool when its response body ended.
struct Lease<B> {
    authority: Authority,
    sender: http1::SendRequest<B>,
    pool: Weak<Shared<B>>,
}

/// A backend response body, streamed as it arrives. Once it has been read to its end
/// its connection goes back to the pool; dropped earlier, the connection is closed.
pub struct BackendBody<B: Send + 'static = Incoming> {
    inner: Incoming,
    lease: Option<Lease<B>>,
    done: bool,
}

impl<B: Send + 'static> std::fmt::Debug for BackendBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendBody")
            .field("inner", &self.inner)
            .field("pooled", &self.lease.is_some())
            .finish()
    }
}

impl<B: Send + 'static> BackendBody<B> {
    /// Keeps the connection out of the pool (it was upgraded, or is otherwise spent).
    pub fn forget_connection(&mut self) {
        self.lease = None;
    }
}

impl<B: Send + 'static> Body for BackendBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        match &frame {
            Poll::Ready(None) => this.done = true,
            Poll::Ready(Some(Err(_))) => this.lease = None,
            _ => {}
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: Send + 'static> Drop for BackendBody<B> {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if !(self.done || self.inner.is_end_stream()) {
            // Not read to the end: the connection is mid-response and cannot be reused.
            return;
        }
        let Some(pool) = lease.pool.upgrade() else {
            return;
        };
        let Lease {
            authority,
            mut sender,
            ..
        } = lease;
        if sender.is_ready() {
            pool.put(authority, sender);
        } else if !sender.is_closed() {
            // The response is complete but the connection is not free yet (its task
            // has not caught up, or it is still sending a request body the backend
            // answered early): pooled once it is, so no request ever waits behind
            // another one on it.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if sender.ready().await.is_ok() {
                        pool.put(authority, sender);
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use std::io::{Read, Write};

    type Client = BackendClient<Empty<Bytes>>;

    /// A raw HTTP/1.1 backend on loopback that answers every request with `hello`, and
    /// closes each connection `close_after` after its first response. Sends a message
    /// per accepted connection.
    fn backend(close_after: Option<Duration>) -> (Authority, std::sync::mpsc::Receiver<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (accepted, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = accepted.send(());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    loop {
                        let mut got = Vec::new();
                        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                            }
                        }
                        let _ =
                            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
                        if let Some(after) = close_after {
                            std::thread::sleep(after);
                            return;
                        }
                    }
                });
            }
        });
        (addr.to_string().parse().unwrap(), rx)
    }

    fn request(to: &Authority) -> Request<Empty<Bytes>> {
        Request::builder()
            .uri("/")
            .header(http::header::HOST, to.as_str())
            .body(Empty::new())
            .unwrap()
    }

    async fn get(client: &Client, to: &Authority) -> Result<String, BackendError> {
        let resp = client.send(to, request(to)).await?;
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Ok(String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn connections_are_reused_after_the_body_ends() {
        let (to, accepted) = backend(None);
        let client = Client::new(Duration::from_secs(2));
        for _ in 0..5 {
            assert_eq!(get(&client, &to).await.unwrap(), "hello");
        }
        assert_eq!(accepted.try_iter().count(), 1, "one connection for all");
        assert_eq!(client.idle_connections(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_backend_closed_while_idle_is_not_an_error() {
        let (to, accepted) = backend(Some(Duration::from_millis(50)));
        let client = Client::new(Duration::from_secs(2));
        for _ in 0..3 {
            assert_eq!(get(&client, &to).await.unwrap(), "hello");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        assert_eq!(accepted.try_iter().count(), 3);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_does_not_return_its_connection() {
        let (to, accepted) = backend(None);
        let client = Client::new(Duration::from_secs(2));
        let resp = client.send(&to, request(&to)).await.unwrap();
        drop(resp);
        assert_eq!(client.idle_connections(), 0);
        assert_eq!(get(&client, &to).await.unwrap(), "hello");
        assert_eq!(accepted.try_iter().count(), 2);
    }

    #[tokio::test]
    async fn a_pooled_connection_whose_task_ended_is_skipped() {
        let (to, accepted) = backend(None);
        let client = Client::new(Duration::from_secs(2));
        // A pooled connection whose connection task is gone (as after the backend
        // closed it): never used, the request goes over a new connection.
        let (sender, conn) = client
            .shared
            .builder
            .handshake::<_, Empty<Bytes>>(TokioIo::new(
                TcpStream::connect(to.as_str()).await.unwrap(),
            ))
            .await
            .unwrap();
        drop(conn);
        client.shared.lock().push_back(Idle {
            authority: to.clone(),
            sender,
            since: Instant::now(),
        });
        assert_eq!(get(&client, &to).await.unwrap(), "hello");
        assert_eq!(accepted.try_iter().count(), 2);
    }

    /// A request body that never ends.
    struct Endless;

    impl Body for Endless {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_connection_still_sending_a_request_body_is_not_lent_out() {
        use http_body_util::Either;
        let (to, accepted) = backend(None);
        let client = BackendClient::<Either<Empty<Bytes>, Endless>>::new(Duration::from_secs(2));
        // The backend answers before the (endless) upload is over.
        let upload = Request::builder()
            .method("POST")
            .uri("/")
            .header(http::header::HOST, to.as_str())
            .body(Either::Right(Endless))
            .unwrap();
        let resp = client.send(&to, upload).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
        assert_eq!(client.idle_connections(), 0);
        let get = Request::builder()
            .uri("/")
            .header(http::header::HOST, to.as_str())
            .body(Either::Left(Empty::new()))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(5), client.send(&to, get))
            .await
            .expect("not stuck behind the upload")
            .unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, "hello");
        assert_eq!(accepted.try_iter().count(), 2);
    }

    #[tokio::test]
    async fn refused_is_a_connect_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let to: Authority = format!("127.0.0.1:{port}").parse().unwrap();
        let client = Client::new(Duration::from_secs(2));
        let err = get(&client, &to).await.unwrap_err();
        assert!(err.is_connect(), "{err}");
    }

    #[tokio::test]
    async fn names_are_resolved_and_other_addresses_are_not_reused() {
        let (to, accepted) = backend(None);
        let named: Authority = format!("localhost:{}", to.port_u16().unwrap())
            .parse()
            .unwrap();
        let client = Client::new(Duration::from_secs(2));
        assert_eq!(get(&client, &named).await.unwrap(), "hello");
        assert_eq!(get(&client, &to).await.unwrap(), "hello");
        assert_eq!(accepted.try_iter().count(), 2);
    }
}
