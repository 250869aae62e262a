//! Versioned, forward-only schema migrations.
//!
//! Each migration is a list of idempotent statements (`CREATE ... IF NOT EXISTS`), applied in
//! version order and recorded with a checksum in `<keyspace>.schema_migrations`, per
//! component (each binary owns its tables and numbers its migrations from 1). Running
//! [`migrate`] again is a no-op; editing an applied migration is refused.

use scylla::client::session::Session;

use super::CqlError;
use crate::config::is_cql_identifier;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Strictly increasing version.
    pub version: i32,
    /// Short name for logs and the migrations table.
    pub name: &'static str,
    /// CQL statements; `{keyspace}` is replaced by the target keyspace.
    pub statements: &'static [&'static str],
}

impl Migration {
    /// A stable fingerprint of the statements (FNV-1a, hex), to detect edited migrations.
    fn checksum(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for statement in self.statements {
            for byte in statement.bytes().chain([0u8]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }
}

/// Creates `keyspace` if needed and applies the migrations of `component` (e.g.
/// `ingest-api`, `projector`) it has not seen yet.
pub async fn migrate(
    session: &Session,
    keyspace: &str,
    replication_factor: u8,
    component: &str,
    migrations: &[Migration],
) -> Result<(), CqlError> {
    if !is_cql_identifier(keyspace) {
        return Err(CqlError::InvalidKeyspace(keyspace.to_string()));
    }
    // NetworkTopologyStrategy with the replication_factor shorthand works on ScyllaDB and
    // Cassandra >= 4 alike.
    run(
        session,
        &format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
        ),
        &format!("create keyspace {keyspace}"),
    )
    .await?;
    run(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_migrations (\
             component text, version int, name text, checksum text, applied_at timestamp, \
             PRIMARY KEY (component, version))"
        ),
        "create schema_migrations",
    )
    .await?;
    await_agreement(session).await?;

    let mut ordered: Vec<&Migration> = migrations.iter().collect();
    ordered.sort_by_key(|m| m.version);
    for migration in ordered {
        let applied = session
            .query_unpaged(
                format!(
                    "SELECT checksum FROM {keyspace}.schema_migrations \
                     WHERE component = ? AND version = ?"
                ),
                (component, migration.version),
            )
            .await
            .map_err(|e| CqlError::statement("read schema_migrations", e))?
            .into_rows_result()
            .map_err(|e| CqlError::statement("read schema_migrations", e))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|e| CqlError::statement("read schema_migrations", e))?;
        let checksum = migration.checksum();
        match applied {
            Some((Some(existing),)) if existing == checksum => continue,
            Some(_) => {
                return Err(CqlError::ChangedMigration {
                    version: migration.version,
                    name: migration.name.to_string(),
                });
            }
            None => {}
        }
        tracing::info!(
            keyspace,
            version = migration.version,
            name = migration.name,
            "applying cql migration"
        );
        for statement in migration.statements {
            let statement = statement.replace("{keyspace}", keyspace);
            run(
                session,
                &statement,
                &format!("migration {}", migration.name),
            )
            .await?;
        }
        await_agreement(session).await?;
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.schema_migrations \
                     (component, version, name, checksum, applied_at) \
                     VALUES (?, ?, ?, ?, toTimestamp(now()))"
                ),
                (component, migration.version, migration.name, checksum),
            )
            .await
            .map_err(|e| CqlError::statement("record migration", e))?;
    }
    Ok(())
}

async fn run(session: &Session, statement: &str, what: &str) -> Result<(), CqlError> {
    session
        .query_unpaged(statement, &[])
        .await
        .map(|_| ())
        .map_err(|e| CqlError::statement(what, e))
}

async fn await_agreement(session: &Session) -> Result<(), CqlError> {
    session
        .await_schema_agreement()
        .await
        .map(|_| ())
        .map_err(|e| CqlError::statement("schema agreement", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_changes_with_any_statement_byte() {
        let a = Migration {
            version: 1,
            name: "a",
            statements: &["CREATE TABLE x (a int PRIMARY KEY)"],
        };
        let b = Migration {
            version: 1,
            name: "a",
            statements: &["CREATE TABLE x (a int PRIMARY KEY) "],
        };
        let c = Migration {
            version: 1,
            name: "a",
            statements: &["CREATE TABLE x (a int", " PRIMARY KEY)"],
        };
        assert_ne!(a.checksum(), b.checksum());
        assert_ne!(a.checksum(), c.checksum());
        assert_eq!(a.checksum(), a.checksum());
    }
}
