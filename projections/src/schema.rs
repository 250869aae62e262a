//! The read models' tables. Every write carries the event's log position (`USING TIMESTAMP`, see [`crate::fold::write_timestamp`]), so
//! replaying or redelivering an event changes nothing, and no table uses counters.

use tributary_runtime::cql::Migration;

/// Component name under which these migrations are recorded.
pub const COMPONENT: &str = "projector";

/// Read-model migrations, applied by the projector at start.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "upload read models",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {keyspace}.uploads_by_id (upload_id text PRIMARY KEY, \
         tenant_id text, filename text, size bigint, content_type text, bucket text, \
         object_key text, part_size bigint, part_count int, sha256 text, \
         metadata map<text, text>, state text, error_code text, error_message text, \
         created_at timestamp, expires_at timestamp, updated_at timestamp)",
            // Newest first per tenant and month: a month bucket keeps a big tenant's partitions
            // bounded; UUIDv7 ids sort by creation time as text.
            "CREATE TABLE IF NOT EXISTS {keyspace}.uploads_by_tenant (tenant_id text, month text, \
         upload_id text, filename text, size bigint, content_type text, state text, \
         PRIMARY KEY ((tenant_id, month), upload_id)) WITH CLUSTERING ORDER BY (upload_id DESC)",
            "CREATE TABLE IF NOT EXISTS {keyspace}.tenant_months (tenant_id text, month text, \
         PRIMARY KEY (tenant_id, month)) WITH CLUSTERING ORDER BY (month DESC)",
            "CREATE TABLE IF NOT EXISTS {keyspace}.upload_parts (upload_id text, part_number int, \
         etag text, size bigint, PRIMARY KEY (upload_id, part_number))",
            "CREATE TABLE IF NOT EXISTS {keyspace}.upload_variants (upload_id text, variant text, \
         object_key text, content_type text, size bigint, width int, height int, \
         placeholder text, PRIMARY KEY (upload_id, variant))",
            // What the realtime bridge replays for catch-up, in log order.
            "CREATE TABLE IF NOT EXISTS {keyspace}.upload_timeline (upload_id text, \
         log_partition int, log_offset bigint, event_type text, event_id text, \
         occurred_at timestamp, PRIMARY KEY (upload_id, log_partition, log_offset))",
        ],
    },
    Migration {
        version: 2,
        name: "tenants, api keys and usage",
        statements: &[
            // Frozen: one cell, so a redelivered policy overwrites itself (a non-frozen list
            // appends its elements again on a same-timestamp rewrite).
            "CREATE TABLE IF NOT EXISTS {keyspace}.tenants (tenant_id text PRIMARY KEY, name text, \
         max_file_size bigint, allowed_content_types frozen<list<text>>, byte_quota bigint, \
         max_concurrent_uploads int, created_at timestamp, updated_at timestamp)",
            // Looked up by the key id embedded in a presented key; only the hash is stored.
            "CREATE TABLE IF NOT EXISTS {keyspace}.keys_by_id (key_id text PRIMARY KEY, \
         tenant_id text, key_hash text, issued_at timestamp, expires_at timestamp, \
         revoked_at timestamp)",
            "CREATE TABLE IF NOT EXISTS {keyspace}.keys_by_tenant (tenant_id text, key_id text, \
         key_hash text, issued_at timestamp, expires_at timestamp, revoked_at timestamp, \
         PRIMARY KEY (tenant_id, key_id))",
            // What each upload contributes to its tenant's usage, one row per stored object
            // (`original`, `variant/<name>`), in the upload's month bucket: usage is a sum over
            // the tenant's months, so no counter is needed and a replay writes the same rows.
            "CREATE TABLE IF NOT EXISTS {keyspace}.tenant_usage_items (tenant_id text, month text, \
         upload_id text, item text, reserved_bytes bigint, stored_bytes bigint, active int, \
         PRIMARY KEY ((tenant_id, month), upload_id, item))",
        ],
    },
    Migration {
        version: 3,
        name: "upload progress",
        statements: &[
            // The latest progress of each upload's current stage, from the progress topic
            // (retained for a day: a rebuild restores what is retained, which is all that an
            // upload still processing needs).
            "CREATE TABLE IF NOT EXISTS {keyspace}.upload_progress (upload_id text PRIMARY KEY, \
             stage text, bytes_done bigint, bytes_total bigint, percent double, \
             updated_at timestamp)",
        ],
    },
];
