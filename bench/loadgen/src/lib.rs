//! `iwa-loadgen`: a closed-loop HTTP/1.1 load generator for authenticating proxies.
//!
//! Each of `connections` tasks owns one keep-alive connection and issues requests back to
//! back. What a request carries depends on the [`Mode`]: nothing, a fresh Kerberos token,
//! a token once per connection, a session cookie, or a full NTLM handshake per connection.
//! Results are per-task histograms and counters merged at the end, so the hot path has no
//! shared state except, in `fresh` mode, one atomic index into the pre-minted tokens.

pub mod hist;
pub mod http;
pub mod kerberos;
pub mod ntlm;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Serialize;

use crate::hist::Histogram;
use crate::http::{Conn, HttpError, Response};
use crate::kerberos::{Mech, Minter, TokenPool};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A new Kerberos token (pre-minted, each sent once) on every request.
    Fresh,
    /// Negotiate on the first request of each connection, then plain requests.
    Once,
    /// Negotiate once per connection, then reuse the session cookie it set.
    Cookie,
    /// NTLM NEGOTIATE → CHALLENGE → AUTHENTICATE on every new connection.
    Ntlm,
    /// No authentication.
    None,
}

/// Where to send requests.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: String,
    pub host_header: String,
    pub path: String,
}

impl Target {
    /// Parses `http://host[:port][/path]` and resolves the host.
    pub async fn from_url(url: &str, host_header: Option<&str>) -> Result<Target, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            // `[v6]` without a port has colons only inside the brackets.
            Some((h, p)) if !authority.ends_with(']') => (
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {p}"))?,
            ),
            _ => (authority.trim_start_matches('[').trim_end_matches(']'), 80),
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("resolving {host}: {e}"))?
            .collect();
        let addr = addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .copied()
            .ok_or_else(|| format!("{host}: no address"))?;
        Ok(Target {
            addr,
            host: host.to_string(),
            host_header: host_header.unwrap_or(authority).to_string(),
            path: path.to_string(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub url: String,
    /// `Host` header; default: the URL's authority.
    pub host: Option<String>,
    pub mode: Mode,
    pub connections: usize,
    /// Measured duration after warm-up; `None` with `requests` set.
    pub duration: Option<Duration>,
    /// Stop after this many measured requests instead of after `duration`.
    pub requests: Option<u64>,
    pub warmup: Duration,
    pub timeout: Duration,
    /// Close and reopen a connection after this many requests (0 = never); default 1 for
    /// `ntlm` (a handshake per request), 0 otherwise.
    pub reconnect_after: Option<u64>,
    /// Kerberos service name; default `HTTP@<url host>`.
    pub spn: Option<String>,
    pub mech: Mech,
    /// `fresh`: tokens to pre-mint; default `rate_hint × (warmup + duration)`.
    pub tokens: Option<usize>,
    pub rate_hint: f64,
    pub mint_threads: usize,
    pub user: String,
    pub password: String,
    pub domain: String,
    /// Scheme used for NTLM messages: `NTLM` or `Negotiate`.
    pub ntlm_scheme: String,
}

impl RunConfig {
    pub fn new(url: impl Into<String>, mode: Mode) -> RunConfig {
        RunConfig {
            url: url.into(),
            host: None,
            mode,
            connections: 16,
            duration: Some(Duration::from_secs(10)),
            requests: None,
            warmup: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
            reconnect_after: None,
            spn: None,
            mech: Mech::Spnego,
            tokens: None,
            rate_hint: 8000.0,
            mint_threads: 1,
            user: String::new(),
            password: String::new(),
            domain: String::new(),
            ntlm_scheme: "NTLM".to_string(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Serialize)]
pub struct TokenReport {
    pub minted: usize,
    pub used: usize,
    pub mint_threads: usize,
    pub mint_seconds: f64,
    /// Tokens per second per minting thread: the client's own ceiling per core.
    pub mint_rate_per_core: f64,
    pub exhausted: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    pub url: String,
    pub connections: usize,
    pub elapsed_s: f64,
    /// Completed requests in the measured window (successes + error statuses).
    pub requests: u64,
    pub ok: u64,
    /// Error statuses + transport errors.
    pub errors: u64,
    /// Successful requests per second.
    pub rps: f64,
    /// Latency of successful requests, microseconds.
    pub latency_us: Latency,
    pub errors_by_status: BTreeMap<String, u64>,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub connects: u64,
    /// Authentication handshakes completed (tokens accepted, NTLM exchanges).
    pub handshakes: u64,
    pub handshakes_per_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<TokenReport>,
}

impl Report {
    pub fn human(&self) -> String {
        let mut s = format!(
            "{:?} {} x{} {:.1}s: {} ok, {} errors, {:.0} req/s; latency p50 {:.0}us p90 {:.0}us p99 {:.0}us max {:.0}us",
            self.mode,
            self.url,
            self.connections,
            self.elapsed_s,
            self.ok,
            self.errors,
            self.rps,
            self.latency_us.p50,
            self.latency_us.p90,
            self.latency_us.p99,
            self.latency_us.max,
        );
        if self.handshakes > 0 {
            s += &format!("; {:.0} handshakes/s", self.handshakes_per_s);
        }
        if !self.errors_by_status.is_empty() || !self.errors_by_kind.is_empty() {
            s += &format!(
                "; errors: {:?} {:?}",
                self.errors_by_status, self.errors_by_kind
            );
        }
        if let Some(t) = &self.tokens {
            s += &format!(
                "; tokens {} minted ({:.0}/s/core, {} thread(s)), {} used{}",
                t.minted,
                t.mint_rate_per_core,
                t.mint_threads,
                t.used,
                if t.exhausted { ", EXHAUSTED" } else { "" }
            );
        }
        s
    }
}

#[derive(Default)]
struct Stats {
    hist: Histogram,
    ok: u64,
    by_status: BTreeMap<u16, u64>,
    by_kind: BTreeMap<&'static str, u64>,
    connects: u64,
    handshakes: u64,
    last_done: Option<Instant>,
}

struct Shared {
    warm_end: Instant,
    end: Option<Instant>,
    remaining: Option<AtomicI64>,
    stop: AtomicBool,
    exhausted_at: Mutex<Option<Instant>>,
}

impl Shared {
    fn measuring(&self, t: Instant) -> bool {
        t >= self.warm_end && self.end.is_none_or(|e| t <= e)
    }
}

enum Auth {
    None,
    Pool(Arc<TokenPool>),
    Minter(Arc<Minter>),
    Ntlm(Arc<ntlm::Credentials>),
}

enum OpError {
    Http(HttpError),
    Connect,
    Mint,
    Ntlm(&'static str),
    /// The authenticated response in `cookie` mode set no cookie.
    NoCookie,
    Exhausted,
}

struct Task {
    shared: Arc<Shared>,
    target: Arc<Target>,
    mode: Mode,
    auth: Auth,
    ntlm_scheme: String,
    reconnect_after: u64,
    timeout: Duration,
    conn: Option<Conn>,
    authed: bool,
    cookie: Option<String>,
    ops_on_conn: u64,
    req: Vec<u8>,
    rng: u64,
    /// Set by `op` when it completed an authentication handshake.
    handshake_done: bool,
    stats: Stats,
}

impl Task {
    fn next_random(&mut self) -> u64 {
        // xorshift64*: client challenges need to differ, not to be secret.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn build(&mut self, header: Option<(&str, &str)>) {
        self.req.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            self.req,
            "GET {} HTTP/1.1\r\nHost: {}\r\n",
            self.target.path, self.target.host_header
        );
        if let Some((name, value)) = header {
            let _ = write!(self.req, "{name}: {value}\r\n");
        }
        self.req.extend_from_slice(b"\r\n");
    }

    async fn send(&mut self, scheme: Option<&str>) -> Result<Response, OpError> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => {
                let c = Conn::connect(self.target.addr)
                    .await
                    .map_err(|_| OpError::Connect)?;
                self.stats.connects += 1;
                self.authed = false;
                self.ops_on_conn = 0;
                self.conn.insert(c)
            }
        };
        let resp = conn
            .exchange(&self.req, scheme)
            .await
            .map_err(OpError::Http)?;
        if resp.close {
            self.conn = None;
        }
        Ok(resp)
    }

    /// One logical request; returns the final status.
    async fn op(&mut self) -> Result<u16, OpError> {
        match self.mode {
            Mode::None => {
                self.build(None);
                Ok(self.send(None).await?.status)
            }
            Mode::Fresh => {
                let Auth::Pool(pool) = &self.auth else {
                    return Err(OpError::Mint);
                };
                let pool = Arc::clone(pool);
                let tok = pool.take().ok_or(OpError::Exhausted)?;
                self.build(Some(("Authorization", &format!("Negotiate {tok}"))));
                let status = self.send(None).await?.status;
                if is_ok(status) {
                    self.handshake_done = true;
                }
                Ok(status)
            }
            Mode::Once | Mode::Cookie => {
                if self.conn.is_none() {
                    self.authed = false;
                }
                let use_cookie = self.mode == Mode::Cookie && self.cookie.is_some();
                let need_token = !use_cookie && (self.mode == Mode::Cookie || !self.authed);
                if need_token {
                    let Auth::Minter(m) = &self.auth else {
                        return Err(OpError::Mint);
                    };
                    let tok = m.mint().map_err(|_| OpError::Mint)?;
                    self.build(Some(("Authorization", &format!("Negotiate {tok}"))));
                } else if use_cookie {
                    let c = self.cookie.take().unwrap_or_default();
                    self.build(Some(("Cookie", &c)));
                    self.cookie = Some(c);
                } else {
                    self.build(None);
                }
                let resp = self.send(None).await?;
                if is_ok(resp.status) {
                    if need_token {
                        self.handshake_done = true;
                        self.authed = true;
                        if self.mode == Mode::Cookie {
                            self.cookie = resp.set_cookie;
                            if self.cookie.is_none() {
                                return Err(OpError::NoCookie);
                            }
                        }
                    }
                } else if resp.status == 401 {
                    self.authed = false;
                    self.cookie = None;
                }
                Ok(resp.status)
            }
            Mode::Ntlm => {
                if self.conn.is_none() {
                    self.authed = false;
                }
                if self.authed {
                    self.build(None);
                    let status = self.send(None).await?.status;
                    if status == 401 {
                        self.authed = false;
                    }
                    return Ok(status);
                }
                let Auth::Ntlm(creds) = &self.auth else {
                    return Err(OpError::Mint);
                };
                let creds = Arc::clone(creds);
                let b64 = base64::engine::general_purpose::STANDARD;
                let neg = ntlm::negotiate();
                let scheme = self.ntlm_scheme.clone();
                self.build(Some((
                    "Authorization",
                    &format!("{scheme} {}", b64.encode(&neg)),
                )));
                let resp = self.send(Some(&scheme)).await?;
                if resp.status != 401 {
                    return Ok(resp.status);
                }
                let Some(ch) = resp.challenge.filter(|c| !c.is_empty()) else {
                    return Err(OpError::Ntlm("no_challenge"));
                };
                if self.conn.is_none() {
                    return Err(OpError::Ntlm("closed_after_challenge"));
                }
                let ch = b64.decode(ch).map_err(|_| OpError::Ntlm("bad_challenge"))?;
                let mut rnd = {
                    let mut r = self.next_random();
                    move || {
                        r = r
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        r
                    }
                };
                let auth = ntlm::authenticate(&creds, &neg, &ch, &mut rnd)
                    .map_err(|_| OpError::Ntlm("bad_challenge"))?;
                self.build(Some((
                    "Authorization",
                    &format!("{scheme} {}", b64.encode(&auth)),
                )));
                let resp = self.send(None).await?;
                if is_ok(resp.status) {
                    self.authed = true;
                    self.handshake_done = true;
                }
                Ok(resp.status)
            }
        }
    }

    async fn run(mut self) -> Stats {
        loop {
            let start = Instant::now();
            if self.shared.stop.load(Ordering::Relaxed)
                || self.shared.end.is_some_and(|e| start >= e)
            {
                break;
            }
            if start >= self.shared.warm_end {
                if let Some(rem) = &self.shared.remaining {
                    if rem.fetch_sub(1, Ordering::Relaxed) <= 0 {
                        break;
                    }
                }
            }
            let result = match tokio::time::timeout(self.timeout, self.op()).await {
                Ok(r) => r,
                Err(_) => {
                    self.conn = None;
                    Err(OpError::Http(HttpError::Io(
                        std::io::ErrorKind::TimedOut.into(),
                    )))
                }
            };
            let done = Instant::now();
            let measuring = self.shared.measuring(done);
            if std::mem::take(&mut self.handshake_done) && measuring {
                self.stats.handshakes += 1;
            }
            match result {
                Ok(status) => {
                    self.ops_on_conn += 1;
                    if self.reconnect_after > 0 && self.ops_on_conn >= self.reconnect_after {
                        self.conn = None;
                    }
                    if measuring {
                        self.stats.last_done = Some(done);
                        if is_ok(status) {
                            self.stats.ok += 1;
                            let ns = u64::try_from((done - start).as_nanos()).unwrap_or(u64::MAX);
                            self.stats.hist.record(ns);
                        } else {
                            *self.stats.by_status.entry(status).or_default() += 1;
                        }
                    }
                }
                Err(OpError::Exhausted) => {
                    let mut at = self
                        .shared
                        .exhausted_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
                    at.get_or_insert(done);
                    self.shared.stop.store(true, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    self.conn = None;
                    self.authed = false;
                    let kind = match &e {
                        OpError::Http(h) => h.kind(),
                        OpError::Connect => "connect",
                        OpError::Mint => "mint",
                        OpError::Ntlm(k) => k,
                        OpError::NoCookie => "no_cookie",
                        OpError::Exhausted => "exhausted",
                    };
                    if measuring {
                        *self.stats.by_kind.entry(kind).or_default() += 1;
                    }
                    if matches!(e, OpError::Connect | OpError::Mint) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.stats
    }
}

fn is_ok(status: u16) -> bool {
    (200..400).contains(&status)
}

fn micros(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Runs one load test.
pub async fn run(cfg: RunConfig) -> Result<Report, String> {
    if cfg.connections == 0 {
        return Err("--connections must be > 0".into());
    }
    if cfg.duration.is_none() && cfg.requests.is_none() {
        return Err("need a duration or a request count".into());
    }
    let target = Arc::new(Target::from_url(&cfg.url, cfg.host.as_deref()).await?);
    let spn = cfg
        .spn
        .clone()
        .unwrap_or_else(|| format!("HTTP@{}", target.host));
    let mut token_stats = None;
    let auth = match cfg.mode {
        Mode::None => Auth::None,
        Mode::Fresh => {
            let count = cfg.tokens.unwrap_or_else(|| {
                let secs = cfg.warmup.as_secs_f64()
                    + cfg.duration.map(|d| d.as_secs_f64()).unwrap_or_default();
                (cfg.rate_hint * secs) as usize
                    + cfg.requests.unwrap_or(0) as usize
                    + cfg.connections
            });
            let (spn2, mech, threads) = (spn.clone(), cfg.mech, cfg.mint_threads);
            let (pool, stats) =
                tokio::task::spawn_blocking(move || TokenPool::mint(&spn2, mech, count, threads))
                    .await
                    .map_err(|e| format!("minting task: {e}"))??;
            token_stats = Some(stats);
            Auth::Pool(Arc::new(pool))
        }
        Mode::Once | Mode::Cookie => {
            let m = Minter::new(&spn, cfg.mech)?;
            m.mint()?; // fail early, and put the service ticket in the cache
            Auth::Minter(Arc::new(m))
        }
        Mode::Ntlm => Auth::Ntlm(Arc::new(ntlm::Credentials {
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            domain: cfg.domain.clone(),
            workstation: "LOADGEN".to_string(),
        })),
    };
    let pool = match &auth {
        Auth::Pool(p) => Some(Arc::clone(p)),
        _ => None,
    };
    let start = Instant::now();
    let warm_end = start + cfg.warmup;
    let shared = Arc::new(Shared {
        warm_end,
        end: cfg.duration.map(|d| warm_end + d),
        remaining: cfg.requests.map(|n| AtomicI64::new(n as i64)),
        stop: AtomicBool::new(false),
        exhausted_at: Mutex::new(None),
    });
    let reconnect_after = cfg
        .reconnect_after
        .unwrap_or(if cfg.mode == Mode::Ntlm { 1 } else { 0 });
    let seed = u64::from(start.elapsed().subsec_nanos()) | 1;
    let mut handles = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let task = Task {
            shared: Arc::clone(&shared),
            target: Arc::clone(&target),
            mode: cfg.mode,
            auth: match &auth {
                Auth::None => Auth::None,
                Auth::Pool(p) => Auth::Pool(Arc::clone(p)),
                Auth::Minter(m) => Auth::Minter(Arc::clone(m)),
                Auth::Ntlm(c) => Auth::Ntlm(Arc::clone(c)),
            },
            ntlm_scheme: cfg.ntlm_scheme.clone(),
            reconnect_after,
            timeout: cfg.timeout,
            conn: None,
            authed: false,
            cookie: None,
            ops_on_conn: 0,
            req: Vec::with_capacity(4096),
            handshake_done: false,
            rng: seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(i as u64 * 7919)
                | 1,
            stats: Stats::default(),
        };
        handles.push(tokio::spawn(task.run()));
    }
    let mut total = Stats::default();
    for h in handles {
        let s = h.await.map_err(|e| format!("connection task: {e}"))?;
        total.hist.merge(&s.hist);
        total.ok += s.ok;
        for (k, v) in s.by_status {
            *total.by_status.entry(k).or_default() += v;
        }
        for (k, v) in s.by_kind {
            *total.by_kind.entry(k).or_default() += v;
        }
        total.connects += s.connects;
        total.handshakes += s.handshakes;
        total.last_done = total.last_done.max(s.last_done);
    }
    let exhausted_at = *shared
        .exhausted_at
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let window_end = match (shared.end, exhausted_at) {
        (_, Some(x)) => x,
        (Some(e), None) => e,
        (None, None) => total.last_done.unwrap_or(warm_end),
    };
    let elapsed = window_end.saturating_duration_since(warm_end).as_secs_f64();
    let status_errors: u64 = total.by_status.values().sum();
    let kind_errors: u64 = total.by_kind.values().sum();
    let per_s = |n: u64| {
        if elapsed > 0.0 {
            n as f64 / elapsed
        } else {
            0.0
        }
    };
    let h = &total.hist;
    Ok(Report {
        mode: cfg.mode,
        url: cfg.url.clone(),
        connections: cfg.connections,
        elapsed_s: elapsed,
        requests: total.ok + status_errors,
        ok: total.ok,
        errors: status_errors + kind_errors,
        rps: per_s(total.ok),
        latency_us: Latency {
            p50: micros(h.quantile(0.5)),
            p90: micros(h.quantile(0.9)),
            p99: micros(h.quantile(0.99)),
            max: micros(h.max()),
            mean: h.mean() / 1000.0,
        },
        errors_by_status: total
            .by_status
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        errors_by_kind: total
            .by_kind
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        connects: total.connects,
        handshakes: total.handshakes,
        handshakes_per_s: per_s(total.handshakes),
        tokens: token_stats.map(|s| TokenReport {
            minted: s.minted,
            used: pool.as_ref().map(|p| p.used()).unwrap_or(0),
            mint_threads: s.threads,
            mint_seconds: s.elapsed.as_secs_f64(),
            mint_rate_per_core: s.per_core_rate(),
            exhausted: exhausted_at.is_some(),
        }),
    })
}

#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub requested: usize,
    pub open: usize,
    pub ok: usize,
    pub errors: BTreeMap<String, u64>,
    pub seconds_to_open: f64,
}

/// Opens `connections` keep-alive connections, sends one plain request on each and
/// returns them open (the caller holds them while the server's memory is measured).
/// With `negotiate` set (`(spn, mech)`), each connection's request carries its own fresh
/// Kerberos token, minted before the connections are opened.
pub async fn idle(
    url: &str,
    host: Option<&str>,
    connections: usize,
    parallel: usize,
    negotiate: Option<(String, Mech)>,
) -> Result<(IdleReport, Vec<Conn>), String> {
    let target = Arc::new(Target::from_url(url, host).await?);
    let pool = match negotiate {
        Some((spn, mech)) => {
            let (pool, _) =
                tokio::task::spawn_blocking(move || TokenPool::mint(&spn, mech, connections, 1))
                    .await
                    .map_err(|e| format!("minting task: {e}"))??;
            Some(Arc::new(pool))
        }
        None => None,
    };
    let start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut handles = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (sem, target, pool) = (Arc::clone(&sem), Arc::clone(&target), pool.clone());
        handles.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.map_err(|_| "closed")?;
            let auth = match &pool {
                Some(p) => format!(
                    "Authorization: Negotiate {}\r\n",
                    p.take().ok_or("exhausted")?
                ),
                None => String::new(),
            };
            let mut conn = Conn::connect(target.addr).await.map_err(|_| "connect")?;
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n",
                target.path, target.host_header
            );
            let resp =
                tokio::time::timeout(Duration::from_secs(30), conn.exchange(req.as_bytes(), None))
                    .await
                    .map_err(|_| "timeout")?
                    .map_err(|e| e.kind())?;
            if resp.close {
                return Err("closed_by_server");
            }
            Ok::<_, &'static str>((conn, resp.status))
        }));
    }
    let mut conns = Vec::with_capacity(connections);
    let mut ok = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for h in handles {
        match h.await {
            Ok(Ok((c, status))) => {
                if is_ok(status) {
                    ok += 1;
                } else {
                    *errors.entry(status.to_string()).or_default() += 1;
                }
                conns.push(c);
            }
            Ok(Err(kind)) => *errors.entry(kind.to_string()).or_default() += 1,
            Err(_) => *errors.entry("task".to_string()).or_default() += 1,
        }
    }
    Ok((
        IdleReport {
            requested: connections,
            open: conns.len(),
            ok,
            errors,
            seconds_to_open: start.elapsed().as_secs_f64(),
        },
        conns,
    ))
}
