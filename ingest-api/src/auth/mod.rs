//! Who is calling: tenants authenticate with an API key (`trk_...`) or a short-lived browser
//! token (`trt_...`), both as `Authorization: Bearer`; operators use the admin token.

pub mod api_key;
pub mod token;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
pub use token::Capability;

/// An authenticated tenant caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant acted for.
    pub tenant_id: String,
    /// What the caller may do.
    pub capabilities: Vec<Capability>,
    /// The API key used, if any (tokens cannot mint tokens).
    pub key_id: Option<String>,
}

impl Principal {
    /// Fails with 403 unless the caller holds `capability`.
    pub fn require(&self, capability: Capability) -> Result<(), ApiError> {
        if self.capabilities.contains(&capability) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                format!("this credential lacks the {capability:?} capability").to_lowercase(),
            ))
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim())
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let credential = bearer(parts)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer credential"))?;
        if credential.starts_with(token::PREFIX) {
            let now = tributary_schemas::now_micros() / 1_000_000;
            let claims = state
                .signer
                .verify(credential, now)
                .map_err(|e| ApiError::unauthorized(e.to_string()))?;
            return Ok(Self {
                tenant_id: claims.tid,
                capabilities: claims.cap,
                key_id: None,
            });
        }
        let (key_id, secret) = api_key::parse(credential)
            .ok_or_else(|| ApiError::unauthorized("unknown credential"))?;
        let stored = state
            .keys
            .get_or_load(&key_id.to_string(), state.store.key(key_id))
            .await
            .map_err(|e| ApiError::unavailable("cql", e))?;
        match stored {
            Some(key) if !key.revoked && api_key::verify(secret, &key.key_hash) => {
                state.limiter.check(&key.tenant_id)?;
                Ok(Self {
                    tenant_id: key.tenant_id,
                    capabilities: vec![Capability::Upload, Capability::Subscribe],
                    key_id: Some(key_id.to_string()),
                })
            }
            _ => Err(ApiError::unauthorized("unknown or revoked api key")),
        }
    }
}

/// An operator authenticated with the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        use subtle::ConstantTimeEq;
        let credential =
            bearer(parts).ok_or_else(|| ApiError::unauthorized("missing admin token"))?;
        let expected = state.settings.admin_token.as_bytes();
        if bool::from(credential.as_bytes().ct_eq(expected)) {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized("invalid admin token"))
        }
    }
}
