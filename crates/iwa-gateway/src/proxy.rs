//! Forwarding to the backend: streamed bodies, hop-by-hop headers removed, identity
//! and `X-Forwarded-*` headers set, WebSocket/Upgrade passed through.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use iwa::error::error_page;
use iwa::{Identity, IdentityHeaders};
use tower_service::Service;
use tracing::{debug, warn};

pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The access rule of the request's route, put into its extensions by the listener.
#[derive(Debug, Clone)]
pub struct RouteRule(pub Arc<crate::config::Route>);

/// The shared, per-process part of the proxy.
pub struct Upstream {
    client: Client<HttpConnector, Incoming>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Path prefix of the backend URL, without a trailing slash ("" for none).
    prefix: String,
    identity_headers: Arc<IdentityHeaders>,
    /// Signs `X-Iwa-Assertion` for authenticated requests, when configured.
    pub assertion: Option<Arc<iwa::assertion::Signer>>,
    /// `[session]`: its cookie is a bearer credential, removed before forwarding on
    /// every route (anonymous ones included).
    pub session: Option<Arc<iwa::session::SessionSettings>>,
    /// Resolves impersonation cookies, when anyone may impersonate.
    pub impersonator: Option<Arc<iwa::impersonation::Impersonator>>,
    /// The gateway's own pages and API under `/.iwa/` ([`crate::admin`]).
    pub admin: Option<axum::Router>,
    /// `[backend] command`: the hosted app's port and pairing token ([`crate::hosting`]).
    pub hosted: Option<Arc<crate::hosting::AppHandle>>,
}

impl Upstream {
    pub fn new(
        url: &Uri,
        connect_timeout: Duration,
        identity_headers: Arc<IdentityHeaders>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(usize::MAX)
            .build(connector);
        let prefix = url.path().trim_end_matches('/').to_owned();
        Upstream {
            client,
            scheme: url.scheme().cloned().unwrap_or(http::uri::Scheme::HTTP),
            // Config validation guarantees an authority; `localhost` is a harmless
            // stand-in that is never reached in practice.
            authority: url
                .authority()
                .cloned()
                .unwrap_or_else(|| http::uri::Authority::from_static("localhost")),
            prefix,
            identity_headers,
            assertion: None,
            session: None,
            impersonator: None,
            admin: None,
            hosted: None,
        }
    }

    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        // Scheme, authority and path are cheap (shared-bytes) clones; only a backend
        // path prefix costs a new string.
        let path_and_query = if self.prefix.is_empty() {
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"))
        } else {
            let pq = uri.path_and_query().map_or("/", |p| p.as_str());
            format!("{}{}", self.prefix, pq).parse()?
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts)?)
    }
}

/// The per-connection proxy service (the innermost service of a connection's stack).
#[derive(Clone)]
pub struct ProxyService {
    pub upstream: Arc<Upstream>,
    pub peer: SocketAddr,
    pub proto: &'static str,
    /// `X-Forwarded-For` for this connection, computed once.
    pub peer_header: Option<HeaderValue>,
}

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers (RFC 9110 §7.6.1), including those named in `Connection`.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// A backend response's headers before they go to the client: hop-by-hop headers go,
/// and so does the hosted app's pairing token, should the app echo it (the token is
/// what lets the app tell iwa's requests from others; a client must never learn it).
fn clean_response_headers(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    headers.remove(crate::hosting::PAIRING_HEADER);
}

/// The protocol a request asks to switch to, if it is an upgrade request.
fn upgrade_protocol(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if wants {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

pub fn bad_gateway(accept: Option<&HeaderValue>, why: &str) -> Response<Full<Bytes>> {
    error_page(
        StatusCode::BAD_GATEWAY,
        "backend_unavailable",
        &format!("The application behind this gateway is not answering ({why})."),
        accept,
    )
}

impl Service<Request<Incoming>> for ProxyService {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(req).await) })
    }
}

/// Applies the route's access rule to the authenticated identity: `None` to go on,
/// or the 403 response. Anonymous requests (optional routes) are not restricted here.
fn authorize(
    req: &Request<Incoming>,
    accept: Option<&HeaderValue>,
) -> Option<Response<Full<Bytes>>> {
    let rule = req.extensions().get::<RouteRule>()?;
    let identity = req.extensions().get::<Identity>()?;
    match iwa::access::decide(identity, &rule.0.rule) {
        iwa::access::Decision::Allow => None,
        iwa::access::Decision::Deny { reason } => {
            crate::audit::access_denied(identity, req.uri().path(), &reason);
            Some(error_page(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!(
                    "You are signed in as {}, but this page {reason}.",
                    identity.remote_user()
                ),
                accept,
            ))
        }
    }
}

/// The gateway's JSON API (see [`crate::admin`]); requests under `/.iwa/` other than
/// `healthz` are authenticated like any other (the listener forces `auth = required`
/// there) and never forwarded.
pub const API_PREFIX: &str = "/.iwa/api/";
/// Everything under it is the gateway's own.
pub const ADMIN_PREFIX: &str = "/.iwa/";

