//! The listener: one hyper HTTP/1.1 connection per accepted socket, each with its own
//! service stack (auth layer over the proxy), graceful shutdown on SIGTERM/SIGINT.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use iwa::layer::{AuthenticatedUser, ConnectionAuth, IwaBody};
use iwa::{Authenticator, IdentityHeaders, IwaLayer, Policy};
use tokio::net::TcpListener;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::{Config, NtlmValidatorConfig, Route, RouteAuth};
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
    /// `[tls]`: the acceptor and the certificate's channel bindings.
    pub tls: Option<crate::tls::Tls>,
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
        if let Some(directory) = directory_from_config(config)? {
            auth = auth.with_directory(Arc::new(directory));
        }
        let identity_headers = Arc::new(IdentityHeaders::default());
        let mut upstream = Upstream::new(
            &config.backend.url,
            config.backend.connect_timeout,
            identity_headers.clone(),
        );
        if let Some(a) = &config.assertion {
            upstream.assertion = Some(Arc::new(
                iwa::assertion::Signer::new(a.secret.clone(), a.audience.clone(), a.lifetime)
                    .map_err(|e| format!("assertion: {e}"))?,
            ));
        }
        upstream.impersonation = Arc::new(config.impersonation.clone());
        upstream.rules = Arc::new(
            config
                .routes
                .iter()
                .filter(|r| !r.rule.is_open())
                .map(|r| r.rule.clone())
                .collect(),
        );
        let upstream = Arc::new(upstream);
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
        let tls = match &config.tls {
            Some(t) => Some(crate::tls::load(&t.cert, &t.key, t.extended_protection)?),
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
        })
    }
}

/// The directory for group names: `[ldap]`, else the `[directory]` file, else none.
fn directory_from_config(config: &Config) -> Result<Option<iwa::directory::Directory>, String> {
    use iwa::directory::{
        Directory, DirectoryBackend, DirectorySettings, LdapBackend, LdapSettings, StaticBackend,
    };
    let mut settings = DirectorySettings::default();
    let backend: Arc<dyn DirectoryBackend> = if let Some(l) = &config.ldap {
        settings.domain = l.domain.clone();
        settings.timeout = l.timeout;
        settings.cache_ttl = l.cache_ttl;
        settings.negative_cache_ttl = l.negative_cache_ttl;
        Arc::new(
            LdapBackend::new(LdapSettings {
                url: l.url.clone(),
                base_dn: l.base_dn.clone(),
                bind_dn: l.bind_dn.clone(),
                bind_password_file: l.bind_password_file.clone(),
                starttls: l.starttls,
                timeout: l.timeout,
            })
            .map_err(|e| format!("[ldap]: {e}"))?,
        )
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
    if !path.starts_with("/.iwa/") || path.starts_with(crate::proxy::API_PREFIX) {
        return None;
    }
    let resp = match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "/.iwa/healthz") => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"ok\n")));
            r.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        _ => iwa::error::error_page(
            StatusCode::NOT_FOUND,
            "not_found",
            "No such gateway endpoint.",
            req.headers().get(http::header::ACCEPT),
        ),
    };
    Some(resp)
}

/// Serves until `shutdown` resolves, then drains in-flight requests for at most
/// `drain`.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    // Each connection holds a receiver; on shutdown we flip the flag and wait until
    // every receiver is gone (hyper-util's GracefulShutdown does not take upgradeable
    // connections).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(256 * 1024);
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
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(
            async move {
                let Some(tls) = &gateway.tls else {
                    let conn_auth = ConnectionAuth::default();
                    serve_connection(
                        TokioIo::new(stream),
                        peer,
                        &gateway,
                        &builder,
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
                            return;
                        }
                        Err(_) => {
                            debug!("TLS handshake timed out");
                            return;
                        }
                    },
                    _ = stop.changed() => return,
                };
                let conn_auth = match &tls.binding {
                    Some(b) => ConnectionAuth::with_channel_binding(b.clone()),
                    None => ConnectionAuth::default(),
                };
                serve_connection(
                    TokioIo::new(stream),
                    peer,
                    &gateway,
                    &builder,
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
}

/// Serves one accepted (and, with TLS, handshaken) connection until it ends or the
/// gateway stops. `conn_auth` is the connection's own login memory (NTLM; Kerberos
/// with `connection_bound`), carrying its channel bindings on TLS.
async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    gateway: &Gateway,
    builder: &http1::Builder,
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
    let anonymous_proxy = proxy_for_anonymous.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let mut authed = authed.clone();
        let mut anonymous_proxy = anonymous_proxy.clone();
        let headers = headers.clone();
        let path = req.uri().path();
        // The gateway's API always requires a login, whatever the routes say.
        let route = if path.starts_with(crate::proxy::API_PREFIX) {
            None
        } else {
            routes.iter().find(|r| r.covers(path)).cloned()
        };
        let conn_auth = conn_auth.clone();
        async move {
            if let Some(r) = internal(&req) {
                return Ok::<_, Infallible>(r.map(Either::Right));
            }
            headers.strip(req.headers_mut());
            let started = access_log.then(|| {
                (
                    Instant::now(),
                    req.method().clone(),
                    req.uri().path().to_owned(),
                )
            });
            let auth_mode = route.as_ref().map_or(RouteAuth::Required, |r| r.auth);
            if let Some(route) = route {
                if !route.rule.is_open() {
                    req.extensions_mut().insert(RouteRule(route));
                }
            }
            let resp: Response<GatewayBody> = match auth_mode {
                RouteAuth::Anonymous => {
                    req.headers_mut().remove(http::header::AUTHORIZATION);
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
            if let Some((t0, method, path)) = started {
                let user = resp
                    .extensions()
                    .get::<AuthenticatedUser>()
                    .map_or("-", |u| u.0.as_str());
                info!(target: "iwa::access", %method, path, status = resp.status().as_u16(), user, micros = t0.elapsed().as_micros() as u64);
            }
            Ok(resp)
        }
    });
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        debug!("connection ended with error: {e}");
    }
}

/// Re-reads validator files on every SIGHUP, for the life of the process.
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
