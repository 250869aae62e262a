//! Tributary's read models: the projector folds the event log into ScyllaDB tables
//! ([`fold`]); the API and the realtime bridge read them through [`read`].
//!
//! Kafka is the source of truth. Every write carries the event's log position as its timestamp, so replays and
//! redeliveries are no-ops.

pub mod fold;
pub mod projector;
pub mod read;
pub mod schema;
pub mod versions;

use scylla::client::session::Session;
use tributary_runtime::cql;

/// Why a projection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// A CQL statement failed (cluster down, timeout): retryable.
    #[error("cql: {0}")]
    Cql(String),
    /// Migrations could not be applied, or the cluster is unreachable.
    #[error(transparent)]
    Schema(#[from] cql::CqlError),
    /// Kafka could not be reached or consumed.
    #[error("kafka: {0}")]
    Kafka(String),
}

impl ProjectionError {
    /// Wraps any driver error.
    pub fn cql(error: impl std::fmt::Display) -> Self {
        Self::Cql(error.to_string())
    }

    /// Wraps a Kafka or schema-catalog error.
    pub fn kafka(error: impl std::fmt::Display) -> Self {
        Self::Kafka(error.to_string())
    }
}

/// Creates or upgrades the read models' tables.
pub async fn ensure_schema(
    session: &Session,
    keyspace: &str,
    replication: u8,
) -> Result<(), ProjectionError> {
    cql::migrate(
        session,
        keyspace,
        replication,
        schema::COMPONENT,
        schema::MIGRATIONS,
    )
    .await?;
    Ok(())
}
