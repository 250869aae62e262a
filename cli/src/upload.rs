//! Uploading one file: hash it, initiate (or resume) its session, send the parts that are not
//! confirmed yet straight to storage, several at once, confirm each with the API, request
//! completion. Progress counts confirmed parts only, as the server sees them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use indicatif::ProgressBar;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::{ApiError, Client, InitiateRequest};
use crate::state::{self, FileIdentity, UploadState};

/// URLs asked for at once when the initiation's are used up or expired.
const URL_BATCH: u32 = 100;

/// Why a file's upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Reading the file or writing the state failed.
    #[error("{path}: {source}")]
    Local {
        /// The file or state file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The API refused or stayed unavailable.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The file changed while it was being uploaded.
    #[error("{0}: the file changed during the upload; run the command again to start over")]
    Changed(PathBuf),
}

/// Options of an upload.
#[derive(Debug, Clone)]
pub struct Options {
    /// Parts in flight at once.
    pub parallel: usize,
    /// Content type to declare instead of the guess from the file name.
    pub content_type: Option<String>,
    /// Where resumable state is kept.
    pub state_dir: PathBuf,
    /// Bytes per second to stay under, if any.
    pub limit_rate: Option<u64>,
}

/// What happened to one file.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The file.
    pub file: PathBuf,
    /// Its upload.
    pub upload_id: String,
    /// Bytes.
    pub size: u64,
    /// sha256 (hex).
    pub sha256: String,
    /// Parts in all.
    pub parts: u32,
    /// Parts sent in this run.
    pub parts_sent: u32,
    /// Parts already confirmed by an earlier, interrupted run.
    pub parts_resumed: u32,
}

/// Uploads `path` and requests completion; resumes an earlier run of the same file version.
pub async fn upload(
    client: &Client,
    api: &str,
    path: &Path,
    options: &Options,
    bar: &ProgressBar,
) -> Result<Report, UploadError> {
    let local = |source| UploadError::Local {
        path: path.to_path_buf(),
        source,
    };
    let identity = FileIdentity::of(path).map_err(local)?;
    let state_path = identity.state_path(&options.state_dir, api);
    let mut record = match state::load(&state_path) {
        Some(record) if still_active(client, &record).await => record,
        _ => {
            bar.set_message("hashing");
            let sha256 = hash_file(&identity.path).await.map_err(local)?;
            UploadState {
                version: 1,
                api: api.to_string(),
                file: identity.path.clone(),
                size: identity.size,
                modified_ns: identity.modified_ns,
                sha256,
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                upload_id: None,
                part_size: 0,
                part_count: 0,
                confirmed: Default::default(),
            }
        }
    };
    let save = |record: &UploadState| {
        state::save(&state_path, record).map_err(|source| UploadError::Local {
            path: state_path.clone(),
            source,
        })
    };
    save(&record)?;

    let mut urls = HashMap::new();
    let upload_id = match record.upload_id.clone() {
        Some(id) => id,
        None => {
            let session = client
                .initiate(
                    &InitiateRequest {
                        filename: file_name(&identity.path),
                        size: identity.size,
                        content_type: options
                            .content_type
                            .clone()
                            .unwrap_or_else(|| guess_content_type(&identity.path).to_string()),
                        sha256: Some(record.sha256.clone()),
                    },
                    &record.idempotency_key,
                )
                .await?;
            record.upload_id = Some(session.upload_id.clone());
            record.part_size = session.part_size;
            record.part_count = session.part_count;
            save(&record)?;
            for part in session.parts {
                urls.insert(part.part_number, part.url);
            }
            session.upload_id
        }
    };

    let resumed = u32::try_from(record.confirmed.len()).unwrap_or(0);
    bar.set_length(identity.size);
    let confirmed_bytes: u64 = record.confirmed.iter().map(|&n| part_len(&record, n)).sum();
    bar.set_position(confirmed_bytes);
    bar.set_message("uploading");
    let pending: Vec<u32> = (1..=record.part_count)
        .filter(|n| !record.confirmed.contains(n))
        .collect();
    let sent = u32::try_from(pending.len()).unwrap_or(0);

    let shared = Arc::new(Mutex::new(record));
    let urls = Arc::new(tokio::sync::Mutex::new(urls));
    let limiter = options.limit_rate.map(RateLimiter::new).map(Arc::new);
    let results: Vec<Result<(), UploadError>> = futures::stream::iter(pending)
        .map(|number| {
            let (shared, urls, limiter) = (shared.clone(), urls.clone(), limiter.clone());
            let (identity, upload_id, save) = (&identity, &upload_id, &save);
            async move {
                let (offset, len) = {
                    let record = shared.lock().map_err(|_| poisoned())?;
                    (
                        u64::from(number - 1) * record.part_size,
                        part_len(&record, number),
                    )
                };
                let body = read_part(&identity.path, offset, len)
                    .await
                    .map_err(|source| UploadError::Local {
                        path: identity.path.clone(),
                        source,
                    })?;
                if let Some(limiter) = &limiter {
                    limiter.acquire(len).await;
                }
                let etag = put_with_fresh_urls(client, upload_id, number, body, &urls).await?;
                client.confirm(upload_id, number, &etag).await?;
                let snapshot = {
                    let mut record = shared.lock().map_err(|_| poisoned())?;
                    record.confirmed.insert(number);
                    record.clone()
                };
                save(&snapshot)?;
                bar.inc(len);
                Ok(())
            }
        })
        .buffer_unordered(options.parallel.max(1))
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>, _>>()?;

    // The bytes sent must be the bytes hashed: a file edited meanwhile is not completed.
    if FileIdentity::of(&identity.path).ok().as_ref() != Some(&identity) {
        return Err(UploadError::Changed(identity.path.clone()));
    }
    bar.set_message("completing");
    client.complete(&upload_id).await?;
    state::remove(&state_path);
    let record = shared.lock().map_err(|_| poisoned())?.clone();
    Ok(Report {
        file: identity.path.clone(),
        upload_id,
        size: identity.size,
        sha256: record.sha256,
        parts: record.part_count,
        parts_sent: sent,
        parts_resumed: resumed,
    })
}

