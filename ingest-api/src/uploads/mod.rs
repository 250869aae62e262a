//! Upload sessions: initiation, part URLs, part confirmation, completion, abort.
//!
//! The API never sees file bytes: it creates the S3 multipart upload, hands out presigned
//! part URLs, verifies what the client says it uploaded against storage (`ListParts`), and
//! records every step as an event before answering.

pub mod plan;
pub mod status;
pub mod uppy;
pub mod validate;

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::Instrument as _;
use tributary_schemas::{
    Event, EventMeta, PartConfirmed, UploadAborted, UploadCompletionRequested, UploadDeleted,
    UploadInitiated, now_micros,
};

use crate::auth::{Capability, Principal};
use crate::error::ApiError;
use crate::json::JsonBody;
use crate::state::AppState;
use crate::store::{ReserveError, SessionState, TenantPolicy, UploadSession};
use plan::PartPlan;

/// Most metadata entries per upload, and their sizes: metadata travels in every event.
const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY: usize = 128;
const MAX_METADATA_VALUE: usize = 1024;

/// Body of `POST /v1/uploads`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitiateRequest {
    filename: String,
    size: i64,
    content_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

/// One presigned part URL.
#[derive(Debug, Serialize)]
pub struct PartUrl {
    part_number: u32,
    url: String,
    expires_at: String,
}

/// Answer of `POST /v1/uploads`.
#[derive(Debug, Serialize)]
pub struct SessionView {
    upload_id: String,
    state: &'static str,
    filename: String,
    size: i64,
    content_type: String,
    part_size: i64,
    part_count: i32,
    /// URLs of the first parts; fetch the rest with `GET /v1/uploads/{id}/parts`.
    parts: Vec<PartUrl>,
    expires_at: String,
    events_url: String,
}

/// Awaits `future`, recording its duration as one stage of an initiation, so `/metrics`
/// shows where initiation time goes.
async fn timed<T>(stage: &'static str, future: impl Future<Output = T>) -> T {
    let started = std::time::Instant::now();
    let output = future.await;
    metrics::histogram!("tributary_api_initiate_stage_seconds", "stage" => stage)
        .record(started.elapsed().as_secs_f64());
    output
}

fn rfc3339(micros: i64) -> String {
    DateTime::from_secs(micros / 1_000_000)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

fn unavailable_cql(error: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("cql", error)
}

/// Validated fields of an initiation.
struct Checked {
    filename: String,
    content_type: String,
    size: i64,
    sha256: Option<String>,
    plan: PartPlan,
}

fn check(request: &InitiateRequest, policy: &TenantPolicy) -> Result<Checked, ApiError> {
    let filename = validate::filename(&request.filename)
        .map_err(|e| ApiError::bad_request("invalid_filename", e.to_string()))?
        .to_string();
    let content_type = validate::content_type(&request.content_type)
        .map_err(|e| ApiError::bad_request("invalid_content_type", e.to_string()))?;
    if request.size < 1 {
        return Err(ApiError::bad_request(
            "invalid_size",
            "size must be at least 1 byte",
        ));
    }
    if request.size > policy.max_file_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            format!(
                "size {} exceeds this tenant's limit of {} bytes",
                request.size, policy.max_file_size
            ),
        ));
    }
    if !validate::content_type_allowed(&policy.allowed_content_types, &content_type) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type_not_allowed",
            format!("{content_type} is not allowed for this tenant"),
        ));
    }
    let sha256 = match &request.sha256 {
        None => None,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(h.to_ascii_lowercase())
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_sha256",
                "sha256 must be 64 hex digits",
            ));
        }
    };
    if request.metadata.len() > MAX_METADATA_ENTRIES
        || request.metadata.iter().any(|(k, v)| {
            k.is_empty()
                || k.len() > MAX_METADATA_KEY
                || v.len() > MAX_METADATA_VALUE
                || k.chars().chain(v.chars()).any(char::is_control)
        })
    {
        return Err(ApiError::bad_request(
            "invalid_metadata",
            format!(
                "at most {MAX_METADATA_ENTRIES} entries, keys 1-{MAX_METADATA_KEY} and values up to {MAX_METADATA_VALUE} bytes, no control characters"
            ),
        ));
    }
    let size = u64::try_from(request.size).unwrap_or_default();
    let plan = PartPlan::for_size(size).map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "file_too_large",
            e.to_string(),
        )
    })?;
    Ok(Checked {
        filename,
        content_type,
        size: request.size,
        sha256,
        plan,
    })
}

