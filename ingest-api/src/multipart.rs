//! Creation of the S3 multipart upload on the initiation hot path.
//!
//! Every `POST /v1/uploads` creates one multipart upload. Through the AWS SDK that request
//! cost about a sixth of the API's CPU per initiation (its orchestrator, endpoint resolution,
//! per-request SigV4 key derivation, interceptors); here it is one presigned `POST ?uploads`
//! (signed by the same [`Presigner`] as the part URLs: one HMAC) sent on a pooled HTTP
//! client, and the upload id read from the XML answer. Everything else the API asks of
//! storage (`ListParts`, aborts, bucket checks) stays on the SDK.

use std::sync::Arc;
use std::time::Duration;

use tributary_runtime::presign::Presigner;
use tributary_schemas::now_micros;

/// Lifetime of the signature of one create request: it is sent at once.
const SIGNATURE_TTL_SECS: u64 = 60;

/// Bound on one create request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why storage did not create a multipart upload.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// Storage could not be reached or did not answer in time.
    #[error("storage unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    /// Storage answered with an error.
    #[error("storage refused to create the multipart upload: http {status}, {code}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// S3 error code (`<Code>`), or the body's start when there is none.
        code: String,
    },
    /// A success answer without an upload id.
    #[error("storage answered without an upload id")]
    NoUploadId,
}

impl CreateError {
    /// Worth one more attempt: the network or a 5xx, never a refusal of the request itself.
    fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { status, .. } => *status >= 500,
            Self::NoUploadId => false,
        }
    }
}

/// Creates multipart uploads with presigned requests.
#[derive(Debug, Clone)]
pub struct MultipartCreator {
    presigner: Arc<Presigner>,
    http: reqwest::Client,
}

impl MultipartCreator {
    /// A creator signing with `presigner`, with its own connection pool to storage.
    pub fn new(presigner: Arc<Presigner>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .build()?;
        Ok(Self { presigner, http })
    }

    /// Creates a multipart upload of `bucket`/`key` and returns its upload id. One retry on
    /// a network error or a 5xx (like the SDK's standard retry), none on a refusal.
    pub async fn create(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, CreateError> {
        match self.attempt(bucket, key, content_type).await {
            Err(error) if error.is_transient() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                self.attempt(bucket, key, content_type).await
            }
            outcome => outcome,
        }
    }

    async fn attempt(
        &self,
        bucket: &str,
        key: &str,
        content_type: &str,
    ) -> Result<String, CreateError> {
        let url = self.presigner.create_multipart_upload(
            bucket,
            key,
            SIGNATURE_TTL_SECS,
            now_micros() / 1_000_000,
        );
        // Errors drop the URL: it carries a signature.
        let response = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .send()
            .await
            .map_err(|e| CreateError::Unreachable(e.without_url()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| CreateError::Unreachable(e.without_url()))?;
        if !status.is_success() {
            let code = xml_text(&body, "Code")
                .map(unescape)
                .unwrap_or_else(|| body.chars().take(120).collect());
            return Err(CreateError::Refused {
                status: status.as_u16(),
                code,
            });
        }
        match xml_text(&body, "UploadId").map(unescape) {
            Some(id) if !id.is_empty() => Ok(id),
            _ => Err(CreateError::NoUploadId),
        }
    }
}

/// The text of the first `<tag>...</tag>` in `xml` (S3 answers are flat and small).
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

/// Resolves the five predefined XML entities (upload ids are opaque and may contain `&`).
fn unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upload_id_of_an_s3_answer() {
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>uploads/t/u/original</Key><UploadId>VXBsb2FkIElE&amp;x</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(
            xml_text(answer, "UploadId").map(unescape).as_deref(),
            Some("VXBsb2FkIElE&x")
        );
        assert_eq!(xml_text(answer, "Bucket"), Some("b"));
        assert_eq!(xml_text(answer, "Missing"), None);
        assert_eq!(xml_text("<UploadId>unterminated", "UploadId"), None);
    }

    #[test]
    fn only_network_errors_and_5xx_are_retried() {
        let refused = |status| CreateError::Refused {
            status,
            code: "X".into(),
        };
        assert!(refused(503).is_transient());
        assert!(refused(500).is_transient());
        assert!(!refused(403).is_transient());
        assert!(!refused(404).is_transient());
        assert!(!CreateError::NoUploadId.is_transient());
    }
}
