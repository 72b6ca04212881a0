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
    /// For `/.iwa/api/whoami`: the impersonation grants and the route rules that make up
    /// an identity's permissions.
    pub impersonation: Arc<iwa::impersonation::ImpersonationPolicy>,
    pub rules: Arc<Vec<iwa::access::AccessRule>>,
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
            impersonation: Arc::default(),
            rules: Arc::default(),
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
            tracing::info!(target: "iwa::audit", event = "access_denied", user = %identity.remote_user(), path = req.uri().path(), %reason);
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

/// The gateway's JSON API; requests to it are authenticated like any other (the
/// listener forces `auth = required` there) and never forwarded.
pub const API_PREFIX: &str = "/.iwa/api/";

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl ProxyService {
    fn api(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let Some(id) = req.extensions().get::<Identity>() else {
            return json(
                StatusCode::UNAUTHORIZED,
                &serde_json::json!({"error": "authentication required", "code": "authentication_required"}),
            );
        };
        match (req.method(), &req.uri().path()[API_PREFIX.len()..]) {
            (&http::Method::GET, "whoami") => {
                use iwa::impersonation::{permissions, Permission};
                let perms = permissions(id, &self.upstream.impersonation, &self.upstream.rules);
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "user": id.remote_user(),
                        "identity": id,
                        "effective": id,
                        "impersonating": false,
                        "permissions": {
                            "allow_impersonation": perms.contains(&Permission::AllowImpersonation),
                            "increase_permissions": perms.contains(&Permission::IncreasePermissions),
                        },
                    }),
                )
            }
            _ => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "no such API endpoint", "code": "not_found"}),
            ),
        }
    }

    async fn forward(self, mut req: Request<Incoming>) -> Response<ProxyBody> {
        let accept = req.headers().get(header::ACCEPT).cloned();
        if req.uri().path().starts_with(API_PREFIX) {
            return self.api(&req).map(Either::Right);
        }
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
            h.insert("x-forwarded-host", host);
        }
        // Identity: reserved names were stripped by the auth layer; set ours.
        self.upstream.identity_headers.strip(h);
        if let Some(id) = parts.extensions.get::<Identity>() {
            self.upstream.identity_headers.apply(id, h);
            if let Some(signer) = &self.upstream.assertion {
                let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
                match signer.sign(
                    id,
                    None,
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
                remove_hop_by_hop(resp.headers_mut());
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                if let Some(p) = proto {
                    resp.headers_mut().insert(header::UPGRADE, p);
                }
                return resp.map(Either::Left);
            }
        }
        remove_hop_by_hop(resp.headers_mut());
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