/// The `Idempotency-Key` header, if present and well-formed.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value.to_str().ok().map(str::trim).unwrap_or_default();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 visible ASCII characters",
        ));
    }
    Ok(Some(key.to_string()))
}

fn request_hash(request: &InitiateRequest) -> String {
    // Field order is fixed by the struct and metadata is a BTreeMap: the JSON is canonical.
    hex::encode(Sha256::digest(
        serde_json::to_vec(request).unwrap_or_default(),
    ))
}

async fn policy_of(state: &AppState, tenant_id: &str) -> Result<TenantPolicy, ApiError> {
    state
        .policies
        .get_or_load(&tenant_id.to_string(), state.store.tenant(tenant_id))
        .await
        .map_err(unavailable_cql)?
        // A valid credential of a tenant that no longer exists.
        .ok_or_else(|| ApiError::unauthorized("unknown tenant"))
}

/// The envelope of the next event about `session`: same tenant, upload and correlation id.
fn session_meta(session: &UploadSession) -> EventMeta {
    EventMeta::new(
        &session.tenant_id,
        Some(session.upload_id.clone()),
        AppState::producer_name(),
        &session.correlation_id,
        None,
    )
}

/// `UploadInitiated` of a new session, dated at its creation. Client-planned (Uppy) sessions
/// carry size, part size and part count 0: they are known only at completion.
fn initiated_event(session: &UploadSession, metadata: BTreeMap<String, String>) -> Event {
    let mut meta = session_meta(session);
    meta.occurred_at = session.created_at;
    Event::new(
        meta,
        UploadInitiated {
            filename: session.filename.clone(),
            size: session.size,
            content_type: session.content_type.clone(),
            bucket: session.bucket.clone(),
            object_key: session.object_key.clone(),
            s3_upload_id: session.s3_upload_id.clone(),
            part_size: session.part_size,
            part_count: session.part_count,
            sha256: session.sha256.clone(),
            metadata,
            expires_at: session.expires_at,
        },
    )
}

/// Refuses work on a session whose time ran out (the janitor will expire it).
fn ensure_not_expired(session: &UploadSession) -> Result<(), ApiError> {
    if session.state == SessionState::Uploading && now_micros() > session.expires_at {
        return Err(ApiError::conflict(
            "upload_expired",
            "the upload expired before it was completed",
        ));
    }
    Ok(())
}

/// Loads a session of the caller's tenant; another tenant's id is simply not found.
async fn own_session(
    state: &AppState,
    principal: &Principal,
    upload_id: &str,
) -> Result<UploadSession, ApiError> {
    if uuid::Uuid::parse_str(upload_id).is_err() {
        return Err(ApiError::not_found("no such upload"));
    }
    match state
        .store
        .session(upload_id)
        .await
        .map_err(unavailable_cql)?
    {
        Some(session) if session.tenant_id == principal.tenant_id => Ok(session),
        _ => Err(ApiError::not_found("no such upload")),
    }
}

async fn presign(
    state: &AppState,
    session: &UploadSession,
    from: u32,
    count: u32,
) -> Result<Vec<PartUrl>, ApiError> {
    let ttl = state.settings.part_url_ttl_secs;
    let now = now_micros();
    let expires_at = rfc3339(now + i64::try_from(ttl).unwrap_or(0) * 1_000_000);
    let last = u32::try_from(session.part_count)
        .unwrap_or(0)
        .min(from.saturating_add(count).saturating_sub(1));
    Ok((from..=last)
        .map(|part_number| PartUrl {
            part_number,
            url: state.presigner.upload_part(
                &session.bucket,
                &session.object_key,
                &session.s3_upload_id,
                part_number,
                ttl,
                now / 1_000_000,
            ),
            expires_at: expires_at.clone(),
        })
        .collect())
}

