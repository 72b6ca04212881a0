//! axum extractors: `Identity` (required: rejects with a 401 challenge) and
//! `Option<Identity>` (login optional).

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::ACCEPT;
use http::request::Parts;

use crate::error::{unauthenticated_response, Challenge};
use crate::identity::Identity;
use crate::layer::ChallengeHint;

/// Rejection of the `Identity` extractor: a 401 with the challenge the layer left in
/// the request (on optional routes), so the browser starts Negotiate.
#[derive(Debug)]
pub struct LoginRequired {
    challenge: Challenge,
    accept: Option<http::HeaderValue>,
}

impl IntoResponse for LoginRequired {
    fn into_response(self) -> Response {
        unauthenticated_response(None, &self.challenge, self.accept.as_ref()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Identity {
    type Rejection = LoginRequired;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(id) = parts.extensions.get::<Identity>() {
            return Ok(id.clone());
        }
        let challenge = parts
            .extensions
            .get::<ChallengeHint>()
            .map_or_else(Challenge::negotiate, |h| h.0.clone());
        Err(LoginRequired {
            challenge,
            accept: parts.headers.get(ACCEPT).cloned(),
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Identity {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Identity>().cloned())
    }
}
