//! The media transformer: consumes the media-jobs topic (keyed by upload id, so one tenant's
//! burst spreads across partitions and workers) and produces variants.
//!
//! - Images: rendered in an isolated child process ([`isolate`]) into WebP `display` and
//!   `thumb` variants plus a ThumbHash placeholder.
//! - Videos: `ffprobe` with allowlists and caps, then an HLS ladder and a poster ([`video`]),
//!   with progress events on the progress topic.
//!
//! Every output is uploaded under the upload's prefix, then announced with
//! `VariantProduced`, then `UploadReady`. Output keys are fixed per upload and variant, so a
//! job redone after a crash overwrites the same objects; each announced variant is recorded
//! so a redelivered job does not announce it again.

pub mod bench;
pub mod image;
pub mod isolate;
pub mod jpeg_meta;
pub mod video;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tributary_runtime::kafka::{HandleError, Handler, Message};
use tributary_runtime::topics;
use tributary_schemas::{
    Event, EventPayload, MediaJobRequested, ProcessingFailed, UploadProgress, UploadReady,
    VariantProduced,
};

use crate::outcome::{Rejection, reject, retry};
use crate::service::{Context, decode};
use crate::storage::{self, StorageError};
use isolate::{ChildReport, JobLimits, render_isolated};

/// Default consumer group.
pub const GROUP: &str = "tributary-transformer";

/// Outcome stage recorded once a job is finished (ready, rejected or failed).
const STAGE: &str = "transform";

/// Largest image file downloaded for decoding.
const MAX_IMAGE_BYTES: u64 = 256 << 20;

/// Consumes the media-jobs topic until `stop`.
pub async fn run(ctx: Context, stop: CancellationToken) -> anyhow::Result<()> {
    let group = ctx.settings.group_or(GROUP);
    let exe = std::env::current_exe()?;
    let handler = Transformer {
        ctx: ctx.clone(),
        exe,
    };
    ctx.consume(&group, &[topics::MEDIA_JOBS], handler, stop)
        .await
}

/// The media-jobs handler.
struct Transformer {
    ctx: Context,
    /// This binary, re-executed for isolated image decoding.
    exe: PathBuf,
}

/// A variant ready to be uploaded and announced.
struct Output {
    name: String,
    file: PathBuf,
    content_type: String,
    width: Option<i32>,
    height: Option<i32>,
    placeholder: Option<String>,
}

/// Extra files uploaded but not announced (HLS segments and rendition playlists).
struct Payload {
    variants: Vec<Output>,
    files: Vec<(PathBuf, String)>,
}

impl Handler for Transformer {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let event = decode(self.ctx.catalog(), message).await?;
        let EventPayload::MediaJobRequested(job) = &event.payload else {
            return Ok(());
        };
        let Some(upload_id) = event.meta.upload_id.clone() else {
            return Err(HandleError::Poison("media job without an upload id".into()));
        };
        if self
            .ctx
            .store
            .outcome(&upload_id, STAGE)
            .await
            .map_err(retry)?
            .is_some()
        {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let work = tempfile::tempdir().map_err(|e| retry(format!("temp dir: {e}")))?;
        let produced = match job.kind.as_str() {
            MediaJobRequested::KIND_IMAGE => self.image(job, work.path()).await?,
            MediaJobRequested::KIND_VIDEO => self.video(&event, job, work.path()).await?,
            other => Err(Verdict::Rejected(Rejection::new(
                "unsupported_media",
                format!("unknown media job kind {other:?}"),
            ))),
        };
        let result = match produced {
            Ok(payload) => {
                self.publish_outputs(&event, job, &upload_id, work.path(), payload)
                    .await
            }
            Err(Verdict::Rejected(rejection)) => reject(&self.ctx, &event, STAGE, rejection).await,
            Err(Verdict::Failed(reason)) => self.fail(&event, &upload_id, reason).await,
        };
        metrics::histogram!("tributary_transformer_job_seconds", "kind" => job.kind.clone())
            .record(started.elapsed().as_secs_f64());
        result
    }
}

/// Why a job produced nothing.
enum Verdict {
    /// The input is at fault: `UploadRejected`.
    Rejected(Rejection),
    /// We are: `ProcessingFailed` (terminal, with a reason).
    Failed(String),
}

impl Transformer {
    async fn download(
        &self,
        job: &MediaJobRequested,
        path: &Path,
        max: u64,
    ) -> Result<Result<(), Verdict>, HandleError> {
        match storage::download(&self.ctx.s3, &job.bucket, &job.object_key, path, max).await {
            Ok(_) => Ok(Ok(())),
            Err(StorageError::Unavailable(reason)) => Err(HandleError::Retry(reason)),
            Err(StorageError::NotFound(_)) => Ok(Err(Verdict::Rejected(Rejection::new(
                "object_missing",
                "the original is gone",
            )))),
            Err(StorageError::Refused { message, .. }) => Ok(Err(Verdict::Rejected(
                Rejection::new("file_too_large", message),
            ))),
        }
    }

