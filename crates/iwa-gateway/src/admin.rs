//! The gateway's own pages and API under `/.iwa/` (everything there but `healthz` is
//! behind a login and never forwarded):
//!
//! - `GET /.iwa/` — the admin page: who you are, and impersonation (form, banner, stop);
//!   plain HTML with no script and no external assets, so it works without JavaScript;
//! - `POST /.iwa/impersonate`, `POST /.iwa/stop` — the page's forms;
//! - `GET /.iwa/api/whoami`, `POST|DELETE /.iwa/api/impersonation` — the JSON API.
//!
//! State changes are CSRF-safe: they need a same-origin `Origin` or
//! `Sec-Fetch-Site: same-origin` (and the JSON API also `Content-Type:
//! application/json`, which no cross-site form can send). Pages forbid framing.
//!
//! The proxy resolves the impersonation cookie before calling in here and passes the
//! result as the [`Caller`] extension: the real user, the effective one, and the running
//! impersonation if any.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use iwa::directory::Directory;
use iwa::error::html_escape;
use iwa::impersonation::{permissions, Active, Impersonator, Permission};
use iwa::Identity;

use crate::audit::{self, unix};

/// Largest request body the API and forms take.
const MAX_BODY: usize = 16 * 1024;

/// Who is calling: put into the request's extensions by the proxy.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The authenticated user.
    pub real: Identity,
    /// The running impersonation, if any (its `target` is the effective identity).
    pub active: Option<Active>,
}

impl Caller {
    pub fn effective(&self) -> &Identity {
        self.active.as_ref().map_or(&self.real, |a| &a.target)
    }
}

/// What the admin routes need.
pub struct AdminState {
    pub impersonator: Option<Arc<Impersonator>>,
    pub directory: Option<Arc<Directory>>,
    pub policy: Arc<iwa::impersonation::ImpersonationPolicy>,
    pub rules: Arc<Vec<iwa::access::AccessRule>>,
    /// `http` or `https`: the scheme of this listener, for the same-origin check.
    pub scheme: &'static str,
    /// Fake identity mode is on (the page says so in a banner).
    pub fake: bool,
}

type AppState = Arc<AdminState>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/.iwa/", get(page))
        .route("/.iwa", get(page))
        .route("/.iwa/impersonate", post(form_start))
        .route("/.iwa/stop", post(form_stop))
        .route("/.iwa/api/whoami", get(whoami))
        .route(
            "/.iwa/api/impersonation",
            post(api_start).delete(api_stop).get(api_status),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

// --- responses -------------------------------------------------------------------------

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    let mut r = (status, value.to_string()).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn api_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        serde_json::json!({ "error": message, "code": code }),
    )
}

fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn with_cookie(mut r: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        r.headers_mut().append(header::SET_COOKIE, c);
    }
    r
}

fn see_other(location: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(location));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_cookie(r, cookie)
}

async fn not_found(headers: HeaderMap, uri: http::Uri) -> Response {
    if uri.path().starts_with(crate::proxy::API_PREFIX) || wants_json(&headers) {
        api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such gateway endpoint",
        )
    } else {
        html(
            StatusCode::NOT_FOUND,
            layout(
                "Not found",
                "<p>No such gateway page. The gateway's page is <a href=\"/.iwa/\">/.iwa/</a>.</p>",
            ),
        )
    }
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json") && !v.contains("text/html"))
}

// --- CSRF ------------------------------------------------------------------------------

/// Why a state-changing request was refused as possibly cross-site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrfRefusal {
    /// Neither `Origin` nor `Sec-Fetch-Site`: we cannot tell where it came from.
    NoOrigin,
    /// `Origin` names another site.
    ForeignOrigin,
    /// `Sec-Fetch-Site` is not `same-origin`.
    CrossSite,
}

impl CsrfRefusal {
    pub fn message(self) -> &'static str {
        match self {
            CsrfRefusal::NoOrigin => {
                "state changes need an Origin header naming this gateway (or Sec-Fetch-Site: same-origin)"
            }
            CsrfRefusal::ForeignOrigin => "the request comes from another site (Origin)",
            CsrfRefusal::CrossSite => "the request comes from another site (Sec-Fetch-Site)",
        }
    }
}

