//! Tenant administration (admin token) and browser tokens (API key). Every change is an
//! event on the tenant-admin topic first; the API's own tables follow once it is durable.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tributary_schemas::{
    ApiKeyIssued, ApiKeyRevoked, Event, EventMeta, QuotaChanged, TenantCreated, now_micros,
};

use crate::auth::{Admin, Capability, Principal, api_key, token::Claims};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;
use crate::store::TenantPolicy;

/// Body of `POST /v1/admin/tenants` and `PUT /v1/admin/tenants/{id}/policy`; omitted fields
/// take the configured defaults (creation) or keep their value (update).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    name: Option<String>,
    max_file_size: Option<i64>,
    allowed_content_types: Option<Vec<String>>,
    byte_quota: Option<i64>,
    max_concurrent_uploads: Option<i32>,
}

/// A tenant's policy as returned by the API.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    tenant_id: String,
    name: String,
    max_file_size: i64,
    allowed_content_types: Vec<String>,
    byte_quota: i64,
    max_concurrent_uploads: i32,
}

impl From<&TenantPolicy> for PolicyView {
    fn from(p: &TenantPolicy) -> Self {
        Self {
            tenant_id: p.tenant_id.clone(),
            name: p.name.clone(),
            max_file_size: p.max_file_size,
            allowed_content_types: p.allowed_content_types.clone(),
            byte_quota: p.byte_quota,
            max_concurrent_uploads: p.max_concurrent_uploads,
        }
    }
}

/// Answer of tenant creation and key rotation.
#[derive(Debug, Serialize)]
pub struct CreatedKey {
    tenant_id: String,
    key_id: String,
    /// Shown once; only its hash is stored.
    api_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<PolicyView>,
}

fn apply(policy: &mut TenantPolicy, request: PolicyRequest) -> Result<(), ApiError> {
    if let Some(name) = request.name {
        let name = name.trim();
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_request",
                "name must be 1-200 printable characters",
            ));
        }
        policy.name = name.to_string();
    }
    if let Some(v) = request.max_file_size {
        policy.max_file_size = v;
    }
    if let Some(v) = request.byte_quota {
        policy.byte_quota = v;
    }
    if let Some(v) = request.max_concurrent_uploads {
        policy.max_concurrent_uploads = v;
    }
    if let Some(types) = request.allowed_content_types {
        let mut normalized = Vec::with_capacity(types.len());
        for t in types {
            let t = t.trim().to_ascii_lowercase();
            let valid = t == "*/*"
                || t.strip_suffix("/*").is_some_and(|kind| {
                    crate::uploads::validate::content_type(&format!("{kind}/x")).is_ok()
                })
                || crate::uploads::validate::content_type(&t).is_ok_and(|n| n == t);
            if !valid {
                return Err(ApiError::bad_request(
                    "invalid_request",
                    format!("'{t}' is not a content type or type/* pattern"),
                ));
            }
            normalized.push(t);
        }
        policy.allowed_content_types = normalized;
    }
    if policy.max_file_size < 1 || policy.byte_quota < 0 || policy.max_concurrent_uploads < 1 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limits must be positive",
        ));
    }
    Ok(())
}

/// Publishes a policy event (`TenantCreated`, `QuotaChanged`), then records the policy.
async fn record_policy(
    state: &AppState,
    event: Event,
    policy: &TenantPolicy,
) -> Result<(), ApiError> {
    let at = state.publish(&event).await?;
    state
        .store
        .put_tenant(policy, at)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))
}

fn admin_meta(tenant_id: &str) -> EventMeta {
    EventMeta::new(tenant_id, None, AppState::producer_name(), tenant_id, None)
}

/// Issues a new key for a tenant: `ApiKeyIssued`, then the stored hash.
async fn issue_key(state: &AppState, tenant_id: &str) -> Result<api_key::NewApiKey, ApiError> {
    let key = api_key::generate().map_err(|e| ApiError::unavailable("random source", e))?;
    let event = Event::new(
        admin_meta(tenant_id),
        ApiKeyIssued {
            key_id: key.key_id.clone(),
            key_hash: key.hash.clone(),
            expires_at: None,
        },
    );
    let at = state.publish(&event).await?;
    state
        .store
        .put_key(&key.key_id, tenant_id, &key.hash, at)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?;
    Ok(key)
}

/// `POST /v1/admin/tenants`: creates a tenant and its first API key.
pub async fn create_tenant(
    _admin: Admin,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<PolicyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let settings = &state.settings;
    let mut policy = TenantPolicy {
        tenant_id: uuid::Uuid::now_v7().to_string(),
        name: String::new(),
        max_file_size: settings.default_max_file_size,
        allowed_content_types: vec!["*/*".into()],
        byte_quota: settings.default_byte_quota,
        max_concurrent_uploads: settings.default_max_concurrent_uploads,
    };
    if request.name.is_none() {
        return Err(ApiError::bad_request("invalid_request", "name is required"));
    }
    apply(&mut policy, request)?;
    let event = Event::new(
        admin_meta(&policy.tenant_id),
        TenantCreated {
            name: policy.name.clone(),
            max_file_size: policy.max_file_size,
            allowed_content_types: policy.allowed_content_types.clone(),
            byte_quota: policy.byte_quota,
            max_concurrent_uploads: policy.max_concurrent_uploads,
        },
    );
    record_policy(&state, event, &policy).await?;
    let key = issue_key(&state, &policy.tenant_id).await?;
    tracing::info!(tenant_id = %policy.tenant_id, key_id = %key.key_id, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            tenant_id: policy.tenant_id.clone(),
            key_id: key.key_id,
            api_key: key.key,
            policy: Some(PolicyView::from(&policy)),
        }),
    ))
}

