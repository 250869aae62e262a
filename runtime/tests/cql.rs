//! The CQL plumbing against the local Cassandra (ScyllaDB stand-in) through the `scylla`
//! driver: versioned migrations apply once, are idempotent, refuse edited history, and rows
//! written with event-derived timestamps make replays no-ops.

use tributary_runtime::cql::{self, CqlError, Migration};
use tributary_runtime::testing;

const V1: Migration = Migration {
    version: 1,
    name: "uploads",
    statements: &["CREATE TABLE IF NOT EXISTS {keyspace}.uploads (\
                   tenant_id text, upload_id text, state text, PRIMARY KEY (tenant_id, upload_id))"],
};
const V2: Migration = Migration {
    version: 2,
    name: "uploads size",
    statements: &["ALTER TABLE {keyspace}.uploads ADD size bigint"],
};

#[tokio::test]
async fn migrations_apply_once_and_refuse_edits() {
    let config = testing::stack_config();
    let session = cql::connect(&config.cql).await.expect("local cassandra");
    cql::ping(&session).await.expect("ping");
    let keyspace = testing::unique("cqltest");

    cql::migrate(&session, &keyspace, 1, "tests", &[V1])
        .await
        .expect("v1");
    // Running again, and with a new migration added, applies only what is new. (ALTER ... ADD
    // is not idempotent, so a second application would fail.)
    cql::migrate(&session, &keyspace, 1, "tests", &[V1, V2])
        .await
        .expect("v1+v2");
    cql::migrate(&session, &keyspace, 1, "tests", &[V2, V1])
        .await
        .expect("again, any order");

    let applied: Vec<(i32, String)> = session
        .query_unpaged(
            format!("SELECT version, name FROM {keyspace}.schema_migrations"),
            &[],
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .rows::<(i32, String)>()
        .expect("typed")
        .map(|r| r.expect("row"))
        .collect();
    let mut applied = applied;
    applied.sort();
    assert_eq!(
        applied,
        vec![(1, "uploads".to_string()), (2, "uploads size".to_string())]
    );

    let edited = Migration {
        statements: &["ALTER TABLE {keyspace}.uploads ADD other text"],
        ..V2
    };
    let error = cql::migrate(&session, &keyspace, 1, "tests", &[V1, edited])
        .await
        .expect_err("edited");
    assert!(
        matches!(error, CqlError::ChangedMigration { version: 2, .. }),
        "{error}"
    );

    let bad = cql::migrate(&session, "x; DROP KEYSPACE system", 1, "tests", &[V1])
        .await
        .expect_err("bad name");
    assert!(matches!(bad, CqlError::InvalidKeyspace(_)), "{bad}");

    // Writes carry event-derived timestamps: a replayed older event never overwrites a newer one.
    let insert = format!(
        "INSERT INTO {keyspace}.uploads (tenant_id, upload_id, state, size) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
    );
    for (state, micros) in [
        ("initiated", 1_000_i64),
        ("ready", 3_000),
        ("uploading", 2_000),
        ("initiated", 1_000),
    ] {
        session
            .query_unpaged(insert.as_str(), ("t1", "u1", state, 42_i64, micros))
            .await
            .expect("insert");
    }
    let (state, size) = session
        .query_unpaged(
            format!(
                "SELECT state, size FROM {keyspace}.uploads WHERE tenant_id = ? AND upload_id = ?"
            ),
            ("t1", "u1"),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .first_row::<(String, i64)>()
        .expect("row");
    assert_eq!((state.as_str(), size), ("ready", 42));

    session
        .query_unpaged(format!("DROP KEYSPACE {keyspace}"), &[])
        .await
        .expect("drop");
}

#[tokio::test]
async fn unreachable_cluster_is_a_clear_error() {
    let mut config = testing::stack_config();
    config.cql.contact_points = vec!["127.0.0.1:1".into()];
    config.cql.connect_timeout_ms = 2_000;
    let error = cql::connect(&config.cql).await.expect_err("must fail");
    assert!(
        error
            .to_string()
            .starts_with("cql at 127.0.0.1:1 is unreachable"),
        "{error}"
    );
}
