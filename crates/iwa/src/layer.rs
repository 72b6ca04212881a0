//! A tower `Layer` that authenticates every request with an [`Authenticator`].
//!
//! On success the [`Identity`] goes into the request's extensions (read it with the
//! axum extractor, or `req.extensions().get::<Identity>()`), the `Authorization` header
//! is removed, and the mutual-authentication token is added to the response. Identity
//! headers sent by the client are always stripped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, AUTHORIZATION, SET_COOKIE, WWW_AUTHENTICATE};
use http::{Request, Response};
use http_body_util::{Either, Full};
use tower_layer::Layer;
use tower_service::Service;
use tracing::{debug, info, warn};

use crate::auth::{Authenticated, Authenticator, Outcome};
use crate::error::{unauthenticated_response, AuthError, Challenge};
use crate::headers::IdentityHeaders;
use crate::identity::{AuthMethod, Identity};
use crate::session::{SessionLookup, SessionSettings};

/// Whether a request must be authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// No credentials → 401 with a challenge.
    #[default]
    Required,
    /// Authenticate when credentials are offered; otherwise pass on anonymously (the
    /// handler may still ask for a login by answering 401, or by extracting
    /// [`Identity`], whose rejection is the challenge).
    Optional,
}

/// Put into the extensions of an anonymous request on an optional route, so a handler
/// (or the extractor's rejection) can issue the right challenge.
#[derive(Debug, Clone)]
pub struct ChallengeHint(pub Challenge);

pub use crate::conn::ConnectionAuth;

/// Put into the extensions of a response to an authenticated request (for access
/// logs): the user as `X-Remote-User` shows it. Never sent to the client.
#[derive(Debug, Clone)]
pub struct AuthenticatedUser(pub String);

/// What the layer did with a request's credentials, in the extensions of every response
/// it makes or passes on (for metrics). Never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthEvent {
    /// A handshake completed: a new login.
    Login(AuthMethod),
    /// The session cookie of an earlier login stood in for a handshake.
    Session(AuthMethod),
    /// An earlier login on the same connection stood in (NTLM; Kerberos with
    /// `connection_bound`).
    Connection(AuthMethod),
    /// The fake development identity.
    Fake,
    /// A handshake leg: 401 with the server's next token.
    Continue,
    /// No credentials: a 401 challenge, or an anonymous pass on an optional route.
    NoCredentials,
    /// Credentials refused, with the error page's code ([`AuthError::code`]).
    Failed(&'static str),
}

/// The response body: the inner service's, or one of ours.
pub type IwaBody<B> = Either<B, Full<Bytes>>;

/// Adds authentication to a service.
#[derive(Clone)]
pub struct IwaLayer {
    auth: Arc<Authenticator>,
    headers: Arc<IdentityHeaders>,
    policy: Policy,
    connection_bound: bool,
    session: Option<Arc<SessionSettings>>,
    fake: Option<Arc<Identity>>,
}

impl IwaLayer {
    pub fn new(auth: Arc<Authenticator>) -> Self {
        IwaLayer {
            auth,
            headers: Arc::new(IdentityHeaders::default()),
            policy: Policy::Required,
            connection_bound: false,
            session: None,
            fake: None,
        }
    }

    /// Development only: every request that would authenticate is `identity`
    /// (`X-Remote-Auth-Method: Fake`), with no Kerberos or NTLM at all. Rules, routes and
    /// header stripping still apply.
    pub fn fake(mut self, identity: Option<Arc<Identity>>) -> Self {
        self.fake = identity;
        self
    }

    /// Issue a session cookie after each login and accept it instead of a handshake.
    pub fn session(mut self, session: Option<Arc<SessionSettings>>) -> Self {
        self.session = session;
        self
    }

    /// Remember a login for the rest of its connection (needs [`ConnectionAuth`] in the
    /// request extensions; off by default).
    pub fn connection_bound(mut self, on: bool) -> Self {
        self.connection_bound = on;
        self
    }

    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Use other names for the identity headers that get stripped.
    pub fn identity_headers(mut self, headers: Arc<IdentityHeaders>) -> Self {
        self.headers = headers;
        self
    }
}

impl<S> Layer<S> for IwaLayer {
    type Service = IwaService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        IwaService {
            inner,
            auth: self.auth.clone(),
            headers: self.headers.clone(),
            policy: self.policy,
            connection_bound: self.connection_bound,
            session: self.session.clone(),
            fake: self.fake.clone(),
        }
    }
}

/// The service made by [`IwaLayer`].
#[derive(Clone)]
pub struct IwaService<S> {
    inner: S,
    auth: Arc<Authenticator>,
    headers: Arc<IdentityHeaders>,
    policy: Policy,
    connection_bound: bool,
    session: Option<Arc<SessionSettings>>,
    fake: Option<Arc<Identity>>,
}