/// Whether `path` is the gateway's own (the admin page and API).
pub fn is_admin_path(path: &str) -> bool {
    path.starts_with(ADMIN_PREFIX) || path == "/.iwa"
}

/// Largest admin response body buffered (pages and JSON are a few KiB).
const MAX_ADMIN_RESPONSE: usize = 1024 * 1024;

impl ProxyService {
    /// Reads the impersonation cookie for the authenticated user (if any): the caller,
    /// and a `Set-Cookie` to send back (renewal or clearing an ignored cookie). The
    /// cookie never reaches the backend.
    fn resolve_caller(
        &self,
        req: &mut Request<Incoming>,
    ) -> (Option<crate::admin::Caller>, Option<HeaderValue>) {
        use iwa::impersonation::Resolution;
        // The common case costs nothing: not the gateway's own page, and no
        // impersonation cookie (then the identity is not even cloned).
        let admin = is_admin_path(req.uri().path());
        let imp = self
            .upstream
            .impersonator
            .as_ref()
            .filter(|imp| imp.has_cookie(req.headers()));
        if !admin && imp.is_none() {
            return (None, None);
        }
        let Some(real) = req.extensions().get::<Identity>().cloned() else {
            // Anonymous: nothing to honour, but the ticket still never reaches the app.
            if let Some(imp) = imp {
                imp.strip(req.headers_mut());
            }
            return (None, None);
        };
        let Some(imp) = imp else {
            return (Some(crate::admin::Caller { real, active: None }), None);
        };
        let resolution = imp.resolve(&real, req.headers(), std::time::SystemTime::now());
        imp.strip(req.headers_mut());
        let (active, cookie) = match resolution {
            Resolution::None => (None, None),
            Resolution::Active(mut a) => {
                let renewed = a.renewed.take();
                (Some(a), renewed)
            }
            Resolution::Ignored { why, clear } => {
                crate::audit::impersonation_ignored(&real, &why);
                (None, clear)
            }
        };
        (Some(crate::admin::Caller { real, active }), cookie)
    }