async fn view(state: &AppState, session: &UploadSession, parts: Vec<PartUrl>) -> SessionView {
    SessionView {
        upload_id: session.upload_id.clone(),
        state: match session.state {
            SessionState::Uploading => "uploading",
            SessionState::Completing => "assembling",
            SessionState::Aborted => "aborted",
            SessionState::Deleted => "deleted",
            SessionState::Finished => "ready",
            SessionState::Released => "rejected",
        },
        filename: session.filename.clone(),
        size: session.size,
        content_type: session.content_type.clone(),
        part_size: session.part_size,
        part_count: session.part_count,
        parts,
        expires_at: rfc3339(session.expires_at),
        events_url: format!(
            "{}/v1/uploads/{}/events",
            state.settings.events_base_url, session.upload_id
        ),
    }
}

/// `POST /v1/uploads`: validates, reserves quota, creates the multipart upload, emits
/// `UploadInitiated` and answers 201 with the first part URLs. With `Idempotency-Key`, a
/// retry answers the same session.
pub async fn initiate(
    principal: Principal,
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<InitiateRequest>,
) -> Result<(StatusCode, Json<SessionView>), ApiError> {
    principal.require(Capability::Upload)?;
    let policy = timed("policy", policy_of(&state, &principal.tenant_id)).await?;
    let checked = check(&request, &policy)?;
    let idempotency = idempotency_key(&headers)?;
    let upload_id = uuid::Uuid::now_v7().to_string();

    if let Some(key) = &idempotency {
        let hash = request_hash(&request);
        if let Some((earlier_id, earlier_hash)) = state
            .store
            .claim_idempotency(&principal.tenant_id, key, &upload_id, &hash)
            .await
            .map_err(unavailable_cql)?
        {
            if earlier_hash != hash {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_key_reused",
                    "this Idempotency-Key was used with a different request",
                ));
            }
            let session = match state
                .store
                .session(&earlier_id)
                .await
                .map_err(unavailable_cql)?
            {
                Some(session) => session,
                None => {
                    return Err(ApiError::conflict(
                        "request_in_progress",
                        "a request with this Idempotency-Key is still in progress; retry shortly",
                    ));
                }
            };
            let count = state.settings.initial_part_urls;
            let parts = presign(&state, &session, 1, count).await?;
            return Ok((
                StatusCode::CREATED,
                Json(view(&state, &session, parts).await),
            ));
        }
    }

    // The upload's trace starts here (its id is the upload id): every later request and
    // every processor's work on the upload joins it.
    let outcome = create_session(&state, &principal, &policy, checked, &request, &upload_id)
        .instrument(crate::trace::upload_span("/v1/uploads", &upload_id))
        .await;
    if outcome.is_err()
        && let Some(key) = &idempotency
        && let Err(error) = state
            .store
            .release_idempotency(&principal.tenant_id, key, &upload_id)
            .await
    {
        tracing::warn!(%error, "could not release idempotency key; it expires in a day");
    }
    let session = outcome?;
    let parts = timed(
        "presign",
        presign(&state, &session, 1, state.settings.initial_part_urls),
    )
    .await?;
    metrics::counter!("tributary_uploads_initiated_total").increment(1);
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &session, parts).await),
    ))
}

