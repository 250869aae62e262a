//! Gives quota back when the processors end an upload.
//!
//! The API reserves bytes and an upload slot at initiation; the processors decide the end
//! (`UploadReady`, `ProcessingFailed`, `UploadRejected`, `UploadExpired`) in events. This
//! consumer (group `tributary-ingest-api-quota`, shared by all API instances) follows the
//! lifecycle log and releases what each ending frees: the slot always, the bytes too when
//! the file is gone (rejected, expired).
//!
//! Exactly once per upload: the session moves to its terminal state with a compare-and-set
//! first, and only the winner releases. A crash between the two leaves the reservation
//! overstated (never over-committed); the usage can be reconciled from the log.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_runtime::events::EventPublisher;
use tributary_runtime::kafka::{ConsumerSettings, HandleError, Handler, Message, run_consumer};
use tributary_runtime::{Config, topics};
use tributary_schemas::EventPayload;

use crate::store::{SessionState, Store};

/// Consumer group of the follower.
pub const GROUP: &str = "tributary-ingest-api-quota";

/// Follows the lifecycle topic until `stop`; errors are logged, the API keeps serving.
pub async fn run(
    config: Arc<Config>,
    store: Arc<Store>,
    events: EventPublisher,
    stop: CancellationToken,
) {
    let settings = ConsumerSettings::new(GROUP, &[topics::LIFECYCLE]);
    let handler = QuotaFollower {
        store,
        events: events.clone(),
    };
    if let Err(error) =
        run_consumer(&config.kafka, &settings, events.producer(), handler, stop).await
    {
        tracing::error!(%error, "quota follower stopped; reservations of ended uploads are not released");
    }
    events.producer().flush(Duration::from_secs(5));
}

struct QuotaFollower {
    store: Arc<Store>,
    events: EventPublisher,
}

impl Handler for QuotaFollower {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let event = tributary_runtime::events::decode(self.events.catalog(), message)
            .await
            .map_err(|e| HandleError::Poison(format!("undecodable event: {e}")))?;
        let (next, frees_bytes) = match &event.payload {
            EventPayload::UploadReady(_) | EventPayload::ProcessingFailed(_) => {
                (SessionState::Finished, false)
            }
            EventPayload::UploadRejected(_) | EventPayload::UploadExpired(_) => {
                (SessionState::Released, true)
            }
            _ => return Ok(()),
        };
        let Some(upload_id) = event.meta.upload_id.as_deref() else {
            return Ok(());
        };
        let retry = |e: crate::store::StoreError| HandleError::Retry(e.to_string());
        let Some(session) = self.store.session(upload_id).await.map_err(retry)? else {
            return Ok(());
        };
        if !self
            .store
            .end_session(upload_id, next)
            .await
            .map_err(retry)?
        {
            return Ok(());
        }
        let bytes = if frees_bytes { session.size } else { 0 };
        self.store
            .release(&session.tenant_id, bytes, 1)
            .await
            .map_err(retry)?;
        metrics::counter!("tributary_api_quota_released_total", "event_type" => event.event_type())
            .increment(1);
        tracing::info!(upload_id, tenant_id = %session.tenant_id, bytes, "quota released");
        Ok(())
    }
}
