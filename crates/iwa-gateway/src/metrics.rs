//! Prometheus metrics: process-wide counters updated on the request path with relaxed
//! atomics (no lock, no allocation), rendered in the text exposition format (0.0.4) by
//! a separate plain-HTTP listener (`[metrics] listen`), so scrapers never go through
//! authentication and users never see the endpoint.
//!
//! Every label has a bounded set of values: status codes, authentication methods and
//! events, the error codes of the error page, fixed audit event names. User names,
//! paths and addresses never become labels.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use iwa::{AuthEvent, AuthMethod};
use tracing::{debug, info, warn};

use crate::server::Gateway;

/// Upper bounds (seconds) of the request-duration histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Status codes 100..=599, one counter each.
const STATUS_MIN: u16 = 100;
const STATUS_COUNT: usize = 500;

/// The authentication outcomes counted, in render order.
const AUTH_EVENTS: [(&str, Option<AuthMethod>); 12] = [
    ("login", Some(AuthMethod::Kerberos)),
    ("login", Some(AuthMethod::Ntlm)),
    ("session", Some(AuthMethod::Kerberos)),
    ("session", Some(AuthMethod::Ntlm)),
    ("session", Some(AuthMethod::Fake)),
    ("connection", Some(AuthMethod::Kerberos)),
    ("connection", Some(AuthMethod::Ntlm)),
    ("fake", None),
    ("continue", None),
    ("no_credentials", None),
    ("failed", None),
    ("anonymous_route", None),
];

/// Audit decisions counted, by event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    ImpersonationStart,
    ImpersonationStop,
    ImpersonationRefused,
    ImpersonationIgnored,
    CsrfRefused,
    AccessDenied,
}

const AUDITS: [(Audit, &str); 6] = [
    (Audit::ImpersonationStart, "impersonation_start"),
    (Audit::ImpersonationStop, "impersonation_stop"),
    (Audit::ImpersonationRefused, "impersonation_refused"),
    (Audit::ImpersonationIgnored, "impersonation_ignored"),
    (Audit::CsrfRefused, "csrf_refused"),
    (Audit::AccessDenied, "access_denied"),
];

/// The counters of this process.
pub struct Metrics {
    started_unix: AtomicU64,
    status: [AtomicU64; STATUS_COUNT],
    other_status: AtomicU64,
    /// Per bucket (not cumulative), then the overflow (+Inf only).
    duration: [AtomicU64; BUCKETS.len() + 1],
    duration_micros: AtomicU64,
    auth: [AtomicU64; AUTH_EVENTS.len()],
    /// Error codes of refused credentials (a few dozen at most, all `'static`).
    failures: Mutex<Vec<(&'static str, u64)>>,
    connections: AtomicU64,
    connections_open: AtomicI64,
    tls_handshake_failures: AtomicU64,
    audits: [AtomicU64; AUDITS.len()],
    app_starts: AtomicU64,
    app_failures: AtomicU64,
}

static METRICS: Metrics = Metrics::new();

/// This process's metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Counts an open connection until dropped.
pub struct OpenConnection<'a>(&'a AtomicI64);

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The index in [`AUTH_EVENTS`] of a request's outcome: a plain match on the request
/// path (the unit test checks each index against its labels).
fn auth_index(event: Option<&AuthEvent>, anonymous_route: bool) -> usize {
    use AuthMethod::{Fake, Kerberos, Ntlm};
    if anonymous_route {
        return 11;
    }
    match event {
        Some(AuthEvent::Login(Kerberos)) => 0,
        Some(AuthEvent::Login(Ntlm)) => 1,
        Some(AuthEvent::Session(Kerberos)) => 2,
        Some(AuthEvent::Session(Ntlm)) => 3,
        Some(AuthEvent::Session(Fake)) => 4,
        Some(AuthEvent::Connection(Kerberos)) => 5,
        Some(AuthEvent::Connection(Ntlm)) => 6,
        Some(AuthEvent::Fake | AuthEvent::Login(Fake) | AuthEvent::Connection(Fake)) => 7,
        Some(AuthEvent::Continue) => 8,
        // The admin API's own refusals carry no event; neither does a request the
        // layer never saw. Both count as without credentials.
        Some(AuthEvent::NoCredentials) | None => 9,
        Some(AuthEvent::Failed(_)) => 10,
        // A method this table does not know yet (AuthMethod is non_exhaustive): counted
        // with no credentials rather than as another method.
        Some(AuthEvent::Login(_) | AuthEvent::Session(_) | AuthEvent::Connection(_)) => 9,
    }
}