/// Reserve, create, publish, record — undoing the earlier steps when a later one fails, so a
/// failed initiation leaves no reservation, no multipart upload and no session behind.
async fn create_session(
    state: &AppState,
    principal: &Principal,
    policy: &TenantPolicy,
    checked: Checked,
    request: &InitiateRequest,
    upload_id: &str,
) -> Result<UploadSession, ApiError> {
    let tenant_id = &principal.tenant_id;
    let bucket = state.config.s3.bucket.clone();
    let object_key = format!("uploads/{tenant_id}/{upload_id}/original");
    // The reservation and the multipart upload are independent: do both at once, and undo
    // whichever succeeded when the other did not.
    let (reserved, created) = tokio::join!(
        timed("reserve", state.store.reserve(policy, checked.size, 1)),
        timed(
            "s3_create",
            state
                .multipart
                .create(&bucket, &object_key, &checked.content_type),
        ),
    );
    let release = || async {
        if let Err(error) = state.store.release(tenant_id, checked.size, 1).await {
            tracing::error!(%error, tenant_id, "could not release a reservation; usage is overstated until reconciled");
        }
    };
    let created = created
        .inspect_err(|error| tracing::warn!(%error, "could not create the multipart upload"))
        .ok();
    if let Err(error) = reserved {
        if let Some(s3_upload_id) = &created {
            let aborted = state
                .s3
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&object_key)
                .upload_id(s3_upload_id)
                .send()
                .await;
            if let Err(abort_error) = aborted {
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&abort_error), "could not abort multipart upload; the janitor will");
            }
        }
        return Err(match error {
            ReserveError::QuotaExceeded { .. } => {
                ApiError::conflict("quota_exceeded", error.to_string())
            }
            ReserveError::TooManyUploads { .. } => {
                ApiError::conflict("too_many_uploads", error.to_string())
            }
            ReserveError::Store(e) => unavailable_cql(e),
        });
    }
    let Some(s3_upload_id) = created else {
        release().await;
        return Err(ApiError::unavailable(
            "storage",
            "create multipart upload failed",
        ));
    };
    let abort_multipart = || async {
        let aborted = state
            .s3
            .abort_multipart_upload()
            .bucket(&bucket)
            .key(&object_key)
            .upload_id(&s3_upload_id)
            .send()
            .await;
        if let Err(error) = aborted {
            tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&error), "could not abort multipart upload; the janitor will");
        }
    };

    let now = now_micros();
    let session = UploadSession {
        upload_id: upload_id.to_string(),
        tenant_id: tenant_id.clone(),
        filename: checked.filename,
        size: checked.size,
        content_type: checked.content_type,
        bucket: bucket.clone(),
        object_key: object_key.clone(),
        s3_upload_id: s3_upload_id.clone(),
        part_size: i64::try_from(checked.plan.part_size).unwrap_or(i64::MAX),
        part_count: i32::try_from(checked.plan.part_count).unwrap_or(i32::MAX),
        sha256: checked.sha256,
        state: SessionState::Uploading,
        created_at: now,
        expires_at: now + i64::try_from(state.settings.session_ttl_secs).unwrap_or(0) * 1_000_000,
        correlation_id: upload_id.to_string(),
    };
    let event = initiated_event(&session, request.metadata.clone());
    if let Err(error) = timed("publish", state.events.publish(&event)).await {
        abort_multipart().await;
        release().await;
        return Err(ApiError::unavailable("kafka", error));
    }
    if let Err(error) = timed("store_session", state.store.put_session(&session)).await {
        // The initiation is in the log but cannot be served: close it in the log too.
        let aborted = Event::new(
            event.meta.caused_by(AppState::producer_name()),
            UploadAborted {
                reason: "session could not be recorded".into(),
            },
        );
        if let Err(publish_error) = state.events.publish(&aborted).await {
            tracing::error!(%publish_error, upload_id, "could not compensate a half-created session; the janitor will expire it");
        }
        abort_multipart().await;
        release().await;
        return Err(unavailable_cql(error));
    }
    Ok(session)
}

/// Query of `GET /v1/uploads/{id}/parts`.
#[derive(Debug, Deserialize)]
pub struct PartsQuery {
    from: Option<u32>,
    count: Option<u32>,
}

/// Answer of `GET /v1/uploads/{id}/parts`.
#[derive(Debug, Serialize)]
pub struct PartsView {
    upload_id: String,
    part_count: i32,
    parts: Vec<PartUrl>,
}

/// `GET /v1/uploads/{id}/parts?from=&count=`: fresh presigned URLs (e.g. after expiry).
pub async fn part_urls(
    principal: Principal,
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
    Query(query): Query<PartsQuery>,
) -> Result<Json<PartsView>, ApiError> {
    principal.require(Capability::Upload)?;
    let session = own_session(&state, &principal, &upload_id).await?;
    ensure_not_expired(&session)?;
    if session.state != SessionState::Uploading {
        return Err(ApiError::conflict(
            "upload_not_active",
            "parts can only be uploaded while the upload is active",
        ));
    }
    let part_count = u32::try_from(session.part_count).unwrap_or(0);
    let from = query.from.unwrap_or(1);
    let max = state.settings.max_part_urls_per_request;
    let count = query
        .count
        .unwrap_or(state.settings.initial_part_urls.min(max));
    if from < 1 || from > part_count {
        return Err(ApiError::bad_request(
            "invalid_part_number",
            format!("from must be 1..={part_count}"),
        ));
    }
    if count < 1 || count > max {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("count must be 1..={max}"),
        ));
    }
    let parts = presign(&state, &session, from, count).await?;
    Ok(Json(PartsView {
        upload_id,
        part_count: session.part_count,
        parts,
    }))
}

