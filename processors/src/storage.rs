//! Object-storage calls the processors share, with errors sorted into what a handler does
//! next: retry (storage down or overloaded) or act on a definite answer.

use std::path::Path;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

/// A storage failure, classified.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object (or multipart upload) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The storage refused the request for a reason retrying will not change.
    #[error("refused ({code}): {message}")]
    Refused {
        /// S3 error code, e.g. `InvalidPart`.
        code: String,
        /// Its message.
        message: String,
    },
    /// Unreachable, timed out or a 5xx: retry later.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl StorageError {
    /// Sorts an SDK error.
    pub fn from_sdk<E>(what: &str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = match &error {
            SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
            _ => None,
        };
        let code = error.code().unwrap_or_default().to_string();
        let message = error.message().unwrap_or_default().to_string();
        match (status, code.as_str()) {
            (_, "NoSuchKey" | "NoSuchUpload" | "NotFound") | (Some(404), _) => {
                Self::NotFound(format!("{what}: {code}"))
            }
            (Some(status), _) if (400..500).contains(&status) && status != 429 && status != 408 => {
                Self::Refused { code, message }
            }
            _ => Self::Unavailable(format!("{what}: {}", DisplayErrorContext(&error))),
        }
    }
}

/// Uploads a local file as `key` with `content_type`.
pub async fn put_file(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &Path,
    content_type: &str,
) -> Result<(), StorageError> {
    let body = ByteStream::from_path(path)
        .await
        .map_err(|e| StorageError::Unavailable(format!("read {}: {e}", path.display())))?;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(body)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("put object", e))?;
    Ok(())
}

/// Uploads bytes as `key` with `content_type`.
pub async fn put_bytes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    content_type: &str,
) -> Result<(), StorageError> {
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("put object", e))?;
    Ok(())
}

/// Reads `len` bytes at `offset` (fewer if the object is shorter); a suffix read when
/// `offset` is negative (`bytes=-len`).
pub async fn read_range(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    range: &str,
) -> Result<Vec<u8>, StorageError> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("get object range", e))?;
    let bytes = object
        .body
        .collect()
        .await
        .map_err(|e| StorageError::Unavailable(format!("read object body: {e}")))?;
    Ok(bytes.into_bytes().to_vec())
}

/// Streams an object into a local file, refusing more than `max_bytes`.
pub async fn download(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    path: &Path,
    max_bytes: u64,
) -> Result<u64, StorageError> {
    use tokio::io::AsyncWriteExt;
    let mut object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| StorageError::from_sdk("get object", e))?;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| StorageError::Unavailable(format!("create {}: {e}", path.display())))?;
    let mut written: u64 = 0;
    while let Some(chunk) = object
        .body
        .try_next()
        .await
        .map_err(|e| StorageError::Unavailable(format!("read object body: {e}")))?
    {
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(StorageError::Refused {
                code: "TooLarge".into(),
                message: format!("object is larger than {max_bytes} bytes"),
            });
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| StorageError::Unavailable(format!("write {}: {e}", path.display())))?;
    }
    file.flush()
        .await
        .map_err(|e| StorageError::Unavailable(format!("write {}: {e}", path.display())))?;
    Ok(written)
}

/// Deletes every object under `prefix` (idempotent); returns how many were deleted.
pub async fn delete_prefix(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize, StorageError> {
    let mut deleted = 0;
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| StorageError::from_sdk("list objects", e))?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                match s3.delete_object().bucket(bucket).key(key).send().await {
                    Ok(_) => deleted += 1,
                    Err(e) => match StorageError::from_sdk("delete object", e) {
                        StorageError::NotFound(_) => {}
                        other => return Err(other),
                    },
                }
            }
        }
        match page.next_continuation_token() {
            Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_string()),
            _ => return Ok(deleted),
        }
    }
}
