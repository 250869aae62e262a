//! Companion-compatible S3 multipart routes, so Uppy's `@uppy/aws-s3` uploads through the
//! same sessions, events and checks as the native API.
//!
//! Uppy cannot add an `Authorization` header to these calls, so the routes are served twice:
//! under `/v1/uppy/{token}` (a short-lived browser token from `POST /v1/tokens`) and at the
//! root with `Authorization: Bearer`. Uppy chooses part sizes itself and never says the file
//! size up front, so its sessions are *client-planned*: one upload slot is reserved at
//! creation, and at completion the API reads the parts from storage, checks them against the
//! tenant's policy, reserves their bytes, and emits a `PartConfirmed` per verified part before
//! `UploadCompletionRequested`.
//!
//! Uppy's non-multipart mode (`/s3/params`, a presigned POST without any completion call)
//! cannot tell the API that an upload finished, so it is refused with a clear message: use
//! `shouldUseMultipart: () => true`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument as _;
use tributary_schemas::{Event, PartConfirmed, UploadCompletionRequested, now_micros};

use super::{initiated_event, own_session, policy_of, session_meta, unavailable_cql, validate};
use crate::auth::{Capability, Principal};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;
use crate::store::{ReserveError, SessionState, UploadSession};

/// S3's smallest part (all but the last).
const MIN_S3_PART: i64 = 5 * 1024 * 1024;

/// The Companion routes, relative to where they are mounted.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/s3/multipart", post(create))
        .route("/s3/multipart/{upload_id}", get(list_parts).delete(abort))
        .route("/s3/multipart/{upload_id}/complete", post(complete))
        .route("/s3/multipart/{upload_id}/{part_number}", get(sign_part))
        .route("/s3/params", get(simple_upload))
}

/// The caller of a Companion route: the token in the path, or the Authorization header.
pub struct UppyCaller(Principal);

impl FromRequestParts<AppState> for UppyCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let params: Path<HashMap<String, String>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found("no such route"))?;
        // The token in the endpoint path, else the Authorization header, else the
        // same-origin session cookie.
        let token = match params.get("token") {
            Some(token) => Some(token.clone()),
            None if parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION) =>
            {
                None
            }
            None => crate::session::token_from_cookie(&parts.headers),
        };
        let principal = match token {
            Some(token) => {
                let now = now_micros() / 1_000_000;
                let claims = state
                    .signer
                    .verify(&token, now)
                    .map_err(|e| ApiError::unauthorized(e.to_string()))?;
                state.limiter.check(&claims.tid)?;
                Principal {
                    tenant_id: claims.tid,
                    capabilities: claims.cap,
                    key_id: None,
                }
            }
            None => Principal::from_request_parts(parts, state).await?,
        };
        principal.require(Capability::Upload)?;
        Ok(Self(principal))
    }
}

/// Body of `POST /s3/multipart`, as Uppy sends it.
#[derive(Debug, Deserialize)]
pub struct CreateRequest {
    filename: String,
    #[serde(rename = "type", default)]
    content_type: Option<String>,
    #[serde(default)]
    metadata: HashMap<String, Value>,
}

/// Answer of `POST /s3/multipart`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Created {
    upload_id: String,
    key: String,
}