/// Body of `PUT /v1/uploads/{id}/parts/{n}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmRequest {
    etag: String,
}

/// Answer of a part confirmation.
#[derive(Debug, Serialize)]
pub struct ConfirmedView {
    part_number: u32,
    etag: String,
    size: i64,
}

fn strip_quotes(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// Parses a part number from the path: 1..=10,000 and within the upload's plan.
fn part_number(raw: &str, part_count: i32) -> Result<u32, ApiError> {
    match raw.parse::<u32>() {
        Ok(n) if n >= 1 && i64::from(n) <= i64::from(part_count) => Ok(n),
        _ => Err(ApiError::bad_request(
            "invalid_part_number",
            format!("part number must be 1..={part_count}"),
        )),
    }
}

/// `PUT /v1/uploads/{id}/parts/{n}`: confirms a part after checking storage really holds it
/// with that ETag and the planned size; emits `PartConfirmed`. Repeating it is harmless.
pub async fn confirm_part(
    principal: Principal,
    State(state): State<AppState>,
    Path((upload_id, raw_number)): Path<(String, String)>,
    JsonBody(request): JsonBody<ConfirmRequest>,
) -> Result<Json<ConfirmedView>, ApiError> {
    principal.require(Capability::Upload)?;
    let session = own_session(&state, &principal, &upload_id).await?;
    ensure_not_expired(&session)?;
    let number = part_number(&raw_number, session.part_count)?;
    if session.state != SessionState::Uploading {
        return Err(ApiError::conflict(
            "upload_not_active",
            "the upload no longer accepts parts",
        ));
    }
    let claimed = strip_quotes(&request.etag);
    if claimed.is_empty() || claimed.len() > 128 {
        return Err(ApiError::bad_request(
            "invalid_request",
            "etag must be 1-128 characters",
        ));
    }

    // Storage is the authority on what was uploaded, never the client.
    let listed = state
        .s3
        .list_parts()
        .bucket(&session.bucket)
        .key(&session.object_key)
        .upload_id(&session.s3_upload_id)
        .part_number_marker((number - 1).to_string())
        .max_parts(1)
        .send()
        .await
        .map_err(|e| {
            ApiError::unavailable("storage", aws_sdk_s3::error::DisplayErrorContext(&e))
        })?;
    let stored = listed
        .parts()
        .iter()
        .find(|p| p.part_number() == Some(i32::try_from(number).unwrap_or(0)));
    let Some(stored) = stored else {
        return Err(ApiError::conflict(
            "part_not_uploaded",
            format!("storage has no part {number} of this upload"),
        ));
    };
    let stored_etag = strip_quotes(stored.e_tag().unwrap_or_default()).to_string();
    if stored_etag != claimed {
        return Err(ApiError::conflict(
            "etag_mismatch",
            format!("part {number} in storage has a different etag; upload it again"),
        ));
    }
    let size = stored.size().unwrap_or(-1);
    let plan = PartPlan::for_size(u64::try_from(session.size).unwrap_or(0))
        .map_err(|e| ApiError::unavailable("plan", e))?;
    let expected = plan
        .expected_size(number)
        .and_then(|s| i64::try_from(s).ok());
    if Some(size) != expected {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "part_size_mismatch",
            format!(
                "part {number} has {size} bytes, expected {}; upload it again",
                expected.unwrap_or(0)
            ),
        ));
    }

    let already = state
        .store
        .part(&upload_id, i32::try_from(number).unwrap_or(0))
        .await
        .map_err(unavailable_cql)?;
    let duplicate = already.is_some_and(|(etag, _)| etag == stored_etag);
    if !duplicate {
        let meta = session_meta(&session);
        let at = meta.occurred_at;
        let event = Event::new(
            meta,
            PartConfirmed {
                part_number: i32::try_from(number).unwrap_or(0),
                etag: stored_etag.clone(),
                size,
            },
        );
        state.publish(&event).await?;
        state
            .store
            .put_part(
                &upload_id,
                i32::try_from(number).unwrap_or(0),
                &stored_etag,
                size,
                at,
            )
            .await
            .map_err(unavailable_cql)?;
    }
    Ok(Json(ConfirmedView {
        part_number: number,
        etag: stored_etag,
        size,
    }))
}