impl Metrics {
    /// All zero.
    const fn new() -> Metrics {
        Metrics {
            started_unix: AtomicU64::new(0),
            status: [const { AtomicU64::new(0) }; STATUS_COUNT],
            other_status: AtomicU64::new(0),
            duration: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            duration_micros: AtomicU64::new(0),
            auth: [const { AtomicU64::new(0) }; AUTH_EVENTS.len()],
            failures: Mutex::new(Vec::new()),
            connections: AtomicU64::new(0),
            connections_open: AtomicI64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            audits: [const { AtomicU64::new(0) }; AUDITS.len()],
            app_starts: AtomicU64::new(0),
            app_failures: AtomicU64::new(0),
        }
    }

    /// Marks the start of serving (for `iwa_start_time_seconds`).
    pub fn started(&self, now: SystemTime) {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.started_unix.store(secs, Relaxed);
    }

    /// One answered request: its status, how long until the response head, and what
    /// the authentication layer did (`anonymous_route`: the layer was not involved).
    pub fn request(
        &self,
        status: StatusCode,
        took: Duration,
        event: Option<&AuthEvent>,
        anonymous_route: bool,
    ) {
        match usize::from(status.as_u16())
            .checked_sub(usize::from(STATUS_MIN))
            .and_then(|i| self.status.get(i))
        {
            Some(c) => c.fetch_add(1, Relaxed),
            None => self.other_status.fetch_add(1, Relaxed),
        };
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.duration[bucket].fetch_add(1, Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.duration_micros.fetch_add(micros, Relaxed);
        self.auth[auth_index(event, anonymous_route)].fetch_add(1, Relaxed);
        if let Some(AuthEvent::Failed(code)) = event {
            let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
            match f.iter_mut().find(|(c, _)| c == code) {
                Some((_, n)) => *n += 1,
                None => f.push((code, 1)),
            }
        }
    }

    /// A connection was accepted; it counts as open until the guard is dropped.
    pub fn connection(&self) -> OpenConnection<'_> {
        self.connections.fetch_add(1, Relaxed);
        self.connections_open.fetch_add(1, Relaxed);
        OpenConnection(&self.connections_open)
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Relaxed);
    }

    pub fn audit(&self, event: Audit) {
        if let Some(i) = AUDITS.iter().position(|(e, _)| *e == event) {
            self.audits[i].fetch_add(1, Relaxed);
        }
    }

    /// The hosted app was started (a process spawned).
    pub fn app_started(&self) {
        self.app_starts.fetch_add(1, Relaxed);
    }

    /// The hosted app exited unasked, or could not be started.
    pub fn app_failed(&self) {
        self.app_failures.fetch_add(1, Relaxed);
    }

    /// The text exposition of everything, plus the gateway's directory cache and
    /// hosted app state.
    pub fn render(&self, gateway: Option<&Gateway>) -> String {
        let mut out = String::with_capacity(4096);
        let o = &mut out;
        head(o, "iwa_build_info", "gauge", "The running iwa's version.");
        let _ = writeln!(
            o,
            "iwa_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        single(
            o,
            "iwa_start_time_seconds",
            "gauge",
            "When this gateway started serving, in seconds since the Unix epoch.",
            self.started_unix.load(Relaxed),
        );

        head(
            o,
            "iwa_http_requests_total",
            "counter",
            "Requests answered, by status code (the gateway's own answers and the backend's).",
        );
        for (i, c) in self.status.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let code = usize::from(STATUS_MIN) + i;
                let _ = writeln!(o, "iwa_http_requests_total{{code=\"{code}\"}} {n}");
            }
        }
        head(
            o,
            "iwa_http_request_duration_seconds",
            "histogram",
            "Time from a request's head to its response's head, authentication and the backend included.",
        );
        let mut cumulative = 0;
        for (i, c) in self.duration.iter().enumerate() {
            cumulative += c.load(Relaxed);
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                o,
                "iwa_http_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let sum = self.duration_micros.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "iwa_http_request_duration_seconds_sum {sum}");
        let _ = writeln!(o, "iwa_http_request_duration_seconds_count {cumulative}");

        head(
            o,
            "iwa_auth_total",
            "counter",
            "Requests by how they were authenticated: a new login, a session cookie, the connection's earlier login, a handshake leg, none, refused.",
        );
        for ((event, method), c) in AUTH_EVENTS.iter().zip(&self.auth) {
            let n = c.load(Relaxed);
            let _ = match method {
                Some(m) => writeln!(
                    o,
                    "iwa_auth_total{{event=\"{event}\",method=\"{}\"}} {n}",
                    m.as_str()
                ),
                None => writeln!(o, "iwa_auth_total{{event=\"{event}\"}} {n}"),
            };
        }
        head(
            o,
            "iwa_auth_failures_total",
            "counter",
            "Refused credentials, by the error page's code.",
        );
        for (code, n) in self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(o, "iwa_auth_failures_total{{reason=\"{code}\"}} {n}");
        }

        single(
            o,
            "iwa_connections_total",
            "counter",
            "Client connections accepted.",
            self.connections.load(Relaxed),
        );
        single(
            o,
            "iwa_connections_open",
            "gauge",
            "Client connections open now.",
            self.connections_open.load(Relaxed).max(0),
        );
        single(
            o,
            "iwa_tls_handshake_failures_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            self.tls_handshake_failures.load(Relaxed),
        );
        head(
            o,
            "iwa_audit_events_total",
            "counter",
            "Audited decisions, by event (as in the audit log).",
        );
        for ((_, name), c) in AUDITS.iter().zip(&self.audits) {
            let n = c.load(Relaxed);
            let _ = writeln!(o, "iwa_audit_events_total{{event=\"{name}\"}} {n}");
        }

        if let Some(dir) = gateway.and_then(|g| g.directory.as_ref()) {
            let s = dir.stats();
            head(
                o,
                "iwa_directory_cache_total",
                "counter",
                "Directory lookups (group names, tokenGroups, users) by cache result; `shared` misses waited for an identical lookup in flight.",
            );
            for (result, n) in [("hit", s.hits), ("miss", s.misses), ("shared", s.shared)] {
                let _ = writeln!(o, "iwa_directory_cache_total{{result=\"{result}\"}} {n}");
            }
            single(
                o,
                "iwa_directory_backend_calls_total",
                "counter",
                "Batches sent to LDAP or the directory file.",
                s.backend_calls,
            );
            single(
                o,
                "iwa_directory_backend_failures_total",
                "counter",
                "Batches that failed or timed out (identities then go on with SIDs only).",
                s.backend_failures,
            );
        }

        if let Some(hosting) = gateway.and_then(|g| g.hosting.as_ref()) {
            single(
                o,
                "iwa_app_starts_total",
                "counter",
                "Times the hosted app was started.",
                self.app_starts.load(Relaxed),
            );
            single(
                o,
                "iwa_app_failures_total",
                "counter",
                "Times the hosted app exited unasked, failed to start, or did not listen in time.",
                self.app_failures.load(Relaxed),
            );
            head(
                o,
                "iwa_app_state",
                "gauge",
                "The hosted app's state: 1 for the current one.",
            );
            let now = hosting.handle().state_name();
            for state in crate::hosting::STATE_NAMES {
                let up = u8::from(state == now);
                let _ = writeln!(o, "iwa_app_state{{state=\"{state}\"}} {up}");
            }
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of a metric.
fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its head and its one sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    head(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        info!("metrics on http://{addr}/metrics");
    }
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!("metrics accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let gateway = gateway.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(answer(&req, &gateway)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!("metrics connection: {e}");
            }
        });
    }
}

