//! The janitor: expires sessions that were not completed in time and deletes the objects of
//! rejected or deleted uploads.
//!
//! It follows the lifecycle log to learn each session's deadline (`UploadInitiated`) and
//! when it stopped mattering (completion requested, aborted, deleted, rejected). A sweep
//! every few seconds expires what is overdue: it aborts the multipart upload (the storage
//! frees the parts) and emits `UploadExpired`, on which the API releases the quota.
//!
//! Sessions are expired only `expiry_grace_secs` after their deadline: the API refuses
//! completion after the deadline, so a completion it accepted just before is in the log by
//! then, provided the janitor does not lag by more than the grace period.
//!
//! It is also the watchdog of uploads after completion: one that has not reached a final
//! state (`UploadReady`, `UploadRejected`, `ProcessingFailed`, deleted) within
//! `processing_timeout_secs` of `UploadCompletionRequested` — an event dead-lettered by a
//! processor, a processor down for hours — gets `ProcessingFailed` (stage `watchdog`, the
//! last step it reached in the reason), so it never stays "processing" forever and its
//! concurrency slot is released. A processor that finishes it later still may: the later
//! final event wins in the read models.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_runtime::kafka::{HandleError, Handler, Message};
use tributary_runtime::topics;
use tributary_schemas::{
    Event, EventMeta, EventPayload, ProcessingFailed, UploadExpired, now_micros,
};

use crate::outcome::retry;
use crate::service::{Context, decode};
use crate::storage::{self, StorageError};
use crate::store::{Deadline, Schedule, UploadFacts, hour_of};

/// Default consumer group.
pub const GROUP: &str = "tributary-janitor";

/// Outcome stage recorded when a session no longer needs expiring.
const CLOSED: &str = "closed";

/// Outcome stage recorded when an upload reached a final state (the watchdog's business is
/// done).
const FINISHED: &str = "finished";

/// Outcome stage holding the last processing step seen (for the watchdog's reason).
const LAST_STEP: &str = "last_step";

/// How far back a first sweep looks (longer than any session lifetime).
const FIRST_SWEEP_HOURS: i64 = 8 * 24;

/// Consumes the lifecycle topic and sweeps for expired sessions until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) -> anyhow::Result<()> {
    let group = ctx.settings.group_or(GROUP);
    let sweeper = tokio::spawn(sweep_loop(ctx.clone(), stop.clone()));
    let handler = Janitor { ctx: ctx.clone() };
    let consumed = ctx
        .consume(&group, &[topics::LIFECYCLE], handler, stop.clone())
        .await;
    stop.cancel();
    let _ = sweeper.await;
    consumed
}

/// The lifecycle handler.
struct Janitor {
    ctx: Context,
}

impl Handler for Janitor {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let event = decode(self.ctx.catalog(), message).await?;
        let Some(upload_id) = event.meta.upload_id.clone() else {
            return Ok(());
        };
        let store = &self.ctx.store;
        match &event.payload {
            EventPayload::UploadInitiated(initiated) => {
                let facts = UploadFacts::from_event(&upload_id, &event.meta.tenant_id, initiated);
                store.put_upload(&facts).await.map_err(retry)?;
                store
                    .put_deadline(
                        Schedule::Expiry,
                        &Deadline {
                            upload_id,
                            tenant_id: event.meta.tenant_id.clone(),
                            expires_at: initiated.expires_at,
                        },
                    )
                    .await
                    .map_err(retry)
            }
            EventPayload::UploadCompletionRequested(_) => {
                store
                    .put_outcome(&upload_id, CLOSED, event.event_type())
                    .await
                    .map_err(retry)?;
                let timeout = self.ctx.settings.processing_timeout();
                store
                    .put_deadline(
                        Schedule::Watchdog,
                        &Deadline {
                            upload_id,
                            tenant_id: event.meta.tenant_id.clone(),
                            expires_at: event.meta.occurred_at.saturating_add(
                                i64::try_from(timeout.as_micros()).unwrap_or(i64::MAX),
                            ),
                        },
                    )
                    .await
                    .map_err(retry)
            }
            EventPayload::UploadAborted(_) | EventPayload::UploadExpired(_) => store
                .put_outcome(&upload_id, CLOSED, event.event_type())
                .await
                .map_err(retry),
            EventPayload::UploadAssembled(_)
            | EventPayload::UploadValidated(_)
            | EventPayload::MediaJobRequested(_)
            | EventPayload::VariantProduced(_) => store
                .put_outcome(&upload_id, LAST_STEP, event.event_type())
                .await
                .map_err(retry),
            EventPayload::UploadReady(_) | EventPayload::ProcessingFailed(_) => store
                .put_outcome(&upload_id, FINISHED, event.event_type())
                .await
                .map_err(retry),
            EventPayload::UploadRejected(_) | EventPayload::UploadDeleted(_) => {
                store
                    .put_outcome(&upload_id, CLOSED, event.event_type())
                    .await
                    .map_err(retry)?;
                store
                    .put_outcome(&upload_id, FINISHED, event.event_type())
                    .await
                    .map_err(retry)?;
                clean_up(&self.ctx, &upload_id).await
            }
            _ => Ok(()),
        }
    }
}