/// Answer of completion.
#[derive(Debug, Serialize)]
pub struct Accepted {
    upload_id: String,
    state: &'static str,
}

/// `POST /v1/uploads/{id}/complete`: 202 once `UploadCompletionRequested` is durably in Kafka
/// (assembly is the processors' job). Every part must have been confirmed.
pub async fn complete(
    principal: Principal,
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    principal.require(Capability::Upload)?;
    let session = own_session(&state, &principal, &upload_id).await?;
    ensure_not_expired(&session)?;
    match session.state {
        SessionState::Completing => {
            return Ok((
                StatusCode::ACCEPTED,
                Json(Accepted {
                    upload_id,
                    state: "assembling",
                }),
            ));
        }
        SessionState::Aborted | SessionState::Deleted => {
            return Err(ApiError::conflict(
                "upload_not_active",
                "the upload was aborted",
            ));
        }
        SessionState::Finished | SessionState::Released => {
            return Err(ApiError::conflict(
                "upload_not_active",
                "the upload was already processed",
            ));
        }
        SessionState::Uploading => {}
    }
    if session.part_count == 0 {
        return Err(ApiError::conflict(
            "client_planned",
            "this upload was started through the Uppy routes; complete it there",
        ));
    }
    let confirmed = state
        .store
        .parts(&upload_id)
        .await
        .map_err(unavailable_cql)?;
    let missing: Vec<i32> = (1..=session.part_count)
        .filter(|n| !confirmed.iter().any(|(c, _, _)| c == n))
        .collect();
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(20).map(i32::to_string).collect();
        return Err(ApiError::conflict(
            "missing_parts",
            format!(
                "{} part(s) not confirmed, e.g. {}",
                missing.len(),
                shown.join(", ")
            ),
        ));
    }
    let meta = session_meta(&session);
    let at = meta.occurred_at;
    state
        .publish(&Event::new(meta, UploadCompletionRequested {}))
        .await?;
    state
        .store
        .set_state(&upload_id, SessionState::Completing, at)
        .await
        .map_err(unavailable_cql)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            upload_id,
            state: "assembling",
        }),
    ))
}

/// `DELETE /v1/uploads/{id}`: aborts an unfinished upload (204) or deletes a completed one
/// (202; the processors remove its objects). Repeating it is harmless.
pub async fn delete(
    principal: Principal,
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Capability::Upload)?;
    let session = own_session(&state, &principal, &upload_id).await?;
    let meta = session_meta(&session);
    let (event, status) = match session.state {
        SessionState::Aborted | SessionState::Deleted | SessionState::Released => {
            return Ok(StatusCode::NO_CONTENT);
        }
        SessionState::Uploading => {
            let aborted = state
                .s3
                .abort_multipart_upload()
                .bucket(&session.bucket)
                .key(&session.object_key)
                .upload_id(&session.s3_upload_id)
                .send()
                .await;
            if let Err(error) = aborted {
                // Already gone is fine; anything else the janitor retries.
                tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&error), upload_id, "abort multipart upload failed");
            }
            (
                Event::new(
                    meta,
                    UploadAborted {
                        reason: "aborted by client".into(),
                    },
                ),
                StatusCode::NO_CONTENT,
            )
        }
        SessionState::Completing | SessionState::Finished => {
            (Event::new(meta, UploadDeleted {}), StatusCode::ACCEPTED)
        }
    };
    state.publish(&event).await?;
    let next = if session.state == SessionState::Uploading {
        SessionState::Aborted
    } else {
        SessionState::Deleted
    };
    // Exactly one ending releases the quota: this request, or the processors' terminal
    // event handled by the quota follower, whichever changes the state first.
    let release = if state
        .store
        .end_session(&upload_id, next)
        .await
        .map_err(unavailable_cql)?
    {
        Some((session.size, 1))
    } else if state
        .store
        .delete_finished(&upload_id)
        .await
        .map_err(unavailable_cql)?
    {
        // Finished uploads already gave their slot back; their bytes go now.
        Some((session.size, 0))
    } else {
        None
    };
    if let Some((bytes, uploads)) = release {
        state
            .store
            .release(&session.tenant_id, bytes, uploads)
            .await
            .map_err(unavailable_cql)?;
    }
    Ok(status)
}