/// Same-origin check for state changes: every `Origin` / `Sec-Fetch-Site` present must
/// say "this site", and at least one must be present. The origin is compared with the
/// listener's scheme and the request's `Host`.
pub fn check_same_origin(headers: &HeaderMap, scheme: &str) -> Result<(), CsrfRefusal> {
    let origin = headers.get(header::ORIGIN);
    let site = headers.get("sec-fetch-site");
    if origin.is_none() && site.is_none() {
        return Err(CsrfRefusal::NoOrigin);
    }
    if let Some(site) = site {
        if site.as_bytes() != b"same-origin" {
            return Err(CsrfRefusal::CrossSite);
        }
    }
    if let Some(origin) = origin {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or(CsrfRefusal::ForeignOrigin)?;
        let origin = origin.to_str().map_err(|_| CsrfRefusal::ForeignOrigin)?;
        let expected_len = scheme.len() + 3 + host.len();
        let same = origin.len() == expected_len
            && origin
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
            && origin.get(scheme.len()..scheme.len() + 3) == Some("://")
            && origin
                .get(scheme.len() + 3..)
                .is_some_and(|h| h.eq_ignore_ascii_case(host));
        if !same {
            return Err(CsrfRefusal::ForeignOrigin);
        }
    }
    Ok(())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

// --- the impersonation operations, shared by the API and the forms ----------------------

/// A refused start: HTTP status, stable code, message.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Refused {
            status,
            code,
            message: message.into(),
        }
    }
}

async fn start(
    state: &AdminState,
    caller: &Caller,
    user: &str,
    reason: &str,
) -> Result<(HeaderValue, Identity), Refused> {
    let user = user.trim();
    let refuse = |r: Refused| {
        audit::impersonation_refused(&caller.real, user, r.code, &r.message);
        r
    };
    let Some(imp) = &state.impersonator else {
        return Err(refuse(Refused::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "impersonation is not enabled on this gateway",
        )));
    };
    // Refuse without a directory round trip when the caller may not impersonate at all.
    if !permissions(&caller.real, &state.policy, &state.rules)
        .contains(&Permission::AllowImpersonation)
    {
        return Err(refuse(Refused::new(
            StatusCode::FORBIDDEN,
            "not_permitted",
            "you do not hold AllowImpersonation",
        )));
    }
    if user.is_empty() || user.len() > 256 {
        return Err(refuse(Refused::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "name the user to act as, e.g. EXAMPLE\\bob",
        )));
    }
    let Some(directory) = &state.directory else {
        return Err(refuse(Refused::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            "no directory is configured to look up users",
        )));
    };
    let resolved = match directory.resolve_user(user).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return Err(refuse(Refused::new(
                StatusCode::NOT_FOUND,
                "unknown_user",
                format!("there is no user {user} in the directory"),
            )))
        }
        Err(e) => {
            return Err(refuse(Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "directory_unavailable",
                format!("cannot look up {user}: {e}"),
            )))
        }
    };
    let mut target = resolved.identity;
    if resolved.disabled {
        return Err(refuse(Refused::new(
            StatusCode::CONFLICT,
            "target_disabled",
            format!("the account {} is disabled", target.remote_user()),
        )));
    }
    // The request is authenticated the way the real user signed in.
    target.method = caller.real.method;
    target.expires = None;
    let started = imp
        .start(
            &caller.real,
            caller.active.is_some(),
            &target,
            reason,
            SystemTime::now(),
        )
        .map_err(|r| {
            let status = match r.code {
                "bad_request" | "reason_required" => StatusCode::BAD_REQUEST,
                "target_too_large" => StatusCode::CONFLICT,
                "internal" => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::FORBIDDEN,
            };
            refuse(Refused::new(status, r.code, r.message))
        })?;
    audit::impersonation_started(
        &caller.real,
        &target,
        reason.trim(),
        &started.ticket_id,
        started.expires_at,
    );
    Ok((started.set_cookie, target))
}

fn stop(state: &AdminState, caller: &Caller) -> Option<HeaderValue> {
    let imp = state.impersonator.as_ref()?;
    let stopped = imp.stop(caller.active.clone());
    if let Some(was) = &stopped.was {
        audit::impersonation_stopped(&caller.real, &was.target, &was.ticket_id);
    }
    stopped.clear
}

