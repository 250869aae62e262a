//! The terminal answers a processor gives about an upload, as events.

use tributary_runtime::kafka::HandleError;
use tributary_schemas::{Event, UploadRejected};

use crate::service::Context;

/// Why a stage refused an upload: becomes an `UploadRejected` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Machine-readable reason, e.g. `content_type_mismatch`.
    pub code: &'static str,
    /// What a user can read to understand it.
    pub reason: String,
}

impl Rejection {
    /// A rejection with `code` and `reason`.
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

/// Publishes `UploadRejected` caused by `trigger`, then marks `stage` done so a redelivery
/// does not reject twice. The janitor deletes the objects and the API releases the quota
/// when they see the event.
pub async fn reject(
    ctx: &Context,
    trigger: &Event,
    stage: &'static str,
    rejection: Rejection,
) -> Result<(), HandleError> {
    let upload_id = trigger.meta.upload_id.clone().unwrap_or_default();
    tracing::info!(%upload_id, stage, code = rejection.code, reason = %rejection.reason, "upload rejected");
    metrics::counter!("tributary_uploads_rejected_total", "stage" => stage, "reason" => rejection.code)
        .increment(1);
    let event = Event::new(
        trigger.meta.caused_by(ctx.producer_name.clone()),
        UploadRejected {
            reason_code: rejection.code.to_string(),
            reason: rejection.reason,
            stage: stage.to_string(),
        },
    );
    ctx.publish(&event).await?;
    ctx.store
        .put_outcome(&upload_id, stage, &format!("rejected:{}", rejection.code))
        .await
        .map_err(retry)
}

/// A store failure is always retryable.
pub fn retry(error: impl std::fmt::Display) -> HandleError {
    HandleError::Retry(error.to_string())
}
