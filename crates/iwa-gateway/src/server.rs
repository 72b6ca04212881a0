//! The listener: one hyper connection per accepted socket (HTTP/1.1; HTTP/2 over TLS
//! when ALPN picks `h2`, offered only without NTLM), each with its own service stack
//! (auth layer over the proxy), graceful shutdown on SIGTERM/SIGINT, reloads on SIGHUP.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use iwa::layer::{AuthenticatedUser, ConnectionAuth, IwaBody};
use iwa::{Authenticator, IdentityHeaders, IwaLayer, Policy};
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{debug, error, info, info_span, warn, Instrument};

use crate::config::{BackendTarget, Config, NtlmValidatorConfig, Route, RouteAuth};
use crate::proxy::{ProxyBody, ProxyService, RouteRule, Upstream};

/// Everything a connection needs, shared.
pub struct Gateway {
    pub routes: Arc<Vec<Arc<Route>>>,
    pub fake: Option<Arc<iwa::Identity>>,
    pub session: Option<Arc<iwa::session::SessionSettings>>,
    pub access_log: bool,
    pub connection_bound: bool,
    pub auth: Arc<Authenticator>,
    pub upstream: Arc<Upstream>,
    pub identity_headers: Arc<IdentityHeaders>,
    /// `[tls]`: the current certificate (replaced on SIGHUP), its acceptor and channel
    /// bindings; ALPN offers `h2` only when NTLM is off.
    pub tls: Option<crate::tls::ReloadableTls>,
    /// `[backend] command`: the app iwa runs; [`serve`] starts and stops it.
    pub hosting: Option<Arc<crate::hosting::Hosting>>,
    /// `[ldap]` or `[directory]`: for its cache counters in the metrics.
    pub directory: Option<Arc<iwa::directory::Directory>>,
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Gateway {
    /// Builds the gateway from a checked configuration: acquires the Kerberos acceptor
    /// credential once, here, not per request.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let kerberos = match &config.kerberos {
            Some(k) => {
                let settings = iwa::KerberosSettings {
                    keytab: k.keytab.clone(),
                    service_principal: k.service_principal.clone(),
                    replay_cache: k.replay_cache.clone(),
                    realm_domains: k.realm_domains.clone(),
                    read_pac: k.use_pac,
                };
                let acceptor = iwa::KerberosAcceptor::new(&settings).map_err(|e| {
                    format!(
                        "cannot use keytab {}{}: {e}",
                        k.keytab.display(),
                        k.service_principal
                            .as_deref()
                            .map(|p| format!(" for {p}"))
                            .unwrap_or_default()
                    )
                })?;
                Some(Arc::new(acceptor))
            }
            None => None,
        };
        let ntlm = match &config.ntlm {
            Some(n) => {
                let validator: Arc<dyn iwa::ntlm::NtlmValidator> = match &n.validator {
                    NtlmValidatorConfig::Local { users_file } => {
                        Arc::new(iwa::ntlm::LocalValidator::load(users_file, &n.domain)?)
                    }
                    NtlmValidatorConfig::Winbind { timeout } => {
                        let mut s = iwa::winbind::WinbindSettings::new(n.domain.clone());
                        s.timeout = *timeout;
                        Arc::new(iwa::winbind::WinbindValidator::new(s)?)
                    }
                };
                let mut settings = iwa::ntlm::NtlmSettings::new(n.domain.clone());
                settings.computer_name = n.computer_name.clone();
                settings.dns_domain = n.dns_domain.clone();
                settings.offer_ntlm_scheme = n.offer_ntlm_scheme;
                settings.max_clock_skew = n.max_clock_skew;
                settings.handshake_timeout = n.handshake_timeout;
                settings.require_mic = n.require_mic;
                // Default: the Kerberos service principal, when one is pinned.
                settings.target_names = if n.target_names.is_empty() {
                    config
                        .kerberos
                        .as_ref()
                        .and_then(|k| k.service_principal.clone())
                        .into_iter()
                        .collect()
                } else {
                    n.target_names.clone()
                };
                Some((settings, validator))
            }
            None => None,
        };
        let mut auth = Authenticator::new(kerberos, ntlm);
        let directory = directory_from_config(config)?.map(Arc::new);
        if let Some(directory) = &directory {
            auth = auth.with_directory(directory.clone());
        }
        let identity_headers = Arc::new(IdentityHeaders::default());
        let (backend_url, hosting) = match &config.backend.target {
            BackendTarget::Url(u) => (u.clone(), None),
            // The port is picked per start of the app; `AppHandle::direct` sets it.
            BackendTarget::Hosted(app) => (
                http::Uri::from_static("http://127.0.0.1/"),
                Some(Arc::new(crate::hosting::Hosting::new(app.clone()))),
            ),
        };
        let mut upstream = Upstream::new(
            &backend_url,
            config.backend.connect_timeout,
            identity_headers.clone(),
        );
        upstream.hosted = hosting.as_ref().map(|h| h.handle());
        if let Some(a) = &config.assertion {
            upstream.assertion = Some(Arc::new(iwa::assertion::Signer::with_key(
                a.key.clone(),
                a.audience.clone(),
                a.lifetime,
            )));
        }
        let policy = Arc::new(config.impersonation.clone());
        let rules: Arc<Vec<iwa::access::AccessRule>> = Arc::new(
            config
                .routes
                .iter()
                .filter(|r| !r.rule.is_open())
                .map(|r| r.rule.clone())
                .collect(),
        );
        let impersonator = match &config.impersonation_cookie {
            Some(c) => {
                let ring = iwa::ticket::KeyRing::load(&c.key_file, &c.previous_key_files)
                    .map_err(|e| format!("impersonation keys: {e}"))?;
                Some(Arc::new(iwa::impersonation::Impersonator::new(
                    iwa::impersonation::ImpersonationSettings {
                        codec: Arc::new(iwa::ticket::TicketCodec::new(ring)),
                        revocations: Arc::new(iwa::ticket::MemoryRevocationStore::new()),
                        policy: policy.clone(),
                        rules: rules.clone(),
                        cookie_name: c.cookie_name.clone(),
                        lifetime: iwa::ticket::TicketLifetime {
                            idle_timeout: c.idle_timeout,
                            absolute: c.max_lifetime,
                        },
                        secure: config.tls.is_some(),
                        require_reason: c.require_reason,
                    },
                )))
            }
            None => None,
        };
        upstream.impersonator = impersonator.clone();
        upstream.admin = Some(crate::admin::router(Arc::new(crate::admin::AdminState {
            impersonator,
            directory: directory.clone(),
            policy,
            rules,
            scheme: if config.tls.is_some() {
                "https"
            } else {
                "http"
            },
            fake: config.fake.is_some(),
        })));
        let session = match &config.session {
            Some(s) => {
                let ring = iwa::ticket::KeyRing::load(&s.key_file, &s.previous_key_files)
                    .map_err(|e| format!("session keys: {e}"))?;
                let mut settings = iwa::session::SessionSettings::new(Arc::new(
                    iwa::ticket::TicketCodec::new(ring),
                ));
                settings.cookie_name = s.cookie_name.clone();
                settings.lifetime = iwa::ticket::TicketLifetime {
                    idle_timeout: s.idle_timeout,
                    absolute: s.max_lifetime,
                };
                settings.secure = config.tls.is_some();
                Some(Arc::new(settings))
            }
            None => None,
        };
        let upstream = Arc::new(upstream);
        let tls = match &config.tls {
            // HTTP/2 only without NTLM: an NTLM handshake is bound to its connection.
            Some(t) => Some(crate::tls::ReloadableTls::new(
                &t.cert,
                &t.key,
                t.extended_protection,
                config.ntlm.is_none(),
            )?),
            None => None,
        };
        Ok(Gateway {
            tls,
            routes: Arc::new(config.routes.iter().cloned().map(Arc::new).collect()),
            fake: config.fake.as_ref().map(|f| Arc::new(f.identity())),
            session,
            access_log: config.log.access,
            connection_bound: config.kerberos.as_ref().is_some_and(|k| k.connection_bound),
            auth: Arc::new(auth),
            upstream,
            identity_headers,
            hosting,
            directory,
        })
    }
}