fn answer(req: &Request<Incoming>, gateway: &Gateway) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String, ctype: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
        r.headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => text(
            StatusCode::OK,
            METRICS.render(Some(gateway)),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        (_, "/metrics") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET /metrics\n".into(),
            "text/plain; charset=utf-8",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "only /metrics here\n".into(),
            "text/plain; charset=utf-8",
        ),
    }
}

/// Binds the metrics listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh() -> Metrics {
        Metrics::new()
    }

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| &l[prefix.len() + 1..])
    }

    #[test]
    fn counts_render_in_the_exposition_format() {
        let m = fresh();
        let ms = Duration::from_millis;
        m.request(
            StatusCode::OK,
            ms(3),
            Some(&AuthEvent::Login(AuthMethod::Kerberos)),
            false,
        );
        m.request(
            StatusCode::OK,
            ms(20),
            Some(&AuthEvent::Session(AuthMethod::Kerberos)),
            false,
        );
        m.request(
            StatusCode::UNAUTHORIZED,
            ms(0),
            Some(&AuthEvent::Failed("bad_token")),
            false,
        );
        m.request(
            StatusCode::UNAUTHORIZED,
            ms(1),
            Some(&AuthEvent::Failed("bad_token")),
            false,
        );
        m.request(StatusCode::OK, Duration::from_secs(30), None, true);
        m.audit(Audit::AccessDenied);
        let open = m.connection();
        let text = m.render(None);
        assert_eq!(
            line(&text, "iwa_http_requests_total{code=\"200\"}"),
            Some("3")
        );
        assert_eq!(
            line(&text, "iwa_http_requests_total{code=\"401\"}"),
            Some("2")
        );
        assert_eq!(line(&text, "iwa_http_requests_total{code=\"500\"}"), None);
        assert_eq!(
            line(
                &text,
                "iwa_http_request_duration_seconds_bucket{le=\"0.001\"}"
            ),
            Some("2")
        );
        assert_eq!(
            line(
                &text,
                "iwa_http_request_duration_seconds_bucket{le=\"0.005\"}"
            ),
            Some("3")
        );
        assert_eq!(
            line(&text, "iwa_http_request_duration_seconds_bucket{le=\"10\"}"),
            Some("4")
        );
        assert_eq!(
            line(
                &text,
                "iwa_http_request_duration_seconds_bucket{le=\"+Inf\"}"
            ),
            Some("5")
        );
        assert_eq!(
            line(&text, "iwa_http_request_duration_seconds_count"),
            Some("5")
        );
        assert_eq!(
            line(&text, "iwa_http_request_duration_seconds_sum"),
            Some("30.024")
        );
        assert_eq!(
            line(&text, "iwa_auth_total{event=\"login\",method=\"Kerberos\"}"),
            Some("1")
        );
        assert_eq!(
            line(
                &text,
                "iwa_auth_total{event=\"session\",method=\"Kerberos\"}"
            ),
            Some("1")
        );
        assert_eq!(line(&text, "iwa_auth_total{event=\"failed\"}"), Some("2"));
        assert_eq!(
            line(&text, "iwa_auth_total{event=\"anonymous_route\"}"),
            Some("1")
        );
        assert_eq!(
            line(&text, "iwa_auth_failures_total{reason=\"bad_token\"}"),
            Some("2")
        );
        assert_eq!(
            line(&text, "iwa_audit_events_total{event=\"access_denied\"}"),
            Some("1")
        );
        assert_eq!(line(&text, "iwa_connections_open"), Some("1"));
        drop(open);
        let text = m.render(None);
        assert_eq!(line(&text, "iwa_connections_open"), Some("0"));
        assert_eq!(line(&text, "iwa_connections_total"), Some("1"));
        // Every sample line names a metric announced by a TYPE line before it.
        let mut typed = Vec::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap();
                assert!(
                    typed.iter().any(|t| name == t
                        || name
                            .strip_prefix(t.as_str())
                            .is_some_and(|s| { ["_bucket", "_sum", "_count"].contains(&s) })),
                    "{l}"
                );
            }
        }
    }

    #[test]
    fn every_auth_event_has_its_own_series() {
        use AuthMethod::{Fake, Kerberos, Ntlm};
        let cases = [
            (
                Some(AuthEvent::Login(Kerberos)),
                false,
                "login",
                Some(Kerberos),
            ),
            (Some(AuthEvent::Login(Ntlm)), false, "login", Some(Ntlm)),
            (
                Some(AuthEvent::Session(Kerberos)),
                false,
                "session",
                Some(Kerberos),
            ),
            (Some(AuthEvent::Session(Ntlm)), false, "session", Some(Ntlm)),
            (Some(AuthEvent::Session(Fake)), false, "session", Some(Fake)),
            (
                Some(AuthEvent::Connection(Kerberos)),
                false,
                "connection",
                Some(Kerberos),
            ),
            (
                Some(AuthEvent::Connection(Ntlm)),
                false,
                "connection",
                Some(Ntlm),
            ),
            (Some(AuthEvent::Fake), false, "fake", None),
            (Some(AuthEvent::Login(Fake)), false, "fake", None),
            (Some(AuthEvent::Continue), false, "continue", None),
            (
                Some(AuthEvent::NoCredentials),
                false,
                "no_credentials",
                None,
            ),
            (None, false, "no_credentials", None),
            (Some(AuthEvent::Failed("x")), false, "failed", None),
            (None, true, "anonymous_route", None),
        ];
        let mut seen = Vec::new();
        for (event, anonymous, name, method) in cases {
            let i = auth_index(event.as_ref(), anonymous);
            assert_eq!(AUTH_EVENTS[i], (name, method), "{event:?}");
            seen.push(i);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), AUTH_EVENTS.len());
    }
}