fn log_failure(err: &AuthError) {
    // One line per failure, in words an admin can act on; tokens are never logged.
    warn!(target: "iwa::audit", event = "auth_failed", code = err.code(), "authentication failed: {err}");
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for IwaService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = Response<IwaBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // The service that was polled ready goes into the future; its clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        let headers = self.headers.clone();
        // A server can choose the policy per request (per route) with an extension.
        let policy = req
            .extensions()
            .get::<Policy>()
            .copied()
            .unwrap_or(self.policy);
        let connection_bound = self.connection_bound;
        let conn = req.extensions().get::<ConnectionAuth>().cloned();
        let session = self.session.clone();
        let fake = self.fake.clone();
        Box::pin(async move {
            headers.strip(req.headers_mut());
            let mut event = None;
            let mut set_cookie: Option<HeaderValue> = None;
            // A session cookie stands in for a handshake when no new credentials come.
            let from_session = match &session {
                Some(s) if !req.headers().contains_key(AUTHORIZATION) => {
                    match s.lookup(req.headers(), SystemTime::now()) {
                        SessionLookup::Valid { identity, renewed } => {
                            set_cookie = renewed;
                            Some(identity)
                        }
                        SessionLookup::Invalid(e) => {
                            debug!("ignoring session cookie: {e}");
                            set_cookie = s.clear();
                            None
                        }
                        SessionLookup::Absent => None,
                    }
                }
                _ => None,
            };
            if let Some(s) = &session {
                s.strip(req.headers_mut());
            }
            let outcome = if let Some(identity) = fake.as_deref().cloned() {
                event = Some(AuthEvent::Fake);
                Outcome::Authenticated(Authenticated {
                    identity,
                    response_header: None,
                })
            } else if let Some(identity) = from_session {
                event = Some(AuthEvent::Session(identity.method));
                Outcome::Authenticated(Authenticated {
                    identity,
                    response_header: None,
                })
            } else {
                match auth.authenticate(req.headers(), conn.as_ref()).await {
                    // No new credentials on a connection that already authenticated: NTLM
                    // logins always last for their connection (as with IIS), Kerberos ones
                    // only when configured.
                    Outcome::NoCredentials => {
                        match conn.as_ref().and_then(ConnectionAuth::identity) {
                            Some(identity)
                                if connection_bound || identity.method == AuthMethod::Ntlm =>
                            {
                                event = Some(AuthEvent::Connection(identity.method));
                                Outcome::Authenticated(Authenticated {
                                    identity,
                                    response_header: None,
                                })
                            }
                            _ => Outcome::NoCredentials,
                        }
                    }
                    // A new Authorization header starts over: success replaces the
                    // connection's identity, failure forgets it.
                    other => {
                        if let Some(conn) = &conn {
                            match &other {
                                Outcome::Authenticated(a) => {
                                    conn.set_identity(Some(a.identity.clone()))
                                }
                                Outcome::Continue(_) => {}
                                _ => conn.set_identity(None),
                            }
                        }
                        other
                    }
                }
            };
            req.headers_mut().remove(AUTHORIZATION);
            let accept = req.headers().get(ACCEPT).cloned();
            match outcome {
                Outcome::Authenticated(done) => {
                    let event = event.unwrap_or(AuthEvent::Login(done.identity.method));
                    if let AuthEvent::Login(_) = event {
                        info!(target: "iwa::audit", event = "auth_ok", user = %done.identity.principal, method = %done.identity.method);
                        if let Some(s) = &session {
                            set_cookie = s.issue(&done.identity, SystemTime::now());
                        }
                    }
                    let user = AuthenticatedUser(done.identity.remote_user());
                    req.extensions_mut().insert(done.identity);
                    let mut resp = inner.call(req).await?.map(Either::Left);
                    resp.extensions_mut().insert(user);
                    resp.extensions_mut().insert(event);
                    if let Some(v) = done.response_header {
                        resp.headers_mut().append(WWW_AUTHENTICATE, v);
                    }
                    if let Some(c) = set_cookie {
                        resp.headers_mut().append(SET_COOKIE, c);
                    }
                    Ok(resp)
                }
                Outcome::Continue(challenge) => {
                    let mut resp = unauthenticated_response(
                        None,
                        &Challenge { values: Vec::new() },
                        accept.as_ref(),
                    );
                    resp.headers_mut().insert(WWW_AUTHENTICATE, challenge);
                    resp.extensions_mut().insert(AuthEvent::Continue);
                    Ok(resp.map(Either::Right))
                }
                Outcome::NoCredentials if policy == Policy::Optional => {
                    req.extensions_mut()
                        .insert(ChallengeHint(auth.challenge().clone()));
                    let resp = inner.call(req).await?;
                    // IIS's anonymous + Windows auth: the app decides when a login is
                    // needed by answering 401; that answer becomes our challenge.
                    let mut resp = if resp.status() == http::StatusCode::UNAUTHORIZED {
                        unauthenticated_response(None, auth.challenge(), accept.as_ref())
                            .map(Either::Right)
                    } else {
                        resp.map(Either::Left)
                    };
                    resp.extensions_mut().insert(AuthEvent::NoCredentials);
                    Ok(resp)
                }
                Outcome::NoCredentials => {
                    let mut resp =
                        unauthenticated_response(None, auth.challenge(), accept.as_ref());
                    resp.extensions_mut().insert(AuthEvent::NoCredentials);
                    Ok(resp.map(Either::Right))
                }
                Outcome::Failed(err) => {
                    log_failure(&err);
                    let mut resp =
                        unauthenticated_response(Some(&err), auth.challenge(), accept.as_ref());
                    resp.extensions_mut().insert(AuthEvent::Failed(err.code()));
                    Ok(resp.map(Either::Right))
                }
            }
        })
    }
}

/// Reads the identity the layer put into a request, if any.
pub fn identity_of<B>(req: &Request<B>) -> Option<&Identity> {
    req.extensions().get::<Identity>()
}