/// `POST /s3/multipart`: a client-planned session.
pub async fn create(
    UppyCaller(principal): UppyCaller,
    State(state): State<AppState>,
    JsonBody(request): JsonBody<CreateRequest>,
) -> Result<Json<Created>, ApiError> {
    let policy = policy_of(&state, &principal.tenant_id).await?;
    let filename = validate::filename(&request.filename)
        .map_err(|e| ApiError::bad_request("invalid_filename", e.to_string()))?
        .to_string();
    let raw_type = request
        .content_type
        .unwrap_or_else(|| "application/octet-stream".into());
    let content_type = validate::content_type(&raw_type)
        .map_err(|e| ApiError::bad_request("invalid_content_type", e.to_string()))?;
    if !validate::content_type_allowed(&policy.allowed_content_types, &content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_not_allowed",
            format!("{content_type} is not allowed for this tenant"),
        ));
    }
    // Uppy's metadata values may be any JSON; keep short strings only.
    let metadata = request
        .metadata
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            _ => None,
        })
        .filter(|(k, v)| {
            !k.is_empty()
                && k.len() <= 128
                && v.len() <= 1024
                && !k.chars().chain(v.chars()).any(char::is_control)
        })
        .take(32)
        .collect();

    state
        .store
        .reserve(&policy, 0, 1)
        .await
        .map_err(reserve_error)?;
    let tenant_id = principal.tenant_id.clone();
    let release = || async {
        if let Err(error) = state.store.release(&tenant_id, 0, 1).await {
            tracing::error!(%error, "could not release an upload slot");
        }
    };
    let upload_id = uuid::Uuid::now_v7().to_string();
    // The upload's trace starts here, as with `POST /v1/uploads`: Companion's later calls
    // name the upload in their path and join it (see `crate::trace`).
    let span = crate::trace::upload_span("/s3/multipart", &upload_id);
    async {
        let bucket = state.config.s3.bucket.clone();
        let object_key = format!("uploads/{}/{upload_id}/original", principal.tenant_id);
        let created = state
            .s3
            .create_multipart_upload()
            .bucket(&bucket)
            .key(&object_key)
            .content_type(&content_type)
            .send()
            .await;
        let Some(s3_upload_id) = created.ok().and_then(|c| c.upload_id) else {
            release().await;
            return Err(ApiError::unavailable(
                "storage",
                "create multipart upload failed",
            ));
        };
        let now = now_micros();
        let session = UploadSession {
            upload_id: upload_id.clone(),
            tenant_id: principal.tenant_id.clone(),
            filename,
            size: 0,
            content_type,
            bucket,
            object_key: object_key.clone(),
            s3_upload_id,
            part_size: 0,
            part_count: 0,
            sha256: None,
            state: SessionState::Uploading,
            created_at: now,
            expires_at: now
                + i64::try_from(state.settings.session_ttl_secs).unwrap_or(0) * 1_000_000,
            correlation_id: upload_id.clone(),
        };
        // Size and parts are unknown until completion (client-planned): zero here, then one
        // PartConfirmed per verified part.
        let event = initiated_event(&session, metadata);
        if let Err(error) = state.events.publish(&event).await {
            let _ = state
                .s3
                .abort_multipart_upload()
                .bucket(&session.bucket)
                .key(&object_key)
                .upload_id(&session.s3_upload_id)
                .send()
                .await;
            release().await;
            return Err(ApiError::unavailable("kafka", error));
        }
        state
            .store
            .put_session(&session)
            .await
            .map_err(unavailable_cql)?;
        Ok(Json(Created {
            upload_id: upload_id.clone(),
            key: object_key,
        }))
    }
    .instrument(span)
    .await
}

fn reserve_error(error: ReserveError) -> ApiError {
    match error {
        ReserveError::QuotaExceeded { .. } => {
            ApiError::conflict("quota_exceeded", error.to_string())
        }
        ReserveError::TooManyUploads { .. } => {
            ApiError::conflict("too_many_uploads", error.to_string())
        }
        ReserveError::Store(e) => unavailable_cql(e),
    }
}

/// `?key=` that Uppy sends with every call: it must name the session's object.
#[derive(Debug, Deserialize)]
pub struct KeyQuery {
    key: Option<String>,
}

/// Loads an active client-planned session of the caller, checking `key`.
async fn uppy_session(
    state: &AppState,
    principal: &Principal,
    params: &HashMap<String, String>,
    key: Option<&str>,
) -> Result<UploadSession, ApiError> {
    let upload_id = params
        .get("upload_id")
        .map(String::as_str)
        .unwrap_or_default();
    let session = own_session(state, principal, upload_id).await?;
    if key.is_some_and(|k| k != session.object_key) {
        return Err(ApiError::not_found("no such upload"));
    }
    Ok(session)
}