fn poisoned() -> UploadError {
    UploadError::Local {
        path: PathBuf::from("<state>"),
        source: std::io::Error::other("state lock poisoned"),
    }
}

/// Whether a remembered session can still take parts (else the upload starts over).
async fn still_active(client: &Client, record: &UploadState) -> bool {
    let Some(upload_id) = &record.upload_id else {
        // Hashed but never initiated: the same idempotency key resumes it.
        return true;
    };
    match client.status(upload_id).await {
        Ok(status) => matches!(status["state"].as_str(), Some("initiated" | "uploading")),
        // Expired, aborted or unknown: start over.
        Err(ApiError::Refused { .. }) => false,
        // Unreachable: keep the record; the calls that follow report the outage.
        Err(ApiError::Unavailable(_)) => true,
    }
}

/// PUTs a part, fetching fresh URLs when there is none or the storage refused one (expired).
async fn put_with_fresh_urls(
    client: &Client,
    upload_id: &str,
    number: u32,
    body: Vec<u8>,
    urls: &tokio::sync::Mutex<HashMap<u32, String>>,
) -> Result<String, UploadError> {
    for _ in 0..3 {
        let cached = urls.lock().await.remove(&number);
        let url = match cached {
            Some(url) => url,
            None => {
                let fresh = client.part_urls(upload_id, number, URL_BATCH).await?;
                let mut urls = urls.lock().await;
                let mut mine = None;
                for part in fresh {
                    if part.part_number == number {
                        mine = Some(part.url);
                    } else {
                        urls.insert(part.part_number, part.url);
                    }
                }
                mine.ok_or_else(|| {
                    ApiError::Unavailable(format!("the api sent no url for part {number}"))
                })?
            }
        };
        if let Some(etag) = client.put_part(&url, body.clone()).await? {
            return Ok(etag);
        }
    }
    Err(ApiError::Unavailable(format!(
        "the storage kept refusing fresh urls for part {number}"
    ))
    .into())
}

/// Bytes of part `number` (the last part is the remainder).
fn part_len(record: &UploadState, number: u32) -> u64 {
    let start = u64::from(number - 1) * record.part_size;
    record.size.saturating_sub(start).min(record.part_size)
}

async fn read_part(path: &Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    let mut file = tokio::fs::File::open(path).await?;
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut buffer = vec![0u8; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact(&mut buffer).await?;
    Ok(buffer)
}

/// sha256 of a file, on a blocking thread (hashing is CPU work).
async fn hash_file(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut file = std::fs::File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "upload".into())
}

/// The content type of a file, from its extension (the server checks the bytes anyway).
pub fn guess_content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" | "heif" => "image/heic",
        "avif" => "image/avif",
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "7z" => "application/x-7z-compressed",
        "tar" => "application/x-tar",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "txt" | "log" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

/// Keeps the average send rate under a limit: each part waits for its share of time.
struct RateLimiter {
    bytes_per_sec: u64,
    next: tokio::sync::Mutex<Instant>,
}

impl RateLimiter {
    fn new(bytes_per_sec: u64) -> Self {
        Self {
            bytes_per_sec: bytes_per_sec.max(1),
            next: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    async fn acquire(&self, bytes: u64) {
        let wait_until = {
            let mut next = self.next.lock().await;
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
            start
        };
        tokio::time::sleep_until(wait_until.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(size: u64, part_size: u64) -> UploadState {
        UploadState {
            version: 1,
            api: String::new(),
            file: PathBuf::new(),
            size,
            modified_ns: 0,
            sha256: String::new(),
            idempotency_key: String::new(),
            upload_id: None,
            part_size,
            part_count: u32::try_from(size.div_ceil(part_size)).unwrap_or(0),
            confirmed: Default::default(),
        }
    }

    #[test]
    fn the_last_part_is_the_remainder() {
        let r = record(20, 8);
        assert_eq!(r.part_count, 3);
        assert_eq!(
            (part_len(&r, 1), part_len(&r, 2), part_len(&r, 3)),
            (8, 8, 4)
        );
        let seven_gib = record(7 << 30, 8 << 20);
        assert_eq!(seven_gib.part_count, 896);
        assert_eq!(part_len(&seven_gib, 896), 8 << 20);
    }

    #[test]
    fn content_types_from_extensions() {
        assert_eq!(guess_content_type(Path::new("a/IMG_1.HEIC")), "image/heic");
        assert_eq!(
            guess_content_type(Path::new("x.tar.gz")),
            "application/gzip"
        );
        assert_eq!(
            guess_content_type(Path::new("noext")),
            "application/octet-stream"
        );
    }
}