// --- JSON API --------------------------------------------------------------------------

fn status_json(caller: &Caller) -> serde_json::Value {
    match &caller.active {
        Some(a) => serde_json::json!({
            "target": a.target.remote_user(),
            "reason": a.reason,
            "started_at": unix(a.started_at),
            "expires_at": unix(a.expires_at),
        }),
        None => serde_json::Value::Null,
    }
}

async fn whoami(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    let perms = permissions(&caller.real, &state.policy, &state.rules);
    json(
        StatusCode::OK,
        serde_json::json!({
            "user": caller.real.remote_user(),
            "identity": caller.real,
            "effective": caller.effective(),
            "impersonating": caller.active.is_some(),
            "impersonation": status_json(&caller),
            "permissions": {
                "allow_impersonation": perms.contains(&Permission::AllowImpersonation),
                "increase_permissions": perms.contains(&Permission::IncreasePermissions),
            },
        }),
    )
}

async fn api_status(Extension(caller): Extension<Caller>) -> Response {
    json(StatusCode::OK, status_json(&caller))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRequest {
    user: String,
    #[serde(default)]
    reason: String,
}

/// The CSRF checks for the JSON API: the refusal, or `None` to go on.
fn api_guard(state: &AdminState, caller: &Caller, headers: &HeaderMap) -> Option<Response> {
    if !is_json(headers) {
        audit::csrf_refused(&caller.real, "content_type");
        return Some(api_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ));
    }
    let refused = check_same_origin(headers, state.scheme).err()?;
    audit::csrf_refused(&caller.real, refused.message());
    Some(api_error(
        StatusCode::FORBIDDEN,
        "cross_origin",
        refused.message(),
    ))
}

async fn api_start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = api_guard(&state, &caller, &headers) {
        return refused;
    }
    let req: StartRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                &format!("expected {{\"user\": \"DOMAIN\\\\user\", \"reason\": \"...\"}}: {e}"),
            )
        }
    };
    match start(&state, &caller, &req.user, &req.reason).await {
        Ok((cookie, _)) => with_cookie(StatusCode::NO_CONTENT.into_response(), Some(cookie)),
        Err(r) => api_error(r.status, r.code, &r.message),
    }
}

async fn api_stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = api_guard(&state, &caller, &headers) {
        return refused;
    }
    let cookie = stop(&state, &caller);
    with_cookie(StatusCode::NO_CONTENT.into_response(), cookie)
}

// --- the page --------------------------------------------------------------------------

async fn page(State(state): State<AppState>, Extension(caller): Extension<Caller>) -> Response {
    html(StatusCode::OK, render_page(&state, &caller, None))
}

async fn form_start(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = form_guard(&state, &caller, &headers) {
        return refused;
    }
    let mut user = String::new();
    let mut reason = String::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "user" => user = v.into_owned(),
            "reason" => reason = v.into_owned(),
            _ => {}
        }
    }
    match start(&state, &caller, &user, &reason).await {
        Ok((cookie, _)) => see_other("/.iwa/", Some(cookie)),
        Err(r) => html(r.status, render_page(&state, &caller, Some(&r.message))),
    }
}

async fn form_stop(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = form_guard(&state, &caller, &headers) {
        return refused;
    }
    let cookie = stop(&state, &caller);
    see_other("/.iwa/", cookie)
}