fn require_active(session: &UploadSession) -> Result<(), ApiError> {
    if session.state != SessionState::Uploading {
        return Err(ApiError::conflict(
            "upload_not_active",
            "the upload no longer accepts parts",
        ));
    }
    if now_micros() > session.expires_at {
        return Err(ApiError::conflict(
            "upload_expired",
            "the upload expired before it was completed",
        ));
    }
    Ok(())
}

/// `GET /s3/multipart/{upload_id}/{part_number}?key=`: one presigned part URL.
pub async fn sign_part(
    UppyCaller(principal): UppyCaller,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = uppy_session(&state, &principal, &params, query.key.as_deref()).await?;
    require_active(&session)?;
    let number = params
        .get("part_number")
        .and_then(|n| n.parse::<i32>().ok())
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| {
            ApiError::bad_request("invalid_part_number", "part number must be 1..=10000")
        })?;
    let ttl = state.settings.part_url_ttl_secs;
    let url = state.presigner.upload_part(
        &session.bucket,
        &session.object_key,
        &session.s3_upload_id,
        number.unsigned_abs(),
        ttl,
        now_micros() / 1_000_000,
    );
    Ok(Json(json!({"url": url, "expires": ttl})))
}

/// The parts storage holds for a session: (number, etag, size), ascending.
async fn stored_parts(
    state: &AppState,
    session: &UploadSession,
) -> Result<Vec<(i32, String, i64)>, ApiError> {
    let mut parts = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = state
            .s3
            .list_parts()
            .bucket(&session.bucket)
            .key(&session.object_key)
            .upload_id(&session.s3_upload_id)
            .set_part_number_marker(marker.clone())
            .send()
            .await
            .map_err(|e| {
                ApiError::unavailable("storage", aws_sdk_s3::error::DisplayErrorContext(&e))
            })?;
        for part in page.parts() {
            if let (Some(n), Some(etag), Some(size)) =
                (part.part_number(), part.e_tag(), part.size())
            {
                parts.push((n, etag.trim_matches('"').to_string(), size));
            }
        }
        match (page.is_truncated(), page.next_part_number_marker()) {
            (Some(true), Some(next)) => marker = Some(next.to_string()),
            _ => return Ok(parts),
        }
    }
}

/// `GET /s3/multipart/{upload_id}?key=`: the parts storage has (Uppy resumes from these).
pub async fn list_parts(
    UppyCaller(principal): UppyCaller,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = uppy_session(&state, &principal, &params, query.key.as_deref()).await?;
    require_active(&session)?;
    let parts = stored_parts(&state, &session).await?;
    Ok(Json(Value::Array(
        parts
            .into_iter()
            .map(|(n, etag, size)| json!({"PartNumber": n, "Size": size, "ETag": format!("\"{etag}\"")}))
            .collect(),
    )))
}

/// Body of the completion, as Uppy sends it.
#[derive(Debug, Deserialize)]
pub struct CompleteRequest {
    parts: Vec<ClientPart>,
}

/// One part the client says it uploaded.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ClientPart {
    part_number: i32,
    #[serde(rename = "ETag")]
    etag: String,
}

