//! The validator: reads the first and last bytes of each assembled object (range GETs, never
//! the whole file), judges them against the declared type ([`sniff::judge`]), and either
//! rejects the upload or sends it on: a media job for images and videos the transformer
//! handles, `UploadReady` for everything else. With `clamd_addr` set, accepted objects are
//! also streamed through clamd ([`malware`]) and rejected when a signature matches.

pub mod malware;
pub mod sniff;

use tokio_util::sync::CancellationToken;
use tributary_runtime::kafka::{HandleError, Handler, Message};
use tributary_runtime::topics;
use tributary_schemas::{Event, EventPayload, MediaJobRequested, UploadReady, UploadValidated};

use crate::outcome::{Rejection, reject, retry};
use crate::service::{Context, decode};
use crate::storage::{self, StorageError};
use crate::store::UploadFacts;
use malware::{Clamd, ScanVerdict};
use sniff::Verdict;

/// Default consumer group.
pub const GROUP: &str = "tributary-validator";

/// Outcome stage recorded once an upload is judged.
const STAGE: &str = "validation";

/// Leading bytes read for sniffing.
const HEAD_BYTES: u64 = 4096;

/// Trailing bytes read for polyglot checks (a ZIP directory hides at the end).
const TAIL_BYTES: u64 = 65_536;

/// Consumes the lifecycle topic until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) -> anyhow::Result<()> {
    let group = ctx.settings.group_or(GROUP);
    let handler = Validator { ctx: ctx.clone() };
    ctx.consume(&group, &[topics::LIFECYCLE], handler, stop)
        .await
}

/// The lifecycle handler.
struct Validator {
    ctx: Context,
}

impl Handler for Validator {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let event = decode(self.ctx.catalog(), message).await?;
        let Some(upload_id) = event.meta.upload_id.clone() else {
            return Ok(());
        };
        match &event.payload {
            EventPayload::UploadInitiated(initiated) => {
                let facts = UploadFacts::from_event(&upload_id, &event.meta.tenant_id, initiated);
                self.ctx.store.put_upload(&facts).await.map_err(retry)
            }
            EventPayload::UploadAssembled(assembled) => {
                validate(&self.ctx, &event, &upload_id, assembled.size).await
            }
            _ => Ok(()),
        }
    }
}

/// What the transformer does with a detected type, if anything.
pub fn media_kind(content_type: &str) -> Option<&'static str> {
    match content_type {
        "image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/heic" | "image/avif" => {
            Some(MediaJobRequested::KIND_IMAGE)
        }
        "video/mp4" | "video/quicktime" | "video/webm" | "video/x-matroska"
        // AVI is refused by the transformer's container allowlist, with a reason, rather
        // than silently stored: it is a classic carrier of ffmpeg playlist tricks.
        | "video/x-msvideo" => {
            Some(MediaJobRequested::KIND_VIDEO)
        }
        _ => None,
    }
}

