//! A same-origin session cookie holding a browser token, for clients that can neither set an
//! `Authorization` header nor put the token in the URL (Uppy's Companion calls from a page the
//! API itself serves). `SameSite=Strict` keeps other sites from riding on it.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tributary_schemas::now_micros;

use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;

/// Name of the cookie.
pub const COOKIE: &str = "tributary_token";

/// Body of `POST /v1/session`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    token: String,
}

/// `POST /v1/session`: checks a browser token and stores it in an HttpOnly cookie that lives
/// exactly as long as the token.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(request): JsonBody<SessionRequest>,
) -> Result<Response, ApiError> {
    let now = now_micros() / 1_000_000;
    let claims = state
        .signer
        .verify(&request.token, now)
        .map_err(|e| ApiError::unauthorized(e.to_string()))?;
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        request.token,
        claims.exp - now
    );
    set_cookie(&cookie)
}

/// `DELETE /v1/session`: forgets the cookie.
pub async fn delete() -> Result<Response, ApiError> {
    set_cookie(&format!(
        "{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

fn set_cookie(cookie: &str) -> Result<Response, ApiError> {
    // Tokens are base64url and dots only, so the header value is always valid.
    let value = HeaderValue::from_str(cookie)
        .map_err(|_| ApiError::bad_request("invalid_token", "token is not cookie-safe"))?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, value)]).into_response())
}

/// The token in the request's session cookie, if any.
pub fn token_from_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}