/// `POST /s3/multipart/{upload_id}/complete?key=`: verifies the parts against storage and the
/// policy, reserves their bytes, emits the events and answers Uppy's `{location, key}`.
pub async fn complete(
    UppyCaller(principal): UppyCaller,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<KeyQuery>,
    JsonBody(request): JsonBody<CompleteRequest>,
) -> Result<Json<Value>, ApiError> {
    let mut session = uppy_session(&state, &principal, &params, query.key.as_deref()).await?;
    let location = format!("{}/{}", session.bucket, session.object_key);
    let answer = json!({"location": location, "key": session.object_key, "bucket": session.bucket});
    if session.state == SessionState::Completing {
        return Ok(Json(answer));
    }
    require_active(&session)?;
    if session.part_count != 0 {
        return Err(ApiError::conflict(
            "not_client_planned",
            "complete this upload with POST /v1/uploads/{id}/complete",
        ));
    }
    let mut claimed: Vec<&ClientPart> = request.parts.iter().collect();
    claimed.sort_by_key(|p| p.part_number);
    let expected: Vec<i32> = (1..=i32::try_from(claimed.len()).unwrap_or(0)).collect();
    if claimed.is_empty() || claimed.iter().map(|p| p.part_number).collect::<Vec<_>>() != expected {
        return Err(ApiError::bad_request(
            "invalid_part_number",
            "parts must be numbered 1..=n without gaps",
        ));
    }
    let stored = stored_parts(&state, &session).await?;
    let mut verified = Vec::with_capacity(claimed.len());
    for part in &claimed {
        let Some((_, etag, size)) = stored.iter().find(|(n, _, _)| *n == part.part_number) else {
            return Err(ApiError::conflict(
                "part_not_uploaded",
                format!("storage has no part {} of this upload", part.part_number),
            ));
        };
        if etag != part.etag.trim_matches('"') {
            return Err(ApiError::conflict(
                "etag_mismatch",
                format!("part {} in storage has a different etag", part.part_number),
            ));
        }
        verified.push((part.part_number, etag.clone(), *size));
    }
    let last = verified.len() - 1;
    if verified
        .iter()
        .enumerate()
        .any(|(i, (_, _, size))| i < last && *size < MIN_S3_PART)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "part_size_mismatch",
            "every part but the last must be at least 5 MiB",
        ));
    }
    let size: i64 = verified.iter().map(|(_, _, s)| s).sum();
    let policy = policy_of(&state, &principal.tenant_id).await?;
    if size > policy.max_file_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!(
                "size {size} exceeds this tenant's limit of {} bytes",
                policy.max_file_size
            ),
        ));
    }
    state
        .store
        .reserve(&policy, size, 0)
        .await
        .map_err(reserve_error)?;

    for (number, etag, part_size) in &verified {
        let meta = session_meta(&session);
        let at = meta.occurred_at;
        let event = Event::new(
            meta,
            PartConfirmed {
                part_number: *number,
                etag: etag.clone(),
                size: *part_size,
            },
        );
        if let Err(error) = state.events.publish(&event).await {
            let _ = state.store.release(&session.tenant_id, size, 0).await;
            return Err(ApiError::unavailable("kafka", error));
        }
        state
            .store
            .put_part(&session.upload_id, *number, etag, *part_size, at)
            .await
            .map_err(unavailable_cql)?;
    }
    let meta = session_meta(&session);
    if let Err(error) = state
        .events
        .publish(&Event::new(meta, UploadCompletionRequested {}))
        .await
    {
        let _ = state.store.release(&session.tenant_id, size, 0).await;
        return Err(ApiError::unavailable("kafka", error));
    }
    session.size = size;
    session.part_count = i32::try_from(verified.len()).unwrap_or(i32::MAX);
    session.state = SessionState::Completing;
    state
        .store
        .put_session(&session)
        .await
        .map_err(unavailable_cql)?;
    Ok(Json(answer))
}

/// `DELETE /s3/multipart/{upload_id}?key=`: abort, as the native `DELETE /v1/uploads/{id}`.
pub async fn abort(
    UppyCaller(principal): UppyCaller,
    State(state): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    Query(query): Query<KeyQuery>,
) -> Result<Json<Value>, ApiError> {
    let session = uppy_session(&state, &principal, &params, query.key.as_deref()).await?;
    super::delete(principal, State(state), Path(session.upload_id)).await?;
    Ok(Json(json!({})))
}

/// `GET /s3/params`: Uppy's non-multipart mode, which never reports completion.
pub async fn simple_upload(UppyCaller(_principal): UppyCaller) -> ApiError {
    ApiError::bad_request(
        "multipart_required",
        "uploads must use multipart so that completion is recorded: configure @uppy/aws-s3 with shouldUseMultipart: () => true",
    )
}