/// The directory for group names: `[ldap]`, else the `[directory]` file, else none.
fn directory_from_config(config: &Config) -> Result<Option<iwa::directory::Directory>, String> {
    use iwa::directory::{
        Directory, DirectoryBackend, DirectorySettings, LdapBackend, StaticBackend,
    };
    let mut settings = DirectorySettings::default();
    let backend: Arc<dyn DirectoryBackend> = if let Some(l) = &config.ldap {
        settings = l.directory_settings();
        Arc::new(LdapBackend::new(l.backend_settings()).map_err(|e| format!("[ldap]: {e}"))?)
    } else if let Some(file) = &config.directory_file {
        Arc::new(StaticBackend::load(file).map_err(|e| format!("[directory]: {e}"))?)
    } else {
        return Ok(None);
    };
    info!(directory = %backend.describe(), "group names from the directory");
    Ok(Some(Directory::new(backend, settings)))
}

type GatewayBody = Either<IwaBody<ProxyBody>, Full<Bytes>>;

fn internal(req: &Request<Incoming>) -> Option<Response<Full<Bytes>>> {
    let path = req.uri().path();
    // Only the health check is answered before authentication; the rest of `/.iwa/`
    // is the admin page and API, behind a login (crate::admin).
    if path != "/.iwa/healthz" {
        return None;
    }
    let resp = match (req.method(), path) {
        (&Method::GET | &Method::HEAD, _) => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok\n")));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => iwa::error::error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "The health check answers GET and HEAD.",
            req.headers().get(http::header::ACCEPT),
        ),
    };
    Some(resp)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `drain`. A hosted app is started before the first accept (requests get 503 until it
/// listens) and stopped after the drain. SIGHUP reloads (see [`reload_on_sighup`]).
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    if let Some(hosting) = &gateway.hosting {
        if let Err(e) = hosting.start() {
            error!("cannot start the hosting supervisor thread: {e}; requests get 503");
        }
    }
    reload_on_sighup(gateway.clone());
    crate::metrics::global().started(std::time::SystemTime::now());
    // Each connection holds a receiver; on shutdown we flip the flag and wait until
    // every receiver is gone (hyper-util's GracefulShutdown does not take upgradeable
    // connections).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let builders = Arc::new(Builders::new());
    if let Some(tls) = &gateway.tls {
        info!(
            "TLS: ALPN offers {}",
            if tls.http2() {
                "h2 and http/1.1"
            } else {
                "http/1.1 only (NTLM is on, and cannot work over HTTP/2)"
            }
        );
    }
    if let Some(id) = gateway.fake.clone() {
        // Loud on purpose: a fake identity must never go unnoticed.
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                warn!(user = %id.remote_user(), "FAKE IDENTITY MODE: every request is {} without authentication (development only)", id.remote_user());
            }
        });
    }
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let builders = builders.clone();
        let mut stop = stop_rx.clone();
        let open = crate::metrics::global().connection();
        tokio::spawn(
            async move {
                let _open = open;
                // This connection's certificate, acceptor and bindings, kept to its end
                // even when SIGHUP brings a new certificate.
                let Some(tls) = gateway.tls.as_ref().map(|t| t.current()) else {
                    let conn_auth = ConnectionAuth::default();
                    serve_connection(
                        TokioIo::new(stream),
                        peer,
                        &gateway,
                        (&builders, false),
                        stop,
                        "http",
                        conn_auth,
                    )
                    .await;
                    return;
                };
                let handshake =
                    tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream));
                let stream = tokio::select! {
                    r = handshake => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            debug!("TLS handshake failed: {e}");
                            crate::metrics::global().tls_handshake_failed();
                            return;
                        }
                        Err(_) => {
                            debug!("TLS handshake timed out");
                            crate::metrics::global().tls_handshake_failed();
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                };
                let conn_auth = match &tls.binding {
                    Some(b) => ConnectionAuth::with_channel_binding(b.clone()),
                    None => ConnectionAuth::default(),
                };
                let h2 = stream.get_ref().1.alpn_protocol() == Some(crate::tls::ALPN_H2);
                serve_connection(
                    TokioIo::new(stream),
                    peer,
                    &gateway,
                    (&builders, h2),
                    stop,
                    "https",
                    conn_auth,
                )
                .await;
            }
            .instrument(info_span!("conn", %peer)),
        );
    }
    drop(listener);
    drop(stop_rx);
    info!("shutting down: draining in-flight requests (at most {drain:?})");
    let _ = stop_tx.send(true);
    tokio::select! {
        () = stop_tx.closed() => info!("all connections closed"),
        () = tokio::time::sleep(drain) => warn!("drain timeout reached; closing remaining connections"),
    }
    if let Some(hosting) = gateway.hosting.clone() {
        // SIGTERM to the app's group, SIGKILL after `stop_timeout`; waits.
        let _ = tokio::task::spawn_blocking(move || hosting.stop()).await;
    }
}