/// The CSRF check for the page's forms: the page with the refusal, or `None` to go on.
fn form_guard(state: &AdminState, caller: &Caller, headers: &HeaderMap) -> Option<Response> {
    let refused = check_same_origin(headers, state.scheme).err()?;
    audit::csrf_refused(&caller.real, refused.message());
    Some(html(
        StatusCode::FORBIDDEN,
        render_page(state, caller, Some(refused.message())),
    ))
}

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        title = html_escape(title),
    )
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}\
main{max-width:52rem;margin:0 auto;padding:1.5rem}\
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}\
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}\
th{width:11rem;font-weight:600}code{font-size:.9em;word-break:break-all}\
.banner{padding:1rem;border-radius:.4rem;margin:1rem 0;border:2px solid}\
.acting{background:#fff4d6;border-color:#b8860b}.fake{background:#ffe3e3;border-color:#b22222}\
.error{background:#ffe3e3;border-color:#b22222}\
label{display:block;font-weight:600;margin-top:.75rem}input[type=text]{width:100%;max-width:26rem;padding:.4rem;font:inherit}\
ul{margin:0;padding-left:1.2rem}\
button{display:block;margin-top:1rem;padding:.45rem 1.1rem;font:inherit;cursor:pointer}";

fn identity_table(id: &Identity) -> String {
    let row = |k: &str, v: &str| {
        format!(
            "<tr><th scope=\"row\">{k}</th><td>{}</td></tr>",
            html_escape(v)
        )
    };
    let mut out = String::from("<table>");
    out.push_str(&row("User", &id.remote_user()));
    out.push_str(&row("Domain", id.domain.as_deref().unwrap_or("-")));
    out.push_str(&row("Principal", &id.principal));
    out.push_str(&row("SID", id.sid.as_deref().unwrap_or("-")));
    out.push_str(&row("Signed in with", id.method.as_str()));
    out.push_str("<tr><th scope=\"row\">Groups</th><td>");
    if id.groups.is_empty() {
        out.push_str("none known");
    } else {
        out.push_str("<ul>");
        for g in &id.groups {
            out.push_str("<li>");
            match (&g.name, &g.sid) {
                (Some(n), Some(s)) => out.push_str(&format!(
                    "{} <code>{}</code>",
                    html_escape(n),
                    html_escape(s)
                )),
                (Some(n), None) => out.push_str(&html_escape(n)),
                (None, Some(s)) => out.push_str(&format!("<code>{}</code>", html_escape(s))),
                (None, None) => {}
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</td></tr></table>");
    out
}

/// The admin page for `caller`, with an optional error message from a form.
pub fn render_page(state: &AdminState, caller: &Caller, error: Option<&str>) -> String {
    let mut b = String::new();
    b.push_str("<h1>iwa gateway</h1>");
    if state.fake {
        b.push_str(
            "<div class=\"banner fake\" role=\"alert\"><strong>Fake identity mode.</strong> \
             Nobody is authenticated: every request is given the configured development \
             identity. Never use this in production.</div>",
        );
    }
    if let Some(e) = error {
        b.push_str(&format!(
            "<div class=\"banner error\" role=\"alert\" id=\"error\"><strong>Not done:</strong> {}</div>",
            html_escape(e)
        ));
    }
    let perms = permissions(&caller.real, &state.policy, &state.rules);
    match &caller.active {
        Some(a) => {
            b.push_str(&format!(
                "<div class=\"banner acting\" role=\"status\" id=\"impersonating\">\
                 <strong>You are acting as {target}.</strong> The application sees \
                 {target}; you are {real}. Reason: {reason}. Until {until} if idle.\
                 <form method=\"post\" action=\"/.iwa/stop\">\
                 <button type=\"submit\" id=\"stop\">Stop acting as {target}</button></form></div>",
                target = html_escape(&a.target.remote_user()),
                real = html_escape(&caller.real.remote_user()),
                reason = html_escape(if a.reason.is_empty() { "-" } else { &a.reason }),
                until = html_escape(&utc_time(a.expires_at)),
            ));
            b.push_str("<h2>The application sees</h2>");
            b.push_str(&identity_table(&a.target));
            b.push_str("<h2>You are</h2>");
            b.push_str(&identity_table(&caller.real));
        }
        None => {
            b.push_str("<h2>You are</h2>");
            b.push_str(&identity_table(&caller.real));
            if state.impersonator.is_some() && perms.contains(&Permission::AllowImpersonation) {
                b.push_str(
                    "<h2>Act as another user</h2>\
                     <p>See the application exactly as another user sees it. Every request \
                     you make meanwhile is audited under your name.</p>\
                     <form method=\"post\" action=\"/.iwa/impersonate\">\
                     <label for=\"user\">User (DOMAIN\\user)</label>\
                     <input type=\"text\" id=\"user\" name=\"user\" required autocomplete=\"off\" spellcheck=\"false\">\
                     <label for=\"reason\">Reason (audited)</label>\
                     <input type=\"text\" id=\"reason\" name=\"reason\" maxlength=\"500\" autocomplete=\"off\">\
                     <button type=\"submit\" id=\"start\">Act as this user</button></form>",
                );
            }
        }
    }
    b.push_str(&format!(
        "<h2>Your permissions</h2><p>AllowImpersonation: {}. IncreasePermissions: {}.</p>",
        yes_no(perms.contains(&Permission::AllowImpersonation)),
        yes_no(perms.contains(&Permission::IncreasePermissions)),
    ));
    layout("iwa gateway", &b)
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// `HH:MM UTC` (and the date when not today is not worth the code: windows are hours).
fn utc_time(t: SystemTime) -> String {
    let s = unix(t) % 86_400;
    format!("{:02}:{:02} UTC", s / 3600, (s % 3600) / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn same_origin_rules() {
        let host = ("host", "localhost:8080");
        assert_eq!(
            check_same_origin(&h(&[host]), "http"),
            Err(CsrfRefusal::NoOrigin)
        );
        assert_eq!(
            check_same_origin(&h(&[host, ("origin", "http://localhost:8080")]), "http"),
            Ok(())
        );
        assert_eq!(
            check_same_origin(&h(&[host, ("origin", "HTTP://LOCALHOST:8080")]), "http"),
            Ok(())
        );
        for foreign in [
            "http://evil.test",
            "https://localhost:8080",
            "http://localhost:8081",
            "http://localhost:8080.evil.test",
            "null",
            "",
        ] {
            assert_eq!(
                check_same_origin(&h(&[host, ("origin", foreign)]), "http"),
                Err(CsrfRefusal::ForeignOrigin),
                "{foreign}"
            );
        }
        assert_eq!(
            check_same_origin(&h(&[host, ("sec-fetch-site", "same-origin")]), "http"),
            Ok(())
        );
        for site in ["same-site", "cross-site", "none"] {
            assert_eq!(
                check_same_origin(
                    &h(&[
                        host,
                        ("origin", "http://localhost:8080"),
                        ("sec-fetch-site", site)
                    ]),
                    "http"
                ),
                Err(CsrfRefusal::CrossSite),
                "{site}"
            );
        }
        // No Host: an Origin cannot be matched.
        assert_eq!(
            check_same_origin(&h(&[("origin", "http://localhost:8080")]), "http"),
            Err(CsrfRefusal::ForeignOrigin)
        );
    }

    #[test]
    fn json_content_type() {
        assert!(is_json(&h(&[("content-type", "application/json")])));
        assert!(is_json(&h(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!is_json(&h(&[(
            "content-type",
            "application/x-www-form-urlencoded"
        )])));
        assert!(!is_json(&h(&[("content-type", "text/plain")])));
        assert!(!is_json(&h(&[])));
    }

    fn state(fake: bool) -> AdminState {
        AdminState {
            impersonator: None,
            directory: None,
            policy: Arc::default(),
            rules: Arc::default(),
            scheme: "http",
            fake,
        }
    }

    fn someone(name: &str) -> Identity {
        let mut id = Identity::from_principal(
            &format!("{name}@EX.TEST"),
            iwa::AuthMethod::Kerberos,
            &[("EX.TEST".to_owned(), "EX".to_owned())]
                .into_iter()
                .collect(),
        );
        id.groups.push(iwa::Group {
            sid: Some("S-1-5-21-1-2-3-1100".into()),
            name: Some("EX\\<script>alert(1)</script>".into()),
        });
        id
    }

    #[test]
    fn page_escapes_and_shows_banners() {
        let caller = Caller {
            real: someone("alice"),
            active: None,
        };
        let page = render_page(&state(false), &caller, Some("<b>no</b>"));
        assert!(page.contains("EX\\alice"));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&lt;b&gt;no&lt;/b&gt;"));
        assert!(!page.contains("Fake identity mode"));
        assert!(
            !page.contains("action=\"/.iwa/impersonate\""),
            "no form without permission"
        );
        assert!(render_page(&state(true), &caller, None).contains("Fake identity mode"));
    }
}
