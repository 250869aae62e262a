//! Status and listing, read from the projector's read models. Right after initiation the
//! projector may not have caught up yet (milliseconds); then the API's own session answers.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};
use tributary_schemas::now_micros;

use super::{own_session, rfc3339, unavailable_cql};
use crate::auth::{Capability, Principal};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::SessionState;

/// Lifetime of presigned variant URLs.
const VARIANT_URL_TTL: Duration = Duration::from_secs(3600);

/// An error of a failed or rejected upload.
#[derive(Debug, Serialize)]
pub struct ErrorView {
    code: String,
    message: String,
}

/// A produced variant with a presigned GET URL.
#[derive(Debug, Serialize)]
pub struct VariantView {
    variant: String,
    content_type: String,
    size: i64,
    width: Option<i32>,
    height: Option<i32>,
    placeholder: Option<String>,
    url: String,
    url_expires_at: String,
}

/// Progress of the stage an upload is in (while it is `processing`).
#[derive(Debug, Serialize)]
pub struct ProgressView {
    stage: String,
    percent: f64,
    updated_at: Option<String>,
}

/// Answer of `GET /v1/uploads/{id}`.
#[derive(Debug, Serialize)]
pub struct StatusView {
    upload_id: String,
    state: String,
    filename: Option<String>,
    size: Option<i64>,
    content_type: Option<String>,
    part_count: Option<i32>,
    parts_confirmed: i64,
    bytes_confirmed: i64,
    created_at: Option<String>,
    expires_at: Option<String>,
    error: Option<ErrorView>,
    /// Present while processing, once a processor reported progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    progress: Option<ProgressView>,
    variants: Vec<VariantView>,
}

/// `GET /v1/uploads/{id}`: state, confirmed bytes and parts, variants with presigned GET URLs.
pub async fn status(
    principal: Principal,
    State(state): State<AppState>,
    Path(upload_id): Path<String>,
) -> Result<Json<StatusView>, ApiError> {
    let session = own_session(&state, &principal, &upload_id).await?;
    let row = state
        .read
        .upload(&state.cql, &upload_id)
        .await
        .map_err(unavailable_cql)?;
    let Some(row) = row.filter(|r| r.state.is_some()) else {
        // Not projected yet: the command side answers, with its own confirmed parts so that
        // state and counts agree.
        let parts = state
            .store
            .parts(&upload_id)
            .await
            .map_err(unavailable_cql)?;
        let parts_confirmed = i64::try_from(parts.len()).unwrap_or(0);
        let bytes_confirmed = parts.iter().map(|(_, _, size)| size).sum();
        let fallback = match session.state {
            SessionState::Uploading => "initiated",
            SessionState::Completing => "assembling",
            SessionState::Aborted => "aborted",
            SessionState::Deleted => "deleted",
            SessionState::Finished => "ready",
            SessionState::Released => "rejected",
        };
        return Ok(Json(StatusView {
            upload_id,
            state: fallback.into(),
            filename: Some(session.filename),
            size: Some(session.size),
            content_type: Some(session.content_type),
            part_count: Some(session.part_count),
            parts_confirmed,
            bytes_confirmed,
            created_at: Some(rfc3339(session.created_at)),
            expires_at: Some(rfc3339(session.expires_at)),
            error: None,
            progress: None,
            variants: Vec::new(),
        }));
    };
    let (parts_confirmed, bytes_confirmed) = state
        .read
        .confirmed(&state.cql, &upload_id)
        .await
        .map_err(unavailable_cql)?;
    let mut variants = Vec::new();
    let now = now_micros();
    let url_expires_at = rfc3339(now + i64::try_from(VARIANT_URL_TTL.as_micros()).unwrap_or(0));
    for variant in state
        .read
        .variants(&state.cql, &upload_id)
        .await
        .map_err(unavailable_cql)?
    {
        let url = state.presigner.get_object(
            &session.bucket,
            &variant.object_key,
            VARIANT_URL_TTL.as_secs(),
            now / 1_000_000,
        );
        variants.push(VariantView {
            variant: variant.variant,
            content_type: variant.content_type,
            size: variant.size,
            width: variant.width,
            height: variant.height,
            placeholder: variant.placeholder,
            url,
            url_expires_at: url_expires_at.clone(),
        });
    }
    let progress = match row.state.as_deref() {
        Some("processing") => state
            .read
            .progress(&state.cql, &upload_id)
            .await
            .map_err(unavailable_cql)?
            .map(|p| ProgressView {
                stage: p.stage,
                percent: p.percent,
                updated_at: p.updated_at_ms.map(|ms| rfc3339(ms * 1000)),
            }),
        _ => None,
    };
    Ok(Json(StatusView {
        upload_id,
        state: row.state.unwrap_or_default(),
        filename: row.filename,
        size: row.size,
        content_type: row.content_type,
        part_count: row.part_count,
        parts_confirmed,
        bytes_confirmed,
        created_at: row.created_at_ms.map(|ms| rfc3339(ms * 1000)),
        expires_at: row.expires_at_ms.map(|ms| rfc3339(ms * 1000)),
        error: match (row.error_code, row.error_message) {
            (Some(code), Some(message)) => Some(ErrorView { code, message }),
            _ => None,
        },
        progress,
        variants,
    }))
}

/// Query of `GET /v1/uploads`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    limit: Option<i32>,
}

/// One entry of a listing.
#[derive(Debug, Serialize)]
pub struct ListEntry {
    upload_id: String,
    state: Option<String>,
    filename: Option<String>,
    size: Option<i64>,
    content_type: Option<String>,
}

/// Answer of `GET /v1/uploads`.
#[derive(Debug, Serialize)]
pub struct ListView {
    uploads: Vec<ListEntry>,
    next_cursor: Option<String>,
}

fn valid_cursor(cursor: &str) -> bool {
    cursor.split_once('/').is_some_and(|(month, id)| {
        month.len() == 7
            && month.as_bytes()[4] == b'-'
            && month
                .bytes()
                .enumerate()
                .all(|(i, b)| i == 4 || b.is_ascii_digit())
            && uuid::Uuid::parse_str(id).is_ok()
    })
}

/// `GET /v1/uploads?cursor=&limit=`: the tenant's uploads, newest first, with a stable cursor.
pub async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListView>, ApiError> {
    principal.require(Capability::Upload)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "limit must be 1..=200",
        ));
    }
    if let Some(cursor) = &query.cursor
        && !valid_cursor(cursor)
    {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "cursor is not one this api returned",
        ));
    }
    let page = state
        .read
        .list(
            &state.cql,
            &principal.tenant_id,
            query.cursor.as_deref(),
            limit,
        )
        .await
        .map_err(unavailable_cql)?;
    Ok(Json(ListView {
        uploads: page
            .uploads
            .into_iter()
            .map(|u| ListEntry {
                upload_id: u.upload_id,
                state: u.state,
                filename: u.filename,
                size: u.size,
                content_type: u.content_type,
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