    async fn image(
        &self,
        job: &MediaJobRequested,
        work: &Path,
    ) -> Result<Result<Payload, Verdict>, HandleError> {
        let input = work.join("original");
        if let Err(verdict) = self.download(job, &input, MAX_IMAGE_BYTES).await? {
            return Ok(Err(verdict));
        }
        let out_dir = work.join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| retry(format!("create {}: {e}", out_dir.display())))?;
        let settings = &self.ctx.settings;
        let limits = JobLimits {
            image: image::ImageLimits {
                max_pixels: settings.max_image_pixels,
                ..image::ImageLimits::default()
            },
            memory_bytes: settings.image_memory_limit_bytes,
            timeout: Duration::from_secs(settings.image_timeout_secs.max(1)),
        };
        let report = render_isolated(&self.exe, &input, &out_dir, &limits, &settings.heif_convert)
            .await
            .map_err(HandleError::Retry)?;
        Ok(match report {
            ChildReport::Rejected { code, reason } => {
                Err(Verdict::Rejected(Rejection::new(image_code(&code), reason)))
            }
            ChildReport::Failed { reason } => Err(Verdict::Failed(reason)),
            ChildReport::Rendered {
                variants,
                placeholder,
            } => Ok(Payload {
                variants: variants
                    .into_iter()
                    .map(|v| Output {
                        file: out_dir.join(&v.file),
                        name: v.name,
                        content_type: v.content_type,
                        width: i32::try_from(v.width).ok(),
                        height: i32::try_from(v.height).ok(),
                        placeholder: Some(placeholder.clone()),
                    })
                    .collect(),
                files: Vec::new(),
            }),
        })
    }

    async fn video(
        &self,
        trigger: &Event,
        job: &MediaJobRequested,
        work: &Path,
    ) -> Result<Result<Payload, Verdict>, HandleError> {
        let settings = &self.ctx.settings;
        let limits = video::VideoLimits {
            max_duration_secs: settings.max_video_secs,
            threads: settings.ffmpeg_threads,
            ..video::VideoLimits::default()
        };
        let input = work.join("original");
        if let Err(verdict) = self.download(job, &input, limits.max_input_bytes).await? {
            return Ok(Err(verdict));
        }
        let ffprobe = Path::new(&settings.ffprobe);
        let probe = match video::probe(ffprobe, &input, &limits).await {
            Ok(probe) => probe,
            Err(error) => return Ok(Err(video_verdict(error))),
        };
        let out_dir = work.join("out");
        tokio::fs::create_dir_all(&out_dir)
            .await
            .map_err(|e| retry(format!("create {}: {e}", out_dir.display())))?;
        let (progress_tx, progress_rx) = tokio::sync::watch::channel(0.0f64);
        let reporter = tokio::spawn(report_progress(
            self.ctx.clone(),
            trigger.clone(),
            job.size,
            progress_rx,
        ));
        let ffmpeg = Path::new(&settings.ffmpeg);
        let transcoded =
            video::transcode_hls(ffmpeg, &input, &out_dir, &probe, &limits, move |p| {
                let _ = progress_tx.send(p);
            })
            .await;
        let _ = reporter.await;
        let output = match transcoded {
            Ok(output) => output,
            Err(error) => return Ok(Err(video_verdict(error))),
        };
        let announced: Vec<&Path> = output
            .variants
            .iter()
            .map(|v| v.relative_path.as_path())
            .collect();
        let files = output
            .files
            .iter()
            .filter(|f| !announced.contains(&f.relative_path.as_path()))
            .map(|f| (f.relative_path.clone(), f.content_type.to_string()))
            .collect();
        Ok(Ok(Payload {
            variants: output
                .variants
                .iter()
                .map(|v| Output {
                    name: v.name.clone(),
                    file: out_dir.join(&v.relative_path),
                    content_type: v.content_type.to_string(),
                    width: v.width.and_then(|w| i32::try_from(w).ok()),
                    height: v.height.and_then(|h| i32::try_from(h).ok()),
                    placeholder: None,
                })
                .collect(),
            files,
        }))
    }

    /// Uploads every file, then announces each variant once, then the upload as ready.
    async fn publish_outputs(
        &self,
        trigger: &Event,
        job: &MediaJobRequested,
        upload_id: &str,
        work: &Path,
        payload: Payload,
    ) -> Result<(), HandleError> {
        let prefix = variant_prefix(&job.object_key);
        let out_dir = work.join("out");
        for (relative, content_type) in &payload.files {
            let key = format!("{prefix}{}", relative.display());
            storage::put_file(
                &self.ctx.s3,
                &job.bucket,
                &key,
                &out_dir.join(relative),
                content_type,
            )
            .await
            .map_err(retry)?;
        }
        let mut keys = Vec::new();
        for output in &payload.variants {
            let relative = output.file.strip_prefix(&out_dir).unwrap_or(&output.file);
            let key = format!("{prefix}{}", relative.display());
            storage::put_file(
                &self.ctx.s3,
                &job.bucket,
                &key,
                &output.file,
                &output.content_type,
            )
            .await
            .map_err(retry)?;
            keys.push(key);
        }
        for (output, key) in payload.variants.iter().zip(keys) {
            let stage = format!("variant:{}", output.name);
            if self
                .ctx
                .store
                .outcome(upload_id, &stage)
                .await
                .map_err(retry)?
                .is_some()
            {
                continue;
            }
            let size = tokio::fs::metadata(&output.file)
                .await
                .map(|m| i64::try_from(m.len()).unwrap_or(i64::MAX))
                .map_err(|e| retry(format!("stat {}: {e}", output.file.display())))?;
            let event = Event::new(
                trigger.meta.caused_by(self.ctx.producer_name.clone()),
                VariantProduced {
                    variant: output.name.clone(),
                    object_key: key.clone(),
                    content_type: output.content_type.clone(),
                    size,
                    width: output.width,
                    height: output.height,
                    placeholder: output.placeholder.clone(),
                },
            );
            self.ctx.publish(&event).await?;
            self.ctx
                .store
                .put_outcome(upload_id, &stage, &key)
                .await
                .map_err(retry)?;
            metrics::counter!("tributary_transformer_variants_total", "kind" => job.kind.clone())
                .increment(1);
        }
        let count = i32::try_from(payload.variants.len()).unwrap_or(i32::MAX);
        self.ctx
            .publish(&Event::new(
                trigger.meta.caused_by(self.ctx.producer_name.clone()),
                UploadReady {
                    variant_count: count,
                },
            ))
            .await?;
        self.ctx
            .store
            .put_outcome(upload_id, STAGE, "ready")
            .await
            .map_err(retry)?;
        tracing::info!(%upload_id, variants = count, "media ready");
        Ok(())
    }

    async fn fail(
        &self,
        trigger: &Event,
        upload_id: &str,
        reason: String,
    ) -> Result<(), HandleError> {
        tracing::warn!(%upload_id, %reason, "media processing failed");
        metrics::counter!("tributary_transformer_failed_total").increment(1);
        self.ctx
            .publish(&Event::new(
                trigger.meta.caused_by(self.ctx.producer_name.clone()),
                ProcessingFailed {
                    stage: STAGE.to_string(),
                    reason,
                    retryable: false,
                },
            ))
            .await?;
        self.ctx
            .store
            .put_outcome(upload_id, STAGE, "failed")
            .await
            .map_err(retry)
    }
}