/// Deletes everything stored for an upload (original, variants, unfinished parts).
async fn clean_up(ctx: &Context, upload_id: &str) -> Result<(), HandleError> {
    let Some(facts) = ctx.store.upload(upload_id).await.map_err(retry)? else {
        tracing::warn!(%upload_id, "no facts about this upload; nothing to clean up");
        return Ok(());
    };
    abort_multipart(ctx, &facts).await.map_err(retry)?;
    let deleted = storage::delete_prefix(&ctx.s3, &facts.bucket, &facts.prefix())
        .await
        .map_err(retry)?;
    metrics::counter!("tributary_janitor_objects_deleted_total").increment(deleted as u64);
    tracing::info!(%upload_id, deleted, "objects deleted");
    Ok(())
}

/// Aborts the upload's multipart upload; already completed or aborted is fine.
async fn abort_multipart(ctx: &Context, facts: &UploadFacts) -> Result<(), StorageError> {
    let aborted = ctx
        .s3
        .abort_multipart_upload()
        .bucket(&facts.bucket)
        .key(&facts.object_key)
        .upload_id(&facts.s3_upload_id)
        .send()
        .await;
    match aborted.map_err(|e| StorageError::from_sdk("abort multipart upload", e)) {
        Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(error) => Err(error),
    }
}

async fn sweep_loop(ctx: Context, stop: CancellationToken) {
    let interval = ctx.settings.sweep_interval();
    loop {
        for schedule in [Schedule::Expiry, Schedule::Watchdog] {
            if let Err(error) = sweep(&ctx, schedule).await {
                tracing::warn!(%error, ?schedule, "sweep failed; retrying at the next one");
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One pass over `schedule`: handles every deadline whose time (plus, for expiry, the grace)
/// has passed; returns how many uploads it expired or failed.
pub async fn sweep(ctx: &Context, schedule: Schedule) -> Result<usize, HandleError> {
    let grace = match schedule {
        Schedule::Expiry => Duration::from_secs(ctx.settings.expiry_grace_secs),
        Schedule::Watchdog => Duration::ZERO,
    };
    let now = now_micros() - i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let current = hour_of(now);
    let first = ctx
        .store
        .cursor(schedule.cursor())
        .await
        .map_err(retry)?
        .unwrap_or(current - FIRST_SWEEP_HOURS);
    let mut acted = 0;
    for hour in first..=current {
        for deadline in ctx.store.due(schedule, hour, now).await.map_err(retry)? {
            let done = match schedule {
                Schedule::Expiry => expire(ctx, &deadline).await?,
                Schedule::Watchdog => fail_stuck(ctx, &deadline).await?,
            };
            if done {
                acted += 1;
            }
            ctx.store
                .delete_deadline(schedule, &deadline)
                .await
                .map_err(retry)?;
        }
    }
    // Every deadline of a past hour is due, and all were handled above.
    ctx.store
        .put_cursor(schedule.cursor(), current)
        .await
        .map_err(retry)?;
    Ok(acted)
}

/// Fails an upload that is still unfinished at its watchdog deadline; true if it did.
async fn fail_stuck(ctx: &Context, deadline: &Deadline) -> Result<bool, HandleError> {
    let upload_id = &deadline.upload_id;
    let store = &ctx.store;
    if store
        .outcome(upload_id, FINISHED)
        .await
        .map_err(retry)?
        .is_some()
    {
        return Ok(false);
    }
    let last_step = store
        .outcome(upload_id, LAST_STEP)
        .await
        .map_err(retry)?
        .unwrap_or_else(|| "UploadCompletionRequested".to_string());
    let timeout = ctx.settings.processing_timeout().as_secs();
    let event = Event::new(
        EventMeta::new(
            &deadline.tenant_id,
            Some(upload_id.clone()),
            ctx.producer_name.clone(),
            upload_id.clone(),
            None,
        ),
        ProcessingFailed {
            stage: "watchdog".into(),
            reason: format!(
                "processing_timeout: not finished {timeout} s after completion was requested \
                 (last step: {last_step})"
            ),
            retryable: true,
        },
    );
    ctx.publish(&event).await?;
    store
        .put_outcome(upload_id, FINISHED, event.event_type())
        .await
        .map_err(retry)?;
    metrics::counter!("tributary_janitor_stuck_uploads_failed_total").increment(1);
    tracing::warn!(%upload_id, %last_step, "upload stuck after completion; failed by the watchdog");
    Ok(true)
}

/// Expires one session unless it was closed meanwhile; true if it expired it.
async fn expire(ctx: &Context, deadline: &Deadline) -> Result<bool, HandleError> {
    let upload_id = &deadline.upload_id;
    let store = &ctx.store;
    if store
        .outcome(upload_id, CLOSED)
        .await
        .map_err(retry)?
        .is_some()
        || store
            .outcome(upload_id, "assembly")
            .await
            .map_err(retry)?
            .is_some()
    {
        return Ok(false);
    }
    let Some(facts) = store.upload(upload_id).await.map_err(retry)? else {
        return Ok(false);
    };
    abort_multipart(ctx, &facts).await.map_err(retry)?;
    let event = Event::new(
        EventMeta::new(
            &deadline.tenant_id,
            Some(upload_id.clone()),
            ctx.producer_name.clone(),
            upload_id.clone(),
            None,
        ),
        UploadExpired {},
    );
    ctx.publish(&event).await?;
    store
        .put_outcome(upload_id, CLOSED, event.event_type())
        .await
        .map_err(retry)?;
    metrics::counter!("tributary_janitor_expired_total").increment(1);
    tracing::info!(%upload_id, "session expired");
    Ok(true)
}