/// The HTTP/1.1 and HTTP/2 connection settings.
struct Builders {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

impl Builders {
    fn new() -> Self {
        let mut h1 = http1::Builder::new();
        h1.keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(256 * 1024);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            // As much header as HTTP/1.1 takes: Kerberos tokens with a PAC are large.
            .max_header_list_size(256 * 1024)
            .max_concurrent_streams(200);
        Builders { h1, h2 }
    }
}

/// Serves one accepted (and, with TLS, handshaken) connection until it ends or the
/// gateway stops, as HTTP/2 when `protocol.1` (ALPN chose `h2`), else HTTP/1.1.
/// `conn_auth` is the connection's own login memory (NTLM; Kerberos with
/// `connection_bound`), carrying its channel bindings on TLS.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    gateway: &Gateway,
    protocol: (&Builders, bool),
    mut stop: tokio::sync::watch::Receiver<bool>,
    proto: &'static str,
    conn_auth: ConnectionAuth,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let proxy = ProxyService {
        upstream: gateway.upstream.clone(),
        peer,
        proto,
        peer_header: HeaderValue::from_str(&peer.ip().to_string()).ok(),
    };
    let proxy_for_anonymous = proxy.clone();
    let authed = IwaLayer::new(gateway.auth.clone())
        .identity_headers(gateway.identity_headers.clone())
        .connection_bound(gateway.connection_bound)
        .session(gateway.session.clone())
        .fake(gateway.fake.clone())
        .layer(proxy);
    let headers = gateway.identity_headers.clone();
    let access_log = gateway.access_log;
    let routes = gateway.routes.clone();
    let session = gateway.session.clone();
    let anonymous_proxy = proxy_for_anonymous.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let mut authed = authed.clone();
        let mut anonymous_proxy = anonymous_proxy.clone();
        let headers = headers.clone();
        let session = session.clone();
        let path = req.uri().path();
        // The gateway's page and API always require a login, whatever the routes say.
        let route = if crate::proxy::is_admin_path(path) {
            None
        } else {
            routes.iter().find(|r| r.covers(path)).cloned()
        };
        let conn_auth = conn_auth.clone();
        async move {
            let t0 = Instant::now();
            if let Some(r) = internal(&req) {
                crate::metrics::global().request(r.status(), t0.elapsed(), None, true);
                return Ok::<_, Infallible>(r.map(Either::Right));
            }
            headers.strip(req.headers_mut());
            let started = access_log.then(|| (req.method().clone(), req.uri().path().to_owned()));
            let auth_mode = route.as_ref().map_or(RouteAuth::Required, |r| r.auth);
            if let Some(route) = route {
                if !route.rule.is_open() {
                    req.extensions_mut().insert(RouteRule(route));
                }
            }
            let resp: Response<GatewayBody> = match auth_mode {
                RouteAuth::Anonymous => {
                    // No auth layer here, so what it would remove goes here: the
                    // credentials, including the session ticket (a bearer credential).
                    req.headers_mut().remove(http::header::AUTHORIZATION);
                    if let Some(s) = &session {
                        s.strip(req.headers_mut());
                    }
                    match anonymous_proxy.call(req).await {
                        Ok(r) => r.map(|b| Either::Left(Either::Left(b))),
                        Err(never) => match never {},
                    }
                }
                mode => {
                    req.extensions_mut().insert(conn_auth);
                    if mode == RouteAuth::Optional {
                        req.extensions_mut().insert(Policy::Optional);
                    }
                    match authed.call(req).await {
                        Ok(r) => r.map(Either::Left),
                        Err(never) => match never {},
                    }
                }
            };
            crate::metrics::global().request(
                resp.status(),
                t0.elapsed(),
                resp.extensions().get::<iwa::AuthEvent>(),
                auth_mode == RouteAuth::Anonymous,
            );
            if let Some((method, path)) = started {
                let user = resp
                    .extensions()
                    .get::<AuthenticatedUser>()
                    .map_or("-", |u| u.0.as_str());
                info!(target: "iwa::access", %method, path, status = resp.status().as_u16(), user, micros = t0.elapsed().as_micros() as u64);
            }
            Ok(resp)
        }
    });
    let (builders, h2) = protocol;
    let result = if h2 {
        let conn = builders.h2.serve_connection(io, svc);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    } else {
        let conn = builders.h1.serve_connection(io, svc).with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => r,
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        }
    };
    if let Err(e) = result {
        debug!("connection ended with error: {e}");
    }
}

/// On every SIGHUP, for the life of the process: re-reads validator files and the TLS
/// certificate and key (new connections get the new pair; a pair that does not load
/// keeps the old one), and starts a hosted app again after its rapid-failure stop.
pub fn reload_on_sighup(gateway: Arc<Gateway>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        warn!("cannot listen for SIGHUP; reloads happen only when files change");
        return;
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match gateway.auth.reload() {
                Ok(()) => info!("SIGHUP: reloaded"),
                Err(e) => warn!("SIGHUP: reload failed, keeping the previous state: {e}"),
            }
            if let Some(tls) = &gateway.tls {
                match tls.reload() {
                    Ok(cert) => {
                        info!("SIGHUP: TLS certificate reloaded ({cert}); new connections use it")
                    }
                    Err(e) => {
                        warn!("SIGHUP: TLS certificate not reloaded, keeping the previous one: {e}")
                    }
                }
            }
            if let Some(hosting) = &gateway.hosting {
                // Starts the app again if it was stopped after repeated failures.
                hosting.retry();
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot listen for SIGTERM: {e}");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => info!("SIGINT received"),
    }
}

/// Binds the configured address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}
