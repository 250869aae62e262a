//! The ingest-api's public contract as typed calls, with the retry policy a shaky network
//! needs: network errors, 5xx, 429 and 503 are retried with exponential backoff (honouring
//! `Retry-After`); other 4xx answers are final and carry the API's `{error: {code, message}}`.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with a final 4xx: the request itself is wrong (bad input, quota,
    /// authentication, unknown upload).
    #[error("{status}: {code}: {message}")]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// Still failing after every retry: network down, API or storage unavailable.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// One presigned part URL.
#[derive(Debug, Clone, Deserialize)]
pub struct PartUrl {
    /// 1-based part number.
    pub part_number: u32,
    /// Presigned PUT URL.
    pub url: String,
}

/// Answer of `POST /v1/uploads`.
#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    /// Upload id.
    pub upload_id: String,
    /// Bytes per part (the last may be shorter).
    pub part_size: u64,
    /// Parts in all.
    pub part_count: u32,
    /// The first parts' URLs.
    pub parts: Vec<PartUrl>,
}

/// Answer of `GET /v1/uploads/{id}/parts`.
#[derive(Debug, Clone, Deserialize)]
struct PartsView {
    parts: Vec<PartUrl>,
}

/// Body of `POST /v1/uploads`.
#[derive(Debug, Clone, Serialize)]
pub struct InitiateRequest {
    /// File name shown to users.
    pub filename: String,
    /// Bytes.
    pub size: u64,
    /// MIME type.
    pub content_type: String,
    /// sha256 (hex) the assembler verifies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// The API at `base`, authenticated with an API key or token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    attempts: u32,
}

impl Client {
    /// A client of the API at `base` (`http://host:port`) using `key`, trying each call up
    /// to `attempts` times.
    pub fn new(base: &str, key: &str, attempts: u32) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Parts are at most 64 MiB; a slow link gets minutes per part, not forever.
            .timeout(Duration::from_secs(900))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
            attempts: attempts.max(1),
        })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// `POST /v1/uploads` with an `Idempotency-Key`, so a retried initiation returns the same
    /// session.
    pub async fn initiate(
        &self,
        request: &InitiateRequest,
        idempotency_key: &str,
    ) -> Result<Session, ApiError> {
        self.call(|| {
            self.request(Method::POST, "/v1/uploads")
                .header("Idempotency-Key", idempotency_key)
                .json(request)
        })
        .await
    }

    /// `GET /v1/uploads/{id}/parts?from=&count=`: fresh URLs.
    pub async fn part_urls(
        &self,
        upload_id: &str,
        from: u32,
        count: u32,
    ) -> Result<Vec<PartUrl>, ApiError> {
        let view: PartsView = self
            .call(|| {
                self.request(
                    Method::GET,
                    &format!("/v1/uploads/{upload_id}/parts?from={from}&count={count}"),
                )
            })
            .await?;
        Ok(view.parts)
    }

    /// `PUT /v1/uploads/{id}/parts/{n}`: confirms a part (the API checks storage).
    pub async fn confirm(&self, upload_id: &str, part: u32, etag: &str) -> Result<(), ApiError> {
        let _: Value = self
            .call(|| {
                self.request(
                    Method::PUT,
                    &format!("/v1/uploads/{upload_id}/parts/{part}"),
                )
                .json(&serde_json::json!({ "etag": etag }))
            })
            .await?;
        Ok(())
    }

    /// `POST /v1/uploads/{id}/complete` (202).
    pub async fn complete(&self, upload_id: &str) -> Result<(), ApiError> {
        let _: Value = self
            .call(|| self.request(Method::POST, &format!("/v1/uploads/{upload_id}/complete")))
            .await?;
        Ok(())
    }

    /// `GET /v1/uploads/{id}`.
    pub async fn status(&self, upload_id: &str) -> Result<Value, ApiError> {
        self.call(|| self.request(Method::GET, &format!("/v1/uploads/{upload_id}")))
            .await
    }

    /// `GET /v1/uploads?limit=&cursor=`.
    pub async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Value, ApiError> {
        let mut path = format!("/v1/uploads?limit={limit}");
        if let Some(cursor) = cursor {
            path.push_str("&cursor=");
            path.push_str(&encode_query(cursor));
        }
        self.call(|| self.request(Method::GET, &path)).await
    }

    /// PUTs `body` to a presigned URL; returns the ETag. `Ok(None)` when the storage refused
    /// the URL (expired or invalid signature): the caller fetches a fresh one.
    pub async fn put_part(&self, url: &str, body: Vec<u8>) -> Result<Option<String>, ApiError> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1, None)).await;
            }
            match self.http.put(url).body(body.clone()).send().await {
                Ok(response) if response.status().is_success() => {
                    let etag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    return match etag {
                        Some(etag) => Ok(Some(etag)),
                        None => Err(ApiError::Unavailable(
                            "the storage answered without an ETag".into(),
                        )),
                    };
                }
                // S3 says 403 for a bad or expired signature; Garage 400 for an expired one.
                Ok(response)
                    if matches!(
                        response.status(),
                        StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST
                    ) =>
                {
                    return Ok(None);
                }
                Ok(response) => last = format!("storage answered {}", response.status()),
                Err(error) => last = format!("storage unreachable: {error}"),
            }
        }
        Err(ApiError::Unavailable(format!(
            "{last} (after {} attempts)",
            self.attempts
        )))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<T, ApiError> {
        let mut last = String::new();
        let mut wait = None;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1, wait)).await;
            }
            match build().send().await {
                Ok(response) => match classify(response).await {
                    Outcome::Done(value) => {
                        return serde_json::from_value(value)
                            .map_err(|e| ApiError::Unavailable(format!("unexpected answer: {e}")));
                    }
                    Outcome::Final(error) => return Err(error),
                    Outcome::Retry(reason, after) => {
                        last = reason;
                        wait = after;
                    }
                },
                Err(error) => {
                    last = format!("api unreachable: {error}");
                    wait = None;
                }
            }
        }
        Err(ApiError::Unavailable(format!(
            "{last} (after {} attempts)",
            self.attempts
        )))
    }
}

enum Outcome {
    Done(Value),
    Final(ApiError),
    Retry(String, Option<Duration>),
}

async fn classify(response: Response) -> Outcome {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Outcome::Done(body);
    }
    let code = body["error"]["code"].as_str().unwrap_or("").to_string();
    let message = body["error"]["message"].as_str().unwrap_or("").to_string();
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Outcome::Retry(format!("{status}: {code}: {message}"), retry_after);
    }
    Outcome::Final(ApiError::Refused {
        status,
        code,
        message,
    })
}

/// Exponential backoff from 250 ms to 30 s, or what `Retry-After` asked for.
fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| {
        Duration::from_millis(250u64.saturating_mul(1 << attempt.min(7)))
            .min(Duration::from_secs(30))
    })
}

/// Percent-encodes a query value (cursors contain `/`).
fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(0, None), Duration::from_millis(250));
        assert_eq!(backoff(2, None), Duration::from_secs(1));
        assert_eq!(backoff(30, None), Duration::from_secs(30));
        assert_eq!(
            backoff(0, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn cursors_are_encoded() {
        assert_eq!(encode_query("2026-11/0193ab"), "2026-11%2F0193ab");
    }
}
