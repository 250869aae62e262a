//! Confluent Schema Registry REST: the JSON bodies (shared by our client and by the read-only
//! registry the ingest-api serves) and a minimal client.

use std::time::Duration;

use reqwest::Url;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Content type of Schema Registry requests and responses.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Body of `POST /subjects/{subject}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSchemaRequest {
    /// The schema, as a JSON document inside a JSON string.
    pub schema: String,
}

/// Response of `POST /subjects/{subject}/versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterSchemaResponse {
    /// Global schema id (the one framed into every message).
    pub id: u32,
}

/// Response of `GET /schemas/ids/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaByIdResponse {
    /// The schema, as a JSON document inside a JSON string.
    pub schema: String,
    /// `AVRO`, `JSON` or `PROTOBUF`; absent means `AVRO`.
    #[serde(
        rename = "schemaType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub schema_type: Option<String>,
}

/// Error body of every Schema Registry endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryErrorBody {
    /// Confluent error code, e.g. 40401 (subject not found), 40403 (schema not found),
    /// 409 (incompatible schema), 42201 (invalid schema).
    pub error_code: i32,
    /// Message.
    pub message: String,
}

impl RegistryErrorBody {
    /// `40401 Subject '<subject>' not found.` (HTTP 404).
    pub fn subject_not_found(subject: &str) -> Self {
        Self {
            error_code: 40401,
            message: format!("Subject '{subject}' not found."),
        }
    }

    /// `40402 Version <version> not found.` (HTTP 404).
    pub fn version_not_found(version: &str) -> Self {
        Self {
            error_code: 40402,
            message: format!("Version {version} not found."),
        }
    }

    /// `40403 Schema <id> not found` (HTTP 404).
    pub fn schema_not_found(id: &str) -> Self {
        Self {
            error_code: 40403,
            message: format!("Schema {id} not found"),
        }
    }
}

/// A failed registry call.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The base URL is unusable.
    #[error("invalid registry url {url}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why it is unusable.
        reason: String,
    },
    /// The request could not be sent or its response not read.
    #[error("registry request {method} {url} failed: {source}")]
    Transport {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// Underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status.
    #[error("registry {method} {url} returned {status}: {message}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Confluent error code, if the body had one.
        error_code: Option<i32>,
        /// Registry's message or the raw body.
        message: String,
    },
    /// The registry answered 2xx with a body we cannot use.
    #[error("invalid registry response to {method} {url}: {reason}")]
    InvalidResponse {
        /// HTTP method.
        method: &'static str,
        /// Request URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The schema under an id is not an Avro schema.
    #[error("schema id {id} is a {schema_type} schema, not avro")]
    NotAvro {
        /// Schema id.
        id: u32,
        /// Its `schemaType`.
        schema_type: String,
    },
}

/// Pauses before each retry of a registration the registry answered with 409 or 5xx.
pub const REGISTER_RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_millis(900),
];

/// Longest error body quoted in a [`RegistryError::Status`].
const MAX_QUOTED_BODY: usize = 512;