    async fn admin(
        &self,
        mut req: Request<Incoming>,
        caller: Option<crate::admin::Caller>,
    ) -> Response<Full<Bytes>> {
        let accept = req.headers().get(header::ACCEPT).cloned();
        let (Some(router), Some(caller)) = (&self.upstream.admin, caller) else {
            return error_page(
                StatusCode::UNAUTHORIZED,
                "authentication_required",
                "Sign in to use the gateway's pages.",
                accept.as_ref(),
            );
        };
        req.extensions_mut().insert(caller);
        let mut router = router.clone();
        let resp = match std::future::poll_fn(|cx| {
            tower_service::Service::<Request<Incoming>>::poll_ready(&mut router, cx)
        })
        .await
        {
            Ok(()) => router.call(req).await,
            Err(never) => match never {},
        };
        let Ok(resp) = resp;
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, MAX_ADMIN_RESPONSE).await {
            Ok(bytes) => Response::from_parts(parts, Full::new(bytes)),
            Err(e) => {
                warn!("admin response failed: {e}");
                error_page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "The gateway could not build this page.",
                    accept.as_ref(),
                )
            }
        }
    }

    async fn forward(self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let (caller, set_cookie) = self.resolve_caller(&mut req);
        let mut resp = if is_admin_path(req.uri().path()) {
            self.admin(req, caller).await.map(Either::Right)
        } else {
            match caller {
                Some(crate::admin::Caller {
                    real,
                    active: Some(active),
                }) => {
                    let method = req.method().clone();
                    let path = req.uri().path().to_owned();
                    req.extensions_mut().insert(active.target.clone());
                    let resp = self.forward_as(req, Some(&real)).await;
                    crate::audit::impersonation_request(
                        &real,
                        &active.target,
                        &active.ticket_id,
                        &method,
                        &path,
                        resp.status().as_u16(),
                    );
                    resp
                }
                _ => self.forward_as(req, None).await,
            }
        };
        if let Some(c) = set_cookie {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        resp
    }

    /// Forwards as the request's `Identity` extension (the effective identity);
    /// `impersonator` is the real user while impersonating.
    async fn forward_as(
        &self,
        mut req: Request<Incoming>,
        impersonator: Option<&Identity>,
    ) -> Response<ProxyBody> {
        let accept = req.headers().get(header::ACCEPT).cloned();
        if let Some(denied) = authorize(&req, accept.as_ref()) {
            return denied.map(Either::Right);
        }
        let upgrade = upgrade_protocol(req.headers());
        let target = match self.upstream.target(req.uri()) {
            Ok(t) => t,
            Err(e) => {
                warn!("cannot build the backend URL: {e}");
                return bad_gateway(accept.as_ref(), "bad URL").map(Either::Right);
            }
        };
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let h = &mut parts.headers;
        remove_hop_by_hop(h);
        h.remove(header::AUTHORIZATION);
        if let Some(session) = &self.upstream.session {
            session.strip(h);
        }
        // Forwarding headers are set by us, never trusted from the client.
        h.remove(header::FORWARDED);
        h.remove("x-forwarded-for");
        h.remove("x-forwarded-proto");
        h.remove("x-forwarded-host");
        if let Some(v) = &self.peer_header {
            h.insert("x-forwarded-for", v.clone());
        }
        h.insert("x-forwarded-proto", HeaderValue::from_static(self.proto));
        if let Some(host) = host {
            // HTTP/2 clients send `:authority`, no Host: the app gets it as Host.
            if !h.contains_key(header::HOST) {
                h.insert(header::HOST, host.clone());
            }
            h.insert("x-forwarded-host", host);
        }
        // Identity: reserved names were stripped by the auth layer; set ours.
        self.upstream.identity_headers.strip(h);
        if let Some(id) = parts.extensions.get::<Identity>() {
            self.upstream.identity_headers.apply(id, h);
            let impersonator = impersonator.map(Identity::remote_user);
            if let Some(real) = &impersonator {
                self.upstream.identity_headers.apply_impersonator(real, h);
            }
            if let Some(signer) = &self.upstream.assertion {
                // The path as the backend receives it (with the backend URL's prefix),
                // which is what it compares `htu` with.
                let pq = target.path_and_query().map_or("/", |p| p.as_str());
                match signer.sign(
                    id,
                    impersonator.as_deref(),
                    parts.method.as_str(),
                    pq,
                    std::time::SystemTime::now(),
                ) {
                    Ok(token) => {
                        if let Ok(v) = HeaderValue::from_str(&token) {
                            h.insert("x-iwa-assertion", v);
                        }
                    }
                    Err(e) => warn!("cannot sign the identity assertion: {e}"),
                }
            }
        }
        if let Some(proto) = &upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(header::UPGRADE, proto.clone());
        }
        parts.uri = target;
        parts.version = http::Version::HTTP_11;
        // A hosted app: its current port and `X-Iwa-Pairing-Token`, or 503.
        if let Some(app) = &self.upstream.hosted {
            if let Err(unavailable) = app.direct(&mut parts) {
                return unavailable.response(accept.as_ref()).map(Either::Right);
            }
        }
        let out = Request::from_parts(parts, body);

        let mut resp = match self.upstream.client.request(out).await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_connect() {
                    "connection refused or timed out"
                } else {
                    "connection failed"
                };
                warn!(backend = %self.upstream.authority, "backend request failed: {e:?}");
                return bad_gateway(accept.as_ref(), why).map(Either::Right);
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client_upgrade, backend_upgrade) {
                        Ok((client, backend)) => {
                            let mut client = TokioIo::new(client);
                            let mut backend = TokioIo::new(backend);
                            if let Err(e) =
                                tokio::io::copy_bidirectional(&mut client, &mut backend).await
                            {
                                debug!("upgraded connection ended: {e}");
                            }
                        }
                        Err(e) => warn!("upgrade failed: {e}"),
                    }
                });
                // Keep Connection/Upgrade on a 101 so the client switches too.
                let proto = resp.headers().get(header::UPGRADE).cloned();
                clean_response_headers(resp.headers_mut());
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Some(p) = proto {
                    resp.headers_mut().insert(header::UPGRADE, p);
                }
                return resp.map(Either::Left);
            }
        }
        clean_response_headers(resp.headers_mut());
        resp.map(Either::Left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_including_listed_ones() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic x"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn pairing_token_never_reaches_the_client() {
        let mut h = HeaderMap::new();
        h.insert("x-iwa-pairing-token", HeaderValue::from_static("secret"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        clean_response_headers(&mut h);
        assert!(!h.contains_key("x-iwa-pairing-token"));
        assert!(h.contains_key(header::CONTENT_TYPE));
    }

    #[test]
    fn upgrade_detection() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(upgrade_protocol(&h).is_none());
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        assert_eq!(upgrade_protocol(&h).unwrap(), "websocket");
    }

    #[tokio::test]
    async fn target_keeps_prefix_and_query() {
        let up = Upstream::new(
            &"http://127.0.0.1:5000/app/".parse().unwrap(),
            Duration::from_secs(1),
            Arc::new(IdentityHeaders::default()),
        );
        let t = up.target(&"/x/y?q=1".parse().unwrap()).unwrap();
        assert_eq!(t.to_string(), "http://127.0.0.1:5000/app/x/y?q=1");
        let up = Upstream::new(
            &"http://127.0.0.1:5000".parse().unwrap(),
            Duration::from_secs(1),
            Arc::new(IdentityHeaders::default()),
        );
        let t = up.target(&"/".parse().unwrap()).unwrap();
        assert_eq!(t.to_string(), "http://127.0.0.1:5000/");
    }
}