async fn validate(
    ctx: &Context,
    trigger: &Event,
    upload_id: &str,
    size: i64,
) -> Result<(), HandleError> {
    if ctx
        .store
        .outcome(upload_id, STAGE)
        .await
        .map_err(retry)?
        .is_some()
    {
        return Ok(());
    }
    let Some(facts) = ctx.store.upload(upload_id).await.map_err(retry)? else {
        let rejection = Rejection::new(
            "manifest_missing",
            "the upload's initiation was never seen by the validator",
        );
        return reject(ctx, trigger, STAGE, rejection).await;
    };
    if size == 0 {
        return reject(
            ctx,
            trigger,
            STAGE,
            Rejection::new("empty_file", "the file is empty"),
        )
        .await;
    }
    let head = read(ctx, &facts, &format!("bytes=0-{}", HEAD_BYTES - 1)).await;
    let tail = match head {
        Ok(_) if size.unsigned_abs() > HEAD_BYTES => {
            read(ctx, &facts, &format!("bytes=-{TAIL_BYTES}")).await
        }
        Ok(ref bytes) => Ok(bytes.clone()),
        Err(_) => Ok(Vec::new()),
    };
    let (head, tail) = match (head, tail) {
        (Ok(head), Ok(tail)) => (head, tail),
        (Err(StorageError::NotFound(_)), _) | (_, Err(StorageError::NotFound(_))) => {
            let rejection = Rejection::new("object_missing", "the assembled object is gone");
            return reject(ctx, trigger, STAGE, rejection).await;
        }
        (Err(e), _) | (_, Err(e)) => return Err(HandleError::Retry(e.to_string())),
    };
    let detected = match sniff::judge(&facts.content_type, &head, &tail) {
        Verdict::Accept { detected } => detected,
        Verdict::Reject { code, reason } => {
            return reject(ctx, trigger, STAGE, Rejection::new(code, reason)).await;
        }
    };
    if let Some(rejection) = scan_for_malware(ctx, &facts, size).await? {
        return reject(ctx, trigger, STAGE, rejection).await;
    }
    let meta = || trigger.meta.caused_by(ctx.producer_name.clone());
    ctx.publish(&Event::new(
        meta(),
        UploadValidated {
            detected_content_type: detected.clone(),
        },
    ))
    .await?;
    match media_kind(&detected) {
        Some(kind) => {
            ctx.publish(&Event::new(
                meta(),
                MediaJobRequested {
                    kind: kind.to_string(),
                    bucket: facts.bucket.clone(),
                    object_key: facts.object_key.clone(),
                    content_type: detected.clone(),
                    size,
                },
            ))
            .await?;
        }
        // Nothing to derive: the upload is ready as it is.
        None => {
            ctx.publish(&Event::new(meta(), UploadReady { variant_count: 0 }))
                .await?;
        }
    }
    ctx.store
        .put_outcome(upload_id, STAGE, &detected)
        .await
        .map_err(retry)?;
    metrics::counter!("tributary_validator_accepted_total").increment(1);
    tracing::info!(%upload_id, detected, "upload validated");
    Ok(())
}

/// The malware-scan stage: `Some(rejection)` when clamd found a signature. Objects above
/// `malware_scan_max_bytes` are not scanned (counted and logged); a scanner that is down or
/// answers with an error is retried, never skipped.
async fn scan_for_malware(
    ctx: &Context,
    facts: &UploadFacts,
    size: i64,
) -> Result<Option<Rejection>, HandleError> {
    let Some(addr) = ctx.settings.clamd_addr.as_deref() else {
        return Ok(None);
    };
    if size.unsigned_abs() > ctx.settings.malware_scan_max_bytes {
        metrics::counter!("tributary_validator_scans_skipped_total", "reason" => "too_large")
            .increment(1);
        tracing::warn!(upload_id = %facts.upload_id, size, "too large for the malware scan; not scanned");
        return Ok(None);
    }
    let object = match ctx
        .s3
        .get_object()
        .bucket(&facts.bucket)
        .key(&facts.object_key)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("get object", e))
    {
        Ok(object) => object,
        Err(StorageError::NotFound(_)) => {
            return Ok(Some(Rejection::new(
                "object_missing",
                "the assembled object is gone",
            )));
        }
        Err(error) => return Err(HandleError::Retry(error.to_string())),
    };
    let clamd = Clamd::new(addr, ctx.settings.malware_scan_timeout());
    let started = std::time::Instant::now();
    let verdict = clamd
        .scan(object.body.into_async_read())
        .await
        .map_err(|error| HandleError::Retry(format!("malware scan: {error}")))?;
    metrics::histogram!("tributary_validator_scan_seconds").record(started.elapsed().as_secs_f64());
    Ok(match verdict {
        ScanVerdict::Clean => None,
        ScanVerdict::Infected(signature) => {
            metrics::counter!("tributary_validator_malware_found_total").increment(1);
            Some(Rejection::new(
                "malware_detected",
                format!("the file contains malware ({signature})"),
            ))
        }
    })
}

async fn read(ctx: &Context, facts: &UploadFacts, range: &str) -> Result<Vec<u8>, StorageError> {
    storage::read_range(&ctx.s3, &facts.bucket, &facts.object_key, range).await
}