/// Interprets a registry response: a 2xx body as `T`, anything else as
/// [`RegistryError::Status`] (with the Confluent error body if there is one).
pub fn parse_response<T: DeserializeOwned>(
    method: &'static str,
    url: &str,
    status: u16,
    body: &str,
) -> Result<T, RegistryError> {
    if !(200..300).contains(&status) {
        let (error_code, message) = match serde_json::from_str::<RegistryErrorBody>(body) {
            Ok(err) => (Some(err.error_code), err.message),
            Err(_) => (None, truncate(body, MAX_QUOTED_BODY).to_owned()),
        };
        return Err(RegistryError::Status {
            method,
            url: url.to_owned(),
            status,
            error_code,
            message,
        });
    }
    serde_json::from_str(body).map_err(|e| RegistryError::InvalidResponse {
        method,
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Minimal async client for a Confluent-compatible Schema Registry.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: Url,
    http: reqwest::Client,
}

impl RegistryClient {
    /// A client for the registry at `base_url` (e.g. `http://127.0.0.1:8081`; a path prefix is
    /// kept). Requests time out after 10 s.
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid(format!("unsupported scheme {}", base.scheme())));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("not a base url".to_owned()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Self { base, http })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// URL of `base/segments...`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> String {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url.into()
    }

    /// Registers `schema_json` under `subject` (`POST /subjects/{subject}/versions`); returns
    /// its global id. Registering an already registered schema returns the existing id.
    ///
    /// Registering is idempotent, so a 409 or 5xx answer is retried
    /// ([`REGISTER_RETRY_DELAYS`]): when several processes register the same new subject at
    /// once, a registry may fail all but one of them (Apicurio 2.4 answers 409 "artifact already
    /// exists" or 500 with a database lock timeout), and the retry then finds the schema
    /// registered. A schema the registry refuses as incompatible is refused again and reported.
    pub async fn register(&self, subject: &str, schema_json: &str) -> Result<u32, RegistryError> {
        let url = self.url(&["subjects", subject, "versions"]);
        let body = serde_json::to_string(&RegisterSchemaRequest {
            schema: schema_json.to_owned(),
        })
        .map_err(|e| RegistryError::InvalidResponse {
            method: "POST",
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let mut delays = REGISTER_RETRY_DELAYS.iter();
        loop {
            let request = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .header(reqwest::header::ACCEPT, CONTENT_TYPE)
                .body(body.clone());
            let (status, text) = send("POST", &url, request).await?;
            match parse_response::<RegisterSchemaResponse>("POST", &url, status, &text) {
                Ok(response) => return Ok(response.id),
                Err(err) if status == 409 || status >= 500 => match delays.next() {
                    Some(delay) => tokio::time::sleep(*delay).await,
                    None => return Err(err),
                },
                Err(err) => return Err(err),
            }
        }
    }

    /// The schema JSON registered under `id` (`GET /schemas/ids/{id}`).
    pub async fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let url = self.url(&["schemas", "ids", &id.to_string()]);
        let request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        let (status, text) = send("GET", &url, request).await?;
        let response: SchemaByIdResponse = parse_response("GET", &url, status, &text)?;
        match response.schema_type.as_deref() {
            None | Some("AVRO") => Ok(response.schema),
            Some(other) => Err(RegistryError::NotAvro {
                id,
                schema_type: other.to_owned(),
            }),
        }
    }
}

async fn send(
    method: &'static str,
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, String), RegistryError> {
    let transport = |source| RegistryError::Transport {
        method,
        url: url.to_owned(),
        source,
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport)?;
    Ok((status, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_body_is_schema_as_json_string() {
        let body = serde_json::to_string(&RegisterSchemaRequest {
            schema: "{\"type\":\"string\"}".into(),
        })
        .expect("serialize");
        assert_eq!(body, r#"{"schema":"{\"type\":\"string\"}"}"#);
    }

    #[test]
    fn parses_register_response() {
        let id: RegisterSchemaResponse =
            parse_response("POST", "u", 200, r#"{"id":42}"#).expect("ok");
        assert_eq!(id.id, 42);
    }

    #[test]
    fn parses_schema_by_id_with_and_without_type() {
        let r: SchemaByIdResponse =
            parse_response("GET", "u", 200, r#"{"schema":"\"string\""}"#).expect("ok");
        assert_eq!(r.schema, "\"string\"");
        assert_eq!(r.schema_type, None);
        let r: SchemaByIdResponse = parse_response(
            "GET",
            "u",
            200,
            r#"{"schema":"x","schemaType":"PROTOBUF","references":[]}"#,
        )
        .expect("ok");
        assert_eq!(r.schema_type.as_deref(), Some("PROTOBUF"));
        // What we serve omits schemaType for Avro, like Confluent.
        let served = serde_json::to_string(&SchemaByIdResponse {
            schema: "\"string\"".into(),
            schema_type: None,
        })
        .expect("serialize");
        assert_eq!(served, r#"{"schema":"\"string\""}"#);
    }

    #[test]
    fn error_statuses_carry_confluent_error_body() {
        let err = parse_response::<RegisterSchemaResponse>(
            "GET",
            "http://r/schemas/ids/9",
            404,
            r#"{"error_code":40403,"message":"Schema not found"}"#,
        )
        .expect_err("404");
        match err {
            RegistryError::Status {
                status, error_code, ..
            } => {
                assert_eq!(status, 404);
                assert_eq!(error_code, Some(40403));
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = parse_response::<RegisterSchemaResponse>("GET", "u", 502, &"x".repeat(5000))
            .expect_err("502");
        assert!(err.to_string().len() < 700, "{err}");
    }

    #[test]
    fn served_error_bodies_parse_back() {
        let body =
            serde_json::to_string(&RegistryErrorBody::schema_not_found("77")).expect("serialize");
        assert_eq!(
            body,
            r#"{"error_code":40403,"message":"Schema 77 not found"}"#
        );
        let err = parse_response::<SchemaByIdResponse>("GET", "u", 404, &body).expect_err("404");
        assert!(matches!(
            err,
            RegistryError::Status {
                error_code: Some(40403),
                ..
            }
        ));
        assert_eq!(RegistryErrorBody::subject_not_found("s").error_code, 40401);
        assert_eq!(RegistryErrorBody::version_not_found("9").error_code, 40402);
    }

    #[test]
    fn malformed_success_body_is_an_error() {
        let err = parse_response::<RegisterSchemaResponse>("POST", "u", 200, r#"{"id":"x"}"#)
            .expect_err("bad body");
        assert!(matches!(err, RegistryError::InvalidResponse { .. }));
        assert!(parse_response::<RegisterSchemaResponse>("POST", "u", 200, "").is_err());
    }

    #[test]
    fn urls_are_built_per_segment() {
        let client = RegistryClient::new("http://127.0.0.1:8081/prefix/").expect("client");
        assert_eq!(
            client.url(&["subjects", "tributary.events.UploadReady", "versions"]),
            "http://127.0.0.1:8081/prefix/subjects/tributary.events.UploadReady/versions"
        );
        assert_eq!(
            client.url(&["subjects", "a/b c"]),
            "http://127.0.0.1:8081/prefix/subjects/a%2Fb%20c"
        );
        assert!(RegistryClient::new("ftp://x").is_err());
        assert!(RegistryClient::new("not a url").is_err());
    }
}