/// `uploads/<tenant>/<id>/variants/` for the original `uploads/<tenant>/<id>/original`.
fn variant_prefix(object_key: &str) -> String {
    let base = object_key.strip_suffix("original").unwrap_or(object_key);
    let base = if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    };
    format!("{base}variants/")
}

/// The child's codes are a known set; anything else is mapped to the generic one.
fn image_code(code: &str) -> &'static str {
    match code {
        "image_too_large" => "image_too_large",
        "image_too_complex" => "image_too_complex",
        "unsupported_image" => "unsupported_image",
        _ => "undecodable_image",
    }
}

fn video_verdict(error: video::VideoError) -> Verdict {
    match error {
        video::VideoError::Rejected { code, reason } => {
            Verdict::Rejected(Rejection::new(code, reason))
        }
        video::VideoError::Failed { reason, .. } => Verdict::Failed(reason),
    }
}

/// Publishes transcoding progress at most once a second (progress is best-effort: a lost
/// progress event costs nothing, so failures are only logged).
async fn report_progress(
    ctx: Context,
    trigger: Event,
    total: i64,
    mut progress: tokio::sync::watch::Receiver<f64>,
) {
    let mut last_sent = -1.0f64;
    while progress.changed().await.is_ok() {
        let percent = *progress.borrow_and_update();
        if percent - last_sent < 1.0 && percent < 100.0 {
            continue;
        }
        last_sent = percent;
        let event = Event::new(
            trigger.meta.caused_by(ctx.producer_name.clone()),
            UploadProgress {
                stage: "transcoding".into(),
                bytes_done: (total as f64 * percent / 100.0) as i64,
                bytes_total: total,
                percent,
            },
        );
        if let Err(error) = ctx.events.publish(&event).await {
            tracing::debug!(%error, "progress event not published");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_live_next_to_the_original() {
        assert_eq!(
            variant_prefix("uploads/t/u/original"),
            "uploads/t/u/variants/"
        );
    }
}
