//! Versions of the read models, for rebuilds by replay.
//!
//! Version 1 lives in the configured keyspace; version N > 1 in `<keyspace>_rm<N>`, a whole
//! keyspace, so a rebuild writes next to the live models without touching them and an old
//! version is dropped in one statement. One row, `<keyspace>.read_model_versions`, names the
//! active version: readers and the live projector follow it, so switching is one
//! compare-and-set. An old version stays until dropped explicitly.

use scylla::client::session::Session;
use tributary_runtime::cql::{self, Migration};

use crate::ProjectionError;

/// Name of the pointer row.
const POINTER: &str = "uploads";

/// Migrations of the pointer table (component `read-model-versions`, configured keyspace).
const POINTER_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "read model versions",
    statements: &[
        "CREATE TABLE IF NOT EXISTS {keyspace}.read_model_versions (name text PRIMARY KEY, \
         active int, updated_at timestamp)",
    ],
}];

/// The keyspace holding read-model `version`.
pub fn keyspace_of(base: &str, version: i32) -> String {
    if version <= 1 {
        base.to_string()
    } else {
        format!("{base}_rm{version}")
    }
}

/// The consumer group projecting into `version`: each version has its own offsets, so a new
/// one starts from offset 0 and the live projector continues where a rebuild stopped.
pub fn group_of(base_group: &str, version: i32) -> String {
    if version <= 1 {
        base_group.to_string()
    } else {
        format!("{base_group}-v{version}")
    }
}

/// Creates the pointer table and the tables of `version` if needed.
pub async fn ensure(
    session: &Session,
    base: &str,
    replication: u8,
    version: i32,
) -> Result<(), ProjectionError> {
    cql::migrate(
        session,
        base,
        replication,
        "read-model-versions",
        POINTER_MIGRATIONS,
    )
    .await?;
    crate::ensure_schema(session, &keyspace_of(base, version), replication).await
}

/// The active version (1 until a rebuild switched).
pub async fn active(session: &Session, base: &str) -> Result<i32, ProjectionError> {
    let row = session
        .query_unpaged(
            format!("SELECT active FROM {base}.read_model_versions WHERE name = ?"),
            (POINTER,),
        )
        .await
        .map_err(ProjectionError::cql)?
        .into_rows_result()
        .map_err(ProjectionError::cql)?
        .maybe_first_row::<(Option<i32>,)>()
        .map_err(ProjectionError::cql)?;
    Ok(row.and_then(|(v,)| v).unwrap_or(1))
}

/// Makes `to` the active version if `from` still is; false when someone else switched first.
pub async fn activate(
    session: &Session,
    base: &str,
    from: i32,
    to: i32,
) -> Result<bool, ProjectionError> {
    let now = scylla::value::CqlTimestamp(tributary_schemas::now_micros() / 1000);
    // The row may not exist yet (version 1 implied): create it first, then compare-and-set.
    session
        .query_unpaged(
            format!("INSERT INTO {base}.read_model_versions (name, active, updated_at) VALUES (?, 1, ?) IF NOT EXISTS"),
            (POINTER, now),
        )
        .await
        .map_err(ProjectionError::cql)?;
    let result = session
        .query_unpaged(
            format!("UPDATE {base}.read_model_versions SET active = ?, updated_at = ? WHERE name = ? IF active = ?"),
            (to, now, POINTER, from),
        )
        .await
        .map_err(ProjectionError::cql)?;
    let applied = result
        .into_rows_result()
        .map_err(ProjectionError::cql)?
        .first_row::<scylla::value::Row>()
        .map_err(ProjectionError::cql)?;
    Ok(matches!(
        applied.columns.first(),
        Some(Some(scylla::value::CqlValue::Boolean(true)))
    ))
}

/// Every version that exists (has a keyspace), ascending.
pub async fn existing(session: &Session, base: &str) -> Result<Vec<i32>, ProjectionError> {
    let rows = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
        .map_err(ProjectionError::cql)?
        .into_rows_result()
        .map_err(ProjectionError::cql)?;
    let prefix = format!("{base}_rm");
    let mut versions = vec![1];
    for row in rows.rows::<(String,)>().map_err(ProjectionError::cql)? {
        let (name,) = row.map_err(ProjectionError::cql)?;
        if let Some(v) = name
            .strip_prefix(&prefix)
            .and_then(|v| v.parse::<i32>().ok())
        {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

/// Drops version `version` (its keyspace). Refuses the active version and version 1 (which
/// shares the keyspace with other components' tables).
pub async fn drop_version(
    session: &Session,
    base: &str,
    version: i32,
) -> Result<(), ProjectionError> {
    if version <= 1 {
        return Err(ProjectionError::Cql(
            "version 1 lives in the main keyspace and cannot be dropped".into(),
        ));
    }
    if active(session, base).await? == version {
        return Err(ProjectionError::Cql(format!(
            "version {version} is active; activate another first"
        )));
    }
    session
        .query_unpaged(
            format!("DROP KEYSPACE IF EXISTS {}", keyspace_of(base, version)),
            (),
        )
        .await
        .map_err(ProjectionError::cql)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_one_is_the_main_keyspace_and_group() {
        assert_eq!(keyspace_of("tributary", 1), "tributary");
        assert_eq!(keyspace_of("tributary", 3), "tributary_rm3");
        assert_eq!(group_of("tributary-projector", 1), "tributary-projector");
        assert_eq!(group_of("tributary-projector", 2), "tributary-projector-v2");
    }
}
