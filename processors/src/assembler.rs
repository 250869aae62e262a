//! The assembler: folds `PartConfirmed` into the server-authoritative manifest and, on
//! `UploadCompletionRequested`, completes the S3 multipart upload with the confirmed ETags.
//!
//! Idempotent: a redelivered or duplicate completion request finds the `assembled` outcome
//! and does nothing; a completion that reached the storage but whose event was not yet
//! published (crash in between) is recognised by the storage answering `NoSuchUpload` while
//! the object exists with the expected size.

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tributary_runtime::kafka::{HandleError, Handler, Message};
use tributary_runtime::topics;
use tributary_schemas::{Event, EventPayload, UploadAssembled};

use crate::outcome::{Rejection, reject, retry};
use crate::service::{Context, decode};
use crate::storage::StorageError;
use crate::store::{ConfirmedPart, UploadFacts};

/// Default consumer group.
pub const GROUP: &str = "tributary-assembler";

/// Outcome stage recorded once an upload is assembled (or rejected while assembling).
const STAGE: &str = "assembly";

/// Consumes the lifecycle topic until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) -> anyhow::Result<()> {
    let group = ctx.settings.group_or(GROUP);
    let handler = Assembler { ctx: ctx.clone() };
    ctx.consume(&group, &[topics::LIFECYCLE], handler, stop)
        .await
}

/// The lifecycle handler.
struct Assembler {
    ctx: Context,
}

impl Handler for Assembler {
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
            EventPayload::PartConfirmed(part) => {
                let part = ConfirmedPart {
                    number: part.part_number,
                    etag: part.etag.clone(),
                    size: part.size,
                };
                self.ctx
                    .store
                    .put_part(&upload_id, &part)
                    .await
                    .map_err(retry)
            }
            EventPayload::UploadCompletionRequested(_) => {
                assemble(&self.ctx, &event, &upload_id).await
            }
            _ => Ok(()),
        }
    }
}

/// Completes the multipart upload of `upload_id` and reports the result.
async fn assemble(ctx: &Context, trigger: &Event, upload_id: &str) -> Result<(), HandleError> {
    if ctx
        .store
        .outcome(upload_id, STAGE)
        .await
        .map_err(retry)?
        .is_some()
    {
        tracing::debug!(%upload_id, "already assembled; duplicate completion request ignored");
        return Ok(());
    }
    let Some(facts) = ctx.store.upload(upload_id).await.map_err(retry)? else {
        let rejection = Rejection::new(
            "manifest_missing",
            "the upload's initiation was never seen by the assembler",
        );
        return reject(ctx, trigger, STAGE, rejection).await;
    };
    let parts = ctx.store.parts(upload_id).await.map_err(retry)?;
    let expected_size = match check_manifest(&facts, &parts) {
        Ok(size) => size,
        Err(rejection) => return reject(ctx, trigger, STAGE, rejection).await,
    };
    let etag = match complete(ctx, &facts, &parts, expected_size).await {
        Ok(etag) => etag,
        Err(Failure::Rejected(rejection)) => return reject(ctx, trigger, STAGE, rejection).await,
        Err(Failure::Retry(reason)) => return Err(HandleError::Retry(reason)),
    };
    let sha256 = match &facts.sha256 {
        None => None,
        Some(declared) => match verify_sha256(ctx, &facts, declared).await {
            Ok(()) => Some(declared.clone()),
            Err(Failure::Rejected(rejection)) => {
                return reject(ctx, trigger, STAGE, rejection).await;
            }
            Err(Failure::Retry(reason)) => return Err(HandleError::Retry(reason)),
        },
    };
    let event = Event::new(
        trigger.meta.caused_by(ctx.producer_name.clone()),
        UploadAssembled {
            size: expected_size,
            etag: etag.clone(),
            sha256,
        },
    );
    ctx.publish(&event).await?;
    ctx.store
        .put_outcome(upload_id, STAGE, &etag)
        .await
        .map_err(retry)?;
    metrics::counter!("tributary_assembler_assembled_total").increment(1);
    metrics::counter!("tributary_assembler_bytes_total").increment(expected_size.unsigned_abs());
    tracing::info!(%upload_id, size = expected_size, "upload assembled");
    Ok(())
}

/// Checks the confirmed parts against the plan; returns the object's size.
///
/// A planned session needs exactly parts 1..=part_count whose sizes add up to the declared
/// size; a client-planned (Uppy) session needs parts 1..=n without gaps.
pub fn check_manifest(facts: &UploadFacts, parts: &[ConfirmedPart]) -> Result<i64, Rejection> {
    if parts.is_empty() {
        return Err(Rejection::new(
            "incomplete_manifest",
            "no part was confirmed",
        ));
    }
    for (index, part) in parts.iter().enumerate() {
        let expected = i32::try_from(index + 1).unwrap_or(i32::MAX);
        if part.number != expected {
            return Err(Rejection::new(
                "incomplete_manifest",
                format!("part {expected} was never confirmed"),
            ));
        }
    }
    let size: i64 = parts.iter().map(|p| p.size).sum();
    if facts.part_count > 0 {
        let count = i32::try_from(parts.len()).unwrap_or(i32::MAX);
        if count != facts.part_count {
            return Err(Rejection::new(
                "incomplete_manifest",
                format!("{count} of {} parts confirmed", facts.part_count),
            ));
        }
        if size != facts.size {
            return Err(Rejection::new(
                "size_mismatch",
                format!(
                    "confirmed parts hold {size} bytes, {} were declared",
                    facts.size
                ),
            ));
        }
    }
    Ok(size)
}

