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
use hyper_util::rt::TokioIo;
use iwa::error::error_page;
use iwa::{Identity, IdentityHeaders};
use tower_service::Service;
use tracing::{debug, warn};

use crate::backend::{BackendBody, BackendClient};

pub type ProxyBody = Either<BackendBody, Full<Bytes>>;

/// The access rule of the request's route, put into its extensions by the listener.
#[derive(Debug, Clone)]
pub struct RouteRule(pub Arc<crate::config::Route>);

/// The shared, per-process part of the proxy.
pub struct Upstream {
    client: BackendClient,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// Path prefix of the backend URL, without a trailing slash ("" for none).
    prefix: String,
    identity_headers: Arc<IdentityHeaders>,
    /// Signs `X-Iwa-Assertion` for authenticated requests, when configured.
    pub assertion: Option<Arc<iwa::assertion::Signer>>,
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
        let client = BackendClient::new(connect_timeout);
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

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_IWA_ASSERTION: HeaderName = HeaderName::from_static("x-iwa-assertion");

/// Hop-by-hop by definition (RFC 9110 §7.6.1, and two older spellings), in the order
/// of the match in [`remove_hop_by_hop`].
static HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

/// Removes hop-by-hop headers, including those named in `Connection`. One pass over the
/// names present finds them (most requests have none, most responses only
/// `Connection`), instead of one lookup per name that could be there.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut present = 0u16;
    for name in headers.keys() {
        // By the name's text: one length-first match, not nine comparisons.
        let i = match name.as_str() {
            "connection" => 0,
            "proxy-authenticate" => 1,
            "proxy-authorization" => 2,
            "te" => 3,
            "trailer" => 4,
            "transfer-encoding" => 5,
            "upgrade" => 6,
            "keep-alive" => 7,
            "proxy-connection" => 8,
            _ => continue,
        };
        present |= 1 << i;
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // The values are cheap handles on the request's bytes; the list is empty unless
        // `Connection` came more than once.
        let mut values = headers.get_all(header::CONNECTION).iter();
        let first = values.next().cloned();
        let more: Vec<HeaderValue> = values.cloned().collect();
        for v in first.iter().chain(&more) {
            let Ok(v) = v.to_str() else { continue };
            for name in v.split(',').map(str::trim) {
                // `keep-alive` (the usual one) goes below anyway, and a token that is no
                // valid header name matches nothing.
                if !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(name))
                {
                    headers.remove(name);
                }
            }
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
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

/// The `Host` header for `authority`: host, and port unless it is HTTP's default.
fn host_header(authority: &http::uri::Authority) -> Option<HeaderValue> {
    match authority.port_u16() {
        Some(80) | None => HeaderValue::from_str(authority.host()).ok(),
        Some(port) => HeaderValue::from_str(&format!("{}:{port}", authority.host())).ok(),
    }
}

/// The request-target hyper writes as it is: origin-form (`/path?query`) to a server,
/// authority-form for `CONNECT`.
fn request_target(method: &http::Method, uri: &Uri, authority: &http::uri::Authority) -> Uri {
    let mut parts = http::uri::Parts::default();
    if method == http::Method::CONNECT {
        parts.authority = Some(authority.clone());
    } else {
        parts.path_and_query = Some(
            uri.path_and_query()
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
    }
    Uri::from_parts(parts).unwrap_or_default()
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
            // Boxed: the gateway's own pages are rare next to proxied requests, and
            // their future would make every request's larger.
            Box::pin(self.admin(req, caller)).await.map(Either::Right)
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
        // Forwarding headers are set by us, never trusted from the client (`insert`
        // replaces every value a client sent under the name).
        h.remove(header::FORWARDED);
        match &self.peer_header {
            Some(v) => h.insert(X_FORWARDED_FOR, v.clone()),
            None => h.remove(X_FORWARDED_FOR),
        };
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(self.proto));
        match host {
            Some(host) => {
                // HTTP/2 clients send `:authority`, no Host: the app gets it as Host.
                if !h.contains_key(header::HOST) {
                    h.insert(header::HOST, host.clone());
                }
                h.insert(X_FORWARDED_HOST, host)
            }
            None => h.remove(X_FORWARDED_HOST),
        };
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
                            h.insert(X_IWA_ASSERTION, v);
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
        let Some(authority) = parts.uri.authority().cloned() else {
            return bad_gateway(accept.as_ref(), "bad URL").map(Either::Right);
        };
        if !parts.headers.contains_key(header::HOST) {
            // No Host from the client: the backend's own, as a client would send it.
            if let Some(v) = host_header(&authority) {
                parts.headers.insert(header::HOST, v);
            }
        }
        parts.uri = request_target(&parts.method, &parts.uri, &authority);
        let out = Request::from_parts(parts, body);

        let mut resp = match self.upstream.client.send(&authority, out).await {
            Ok(r) => r,
            Err(e) => {
                let why = if e.is_connect() {
                    "connection refused or timed out"
                } else {
                    "connection failed"
                };
                warn!(backend = %authority, "backend request failed: {e}");
                return bad_gateway(accept.as_ref(), why).map(Either::Right);
            }
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let backend_upgrade = hyper::upgrade::on(&mut resp);
                // The connection now belongs to the tunnel.
                resp.body_mut().forget_connection();
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
    fn every_connection_header_and_every_listed_name_goes() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Close"));
        h.append(
            header::CONNECTION,
            HeaderValue::from_static(" X-A ,UPGRADE,, bad name"),
        );
        for name in [
            "close",
            "x-a",
            "upgrade",
            "te",
            "trailer",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "transfer-encoding",
            "accept",
            "x-b",
        ] {
            h.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        remove_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-b"]);
        // Nothing hop-by-hop: untouched.
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        h.insert(header::HOST, HeaderValue::from_static("x"));
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn request_line_and_host_for_the_backend() {
        let a: http::uri::Authority = "127.0.0.1:8080".parse().unwrap();
        let abs: Uri = "http://127.0.0.1:8080/app/x?q=1".parse().unwrap();
        assert_eq!(
            request_target(&http::Method::GET, &abs, &a).to_string(),
            "/app/x?q=1"
        );
        assert_eq!(
            request_target(&http::Method::CONNECT, &abs, &a).to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(host_header(&a).unwrap(), "127.0.0.1:8080");
        let a: http::uri::Authority = "app.internal:80".parse().unwrap();
        assert_eq!(host_header(&a).unwrap(), "app.internal");
        let a: http::uri::Authority = "[::1]:9000".parse().unwrap();
        assert_eq!(host_header(&a).unwrap(), "[::1]:9000");
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
