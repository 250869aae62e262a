//! The library behind `tributary-ops`, the operators' command: everything an on-call engineer
//! does with the event log, the read models and tenants, without writing a Kafka client.
//!
//! - [`log`]: reading a topic's records (by partition, from an offset, up to the current end)
//!   and showing them as JSON with their events decoded.
//! - [`tail`]: follow a topic, filtered by tenant or upload.
//! - [`replay`]: a tenant's whole history, in log order.
//! - [`dlq`]: list, show and re-drive dead letters.
//! - [`lag`]: consumer groups' committed offsets against the end of the log.
//! - [`tenant`]: tenant administration through the ingest-api's admin routes.

pub mod dlq;
pub mod lag;
pub mod log;
pub mod replay;
pub mod tail;
pub mod tenant;

use tributary_runtime::{kafka::KafkaError, topics};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// A Kafka client could not be created or a request to the cluster failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The topic does not exist on the cluster.
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    /// A dead letter was named that is not in the dead-letter topic.
    #[error("no dead letter at {0}")]
    NoSuchDeadLetter(String),
    /// The caller's input makes no sense (a bad position, an undecodable fix).
    #[error("{0}")]
    Invalid(String),
    /// The schema catalog could not be loaded or an event could not be encoded.
    #[error("schemas: {0}")]
    Schema(String),
    /// The ingest-api could not be reached.
    #[error("ingest-api at {url} is unreachable: {reason}")]
    ApiUnreachable {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// The ingest-api refused the request.
    #[error("ingest-api refused ({status}): {code}: {message}")]
    ApiRefused {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's explanation.
        message: String,
    },
}

impl OpsError {
    /// Wraps any Kafka-side error.
    pub fn kafka(error: impl std::fmt::Display) -> Self {
        Self::Kafka(error.to_string())
    }
}

impl From<KafkaError> for OpsError {
    fn from(error: KafkaError) -> Self {
        Self::kafka(error)
    }
}

/// Resolves the short names operators type (`lifecycle`, `admin`, `progress`, `media-jobs`,
/// `dlq`) to topic names; any other name is taken as a topic name.
pub fn topic_name(name: &str) -> &str {
    match name {
        "lifecycle" | "uploads" => topics::LIFECYCLE,
        "admin" | "tenants" => topics::TENANT_ADMIN,
        "progress" => topics::PROGRESS,
        "media-jobs" | "media" | "jobs" => topics::MEDIA_JOBS,
        "dlq" | "deadletter" | "dead-letters" => topics::DEAD_LETTERS,
        other => other,
    }
}

/// Whether records of `topic` are keyed by tenant id (so one partition holds a tenant's
/// whole history there).
pub fn keyed_by_tenant(topic: &str) -> bool {
    [topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS].contains(&topic)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_resolve_and_full_names_pass_through() {
        assert_eq!(topic_name("lifecycle"), topics::LIFECYCLE);
        assert_eq!(topic_name("dlq"), topics::DEAD_LETTERS);
        assert_eq!(topic_name("my.topic"), "my.topic");
        assert!(keyed_by_tenant(topics::LIFECYCLE));
        assert!(!keyed_by_tenant(topics::MEDIA_JOBS));
        assert!(!keyed_by_tenant(topics::DEAD_LETTERS));
    }
}