/// What went wrong in a storage step.
enum Failure {
    Rejected(Rejection),
    Retry(String),
}

impl From<StorageError> for Failure {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::Unavailable(reason) => Self::Retry(reason),
            StorageError::NotFound(reason) => Self::Rejected(Rejection::new(
                "object_missing",
                format!("the uploaded object is gone ({reason})"),
            )),
            StorageError::Refused { code, message } => Self::Rejected(Rejection::new(
                "assembly_refused",
                format!("the storage refused to assemble the parts: {code} {message}"),
            )),
        }
    }
}

/// Completes the multipart upload (or recognises that an earlier attempt did) and checks the
/// object's size; returns its ETag.
async fn complete(
    ctx: &Context,
    facts: &UploadFacts,
    parts: &[ConfirmedPart],
    expected_size: i64,
) -> Result<String, Failure> {
    let completed = CompletedMultipartUpload::builder()
        .set_parts(Some(
            parts
                .iter()
                .map(|p| {
                    CompletedPart::builder()
                        .part_number(p.number)
                        .e_tag(&p.etag)
                        .build()
                })
                .collect(),
        ))
        .build();
    let answer = ctx
        .s3
        .complete_multipart_upload()
        .bucket(&facts.bucket)
        .key(&facts.object_key)
        .upload_id(&facts.s3_upload_id)
        .multipart_upload(completed)
        .send()
        .await;
    match answer {
        Ok(_) => {}
        Err(error) => match StorageError::from_sdk("complete multipart upload", error) {
            // Completed by an earlier attempt whose outcome was not recorded: the object
            // check below decides.
            StorageError::NotFound(_) => {
                tracing::info!(upload_id = %facts.upload_id, "multipart upload already completed or aborted; checking the object");
            }
            other => return Err(other.into()),
        },
    }
    let head = ctx
        .s3
        .head_object()
        .bucket(&facts.bucket)
        .key(&facts.object_key)
        .send()
        .await
        .map_err(|e| match StorageError::from_sdk("head object", e) {
            StorageError::NotFound(_) => Failure::Rejected(Rejection::new(
                "upload_gone",
                "the multipart upload no longer exists (aborted or expired)",
            )),
            other => other.into(),
        })?;
    let size = head.content_length().unwrap_or(-1);
    if size != expected_size {
        return Err(Failure::Rejected(Rejection::new(
            "size_mismatch",
            format!("the assembled object holds {size} bytes, {expected_size} expected"),
        )));
    }
    Ok(head.e_tag().unwrap_or_default().to_string())
}

/// Streams the object through SHA-256 (constant memory) and compares with the declared hex.
async fn verify_sha256(ctx: &Context, facts: &UploadFacts, declared: &str) -> Result<(), Failure> {
    let mut object = ctx
        .s3
        .get_object()
        .bucket(&facts.bucket)
        .key(&facts.object_key)
        .send()
        .await
        .map_err(|e| Failure::from(StorageError::from_sdk("get object", e)))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = object
        .body
        .try_next()
        .await
        .map_err(|e| Failure::Retry(format!("read object body: {e}")))?
    {
        // Chunks are small (tens of KiB): hashing one takes microseconds, not worth a thread hop.
        hasher.update(&chunk);
    }
    let actual = hex::encode(hasher.finalize());
    if actual.eq_ignore_ascii_case(declared) {
        Ok(())
    } else {
        Err(Failure::Rejected(Rejection::new(
            "checksum_mismatch",
            format!("the file's sha256 is {actual}, {declared} was declared"),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(size: i64, part_count: i32) -> UploadFacts {
        UploadFacts {
            upload_id: "u".into(),
            tenant_id: "t".into(),
            filename: "f".into(),
            size,
            content_type: "image/jpeg".into(),
            bucket: "b".into(),
            object_key: "uploads/t/u/original".into(),
            s3_upload_id: "s".into(),
            part_size: 10,
            part_count,
            sha256: None,
            expires_at: 0,
        }
    }

    fn part(number: i32, size: i64) -> ConfirmedPart {
        ConfirmedPart {
            number,
            etag: format!("\"e{number}\""),
            size,
        }
    }

    #[test]
    fn a_complete_planned_manifest_gives_the_declared_size() {
        assert_eq!(
            check_manifest(&facts(25, 3), &[part(1, 10), part(2, 10), part(3, 5)]),
            Ok(25)
        );
    }

    #[test]
    fn gaps_missing_parts_and_wrong_sizes_are_rejected() {
        let gap = check_manifest(&facts(20, 2), &[part(2, 10)]).expect_err("rejected");
        assert_eq!(gap.code, "incomplete_manifest");
        let short = check_manifest(&facts(20, 2), &[part(1, 10)]).expect_err("rejected");
        assert_eq!(short.code, "incomplete_manifest");
        let size =
            check_manifest(&facts(21, 2), &[part(1, 10), part(2, 10)]).expect_err("rejected");
        assert_eq!(size.code, "size_mismatch");
        assert!(check_manifest(&facts(0, 0), &[]).is_err());
    }

    #[test]
    fn client_planned_manifests_take_the_sum_of_their_parts() {
        assert_eq!(
            check_manifest(&facts(0, 0), &[part(1, 7), part(2, 3)]),
            Ok(10)
        );
    }
}