async fn existing_tenant(state: &AppState, tenant_id: &str) -> Result<TenantPolicy, ApiError> {
    state
        .store
        .tenant(tenant_id)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?
        .ok_or_else(|| ApiError::not_found("no such tenant"))
}

/// Answer of `GET /v1/admin/tenants/{id}`.
#[derive(Debug, Serialize)]
pub struct TenantView {
    #[serde(flatten)]
    policy: PolicyView,
    /// Bytes reserved by unfinished uploads or stored.
    reserved_bytes: i64,
    /// Unfinished uploads.
    active_uploads: i32,
    /// Bytes stored (assembled originals and variants), from the read models: follows the
    /// log within moments. `null` while the read models cannot be queried.
    stored_bytes: Option<i64>,
}

/// `GET /v1/admin/tenants/{id}`: policy and current usage.
pub async fn get_tenant(
    _admin: Admin,
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
) -> Result<Json<TenantView>, ApiError> {
    let policy = existing_tenant(&state, &tenant_id).await?;
    let (reserved_bytes, active_uploads) = state
        .store
        .usage(&tenant_id)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?;
    // The quota figures above are the command side's (authoritative for admission); what
    // is stored is the projector's business.
    let stored_bytes = match state.read.tenant_usage(&state.cql, &tenant_id).await {
        Ok(usage) => Some(usage.stored_bytes),
        Err(error) => {
            tracing::warn!(%tenant_id, %error, "tenant usage read model unavailable");
            None
        }
    };
    Ok(Json(TenantView {
        policy: PolicyView::from(&policy),
        reserved_bytes,
        active_uploads,
        stored_bytes,
    }))
}

/// `POST /v1/admin/tenants/{id}/keys`: issues an additional key (rotation: issue, deploy,
/// then revoke the old one).
pub async fn rotate_key(
    _admin: Admin,
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    existing_tenant(&state, &tenant_id).await?;
    let key = issue_key(&state, &tenant_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            tenant_id,
            key_id: key.key_id,
            api_key: key.key,
            policy: None,
        }),
    ))
}

/// `DELETE /v1/admin/tenants/{id}/keys/{key_id}`: revokes a key.
pub async fn revoke_key(
    _admin: Admin,
    State(state): State<AppState>,
    Path((tenant_id, key_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let key = state
        .store
        .key(&key_id)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?;
    if key.is_none_or(|k| k.tenant_id != tenant_id) {
        return Err(ApiError::not_found("no such key for this tenant"));
    }
    let event = Event::new(
        admin_meta(&tenant_id),
        ApiKeyRevoked {
            key_id: key_id.clone(),
        },
    );
    let at = state.publish(&event).await?;
    state
        .store
        .revoke_key(&key_id, at)
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?;
    state.keys.forget(&key_id);
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT /v1/admin/tenants/{id}/policy`: changes limits (`QuotaChanged`).
pub async fn set_policy(
    _admin: Admin,
    State(state): State<AppState>,
    Path(tenant_id): Path<String>,
    JsonBody(request): JsonBody<PolicyRequest>,
) -> Result<Json<PolicyView>, ApiError> {
    let mut policy = existing_tenant(&state, &tenant_id).await?;
    apply(&mut policy, request)?;
    let event = Event::new(
        admin_meta(&tenant_id),
        QuotaChanged {
            max_file_size: policy.max_file_size,
            allowed_content_types: policy.allowed_content_types.clone(),
            byte_quota: policy.byte_quota,
            max_concurrent_uploads: policy.max_concurrent_uploads,
        },
    );
    record_policy(&state, event, &policy).await?;
    state.policies.forget(&tenant_id);
    Ok(Json(PolicyView::from(&policy)))
}

/// Body of `POST /v1/tokens`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[serde(default = "default_capabilities")]
    capabilities: Vec<Capability>,
    ttl_seconds: Option<u64>,
}

fn default_capabilities() -> Vec<Capability> {
    vec![Capability::Upload, Capability::Subscribe]
}

/// Answer of `POST /v1/tokens`.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    token: String,
    expires_at: i64,
    capabilities: Vec<Capability>,
}

/// `POST /v1/tokens`: a short-lived token for a browser, minted with an API key.
pub async fn create_token(
    principal: Principal,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<TokenRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), ApiError> {
    if principal.key_id.is_none() {
        return Err(ApiError::forbidden(
            "tokens are minted with an api key, not with another token",
        ));
    }
    let max = state.settings.max_token_ttl_secs;
    let ttl = request.ttl_seconds.unwrap_or(max.min(900));
    if ttl == 0 || ttl > max {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("ttl_seconds must be 1..={max}"),
        ));
    }
    if request.capabilities.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "at least one capability",
        ));
    }
    let now = now_micros() / 1_000_000;
    let claims = Claims {
        tid: principal.tenant_id,
        cap: request.capabilities.clone(),
        exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
        iat: now,
    };
    Ok((
        StatusCode::CREATED,
        Json(TokenResponse {
            token: state.signer.sign(&claims),
            expires_at: claims.exp,
            capabilities: request.capabilities,
        }),
    ))
}

/// `GET /v1/policy`: the caller's own tenant policy (size limit, allowed types), so a page
/// can refuse a file before sending any upload request.
pub async fn own_policy(
    principal: Principal,
    State(state): State<AppState>,
) -> Result<Json<PolicyView>, ApiError> {
    let policy = state
        .policies
        .get_or_load(
            &principal.tenant_id,
            state.store.tenant(&principal.tenant_id),
        )
        .await
        .map_err(|e| ApiError::unavailable("cql", e))?
        .ok_or_else(|| ApiError::unauthorized("unknown tenant"))?;
    Ok(Json(PolicyView::from(&policy)))
}
