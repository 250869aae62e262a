//! CQL plumbing for ScyllaDB (Cassandra locally): session set-up and versioned migrations.
//! Only ScyllaDB-compatible CQL is used: no SASI, no materialized views, no counters in
//! rebuildable tables.

mod migrations;

use std::time::Duration;

use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use crate::config::CqlConfig;

pub use migrations::{Migration, migrate};

/// Why a CQL operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CqlError {
    /// No contact point answered within the connect timeout.
    #[error("cql at {contact_points} is unreachable: {reason}")]
    Unreachable {
        /// The contact points tried.
        contact_points: String,
        /// The driver's explanation.
        reason: String,
    },
    /// A statement failed.
    #[error("cql statement failed ({what}): {reason}")]
    Statement {
        /// What was being done, e.g. `create keyspace tributary`.
        what: String,
        /// The driver's explanation.
        reason: String,
    },
    /// A migration already applied differs from the one in the code.
    #[error(
        "migration {version} ({name}) was changed after it was applied; add a new migration instead"
    )]
    ChangedMigration {
        /// Migration version.
        version: i32,
        /// Migration name.
        name: String,
    },
    /// The keyspace name is not a plain identifier.
    #[error("invalid keyspace name '{0}'")]
    InvalidKeyspace(String),
}

impl CqlError {
    /// A failed statement, described by `what` was being done.
    pub fn statement(what: impl Into<String>, error: impl std::fmt::Display) -> Self {
        Self::Statement {
            what: what.into(),
            reason: error.to_string(),
        }
    }
}

/// Opens a session to the cluster (no keyspace selected), failing after the connect timeout.
pub async fn connect(config: &CqlConfig) -> Result<Session, CqlError> {
    let timeout = Duration::from_millis(config.connect_timeout_ms);
    let unreachable = |reason: String| CqlError::Unreachable {
        contact_points: config.contact_points.join(","),
        reason,
    };
    let builder = SessionBuilder::new()
        .known_nodes(&config.contact_points)
        .connection_timeout(timeout);
    match tokio::time::timeout(timeout, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(error)) => Err(unreachable(error.to_string())),
        Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
    }
}

/// Answers when the cluster serves queries (used by readiness probes).
pub async fn ping(session: &Session) -> Result<(), CqlError> {
    session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .map(|_| ())
        .map_err(|e| CqlError::statement("ping", e))
}
