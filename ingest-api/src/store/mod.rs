//! The API's command-side state in CQL: what it must know synchronously to validate the next
//! command (tenants and key hashes for auth, quota reservations, upload sessions, confirmed
//! parts, idempotency keys). Every row is derived from an event the API published first, and
//! written with that event's time (`USING TIMESTAMP`), so rewriting it is a no-op.
//!
//! The read models that answer status and listing queries belong to the projector; the API
//! never writes those.

mod quota;

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use tributary_runtime::cql::{self, CqlError, Migration};

pub use quota::{Reservation, ReserveError};

/// Component name under which the API's migrations are recorded.
const COMPONENT: &str = "ingest-api";

/// The API's tables. Names start with `api_` to mark who owns them.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "command-side tables",
    statements: &[
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_tenants (tenant_id text PRIMARY KEY, \
         name text, max_file_size bigint, allowed_content_types list<text>, byte_quota bigint, \
         max_concurrent_uploads int, created_at timestamp)",
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_keys (key_id text PRIMARY KEY, \
         tenant_id text, key_hash text, revoked boolean, created_at timestamp)",
        // Changed only by lightweight transactions (compare-and-set); never counters, which
        // cannot be made idempotent.
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_quota (tenant_id text PRIMARY KEY, \
         reserved_bytes bigint, active_uploads int)",
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_sessions (upload_id text PRIMARY KEY, \
         tenant_id text, filename text, size bigint, content_type text, bucket text, \
         object_key text, s3_upload_id text, part_size bigint, part_count int, sha256 text, \
         state text, created_at timestamp, expires_at timestamp, correlation_id text)",
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_parts (upload_id text, part_number int, \
         etag text, size bigint, PRIMARY KEY (upload_id, part_number))",
        // Idempotency keys are remembered for a day, like other payment-style APIs.
        "CREATE TABLE IF NOT EXISTS {keyspace}.api_idempotency (tenant_id text, \
         idempotency_key text, upload_id text, request_hash text, \
         PRIMARY KEY ((tenant_id, idempotency_key))) WITH default_time_to_live = 86400",
    ],
}];

/// A tenant's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// Tenant id.
    pub tenant_id: String,
    /// Display name.
    pub name: String,
    /// Largest file accepted, bytes.
    pub max_file_size: i64,
    /// Allowed MIME types (`type/*` wildcards allowed).
    pub allowed_content_types: Vec<String>,
    /// Bytes the tenant may have reserved or stored at once.
    pub byte_quota: i64,
    /// Unfinished uploads the tenant may have at once.
    pub max_concurrent_uploads: i32,
}

/// A stored API key.
#[derive(Debug, Clone)]
pub struct StoredKey {
    /// Owning tenant.
    pub tenant_id: String,
    /// `sha256:<hex>` of the secret.
    pub key_hash: String,
    /// Revoked keys authenticate nobody.
    pub revoked: bool,
}

/// Lifecycle state of an upload session, as the API tracks it for command validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Parts may be uploaded and confirmed.
    Uploading,
    /// Completion was requested; assembly is the processors' job.
    Completing,
    /// Aborted by the client.
    Aborted,
    /// Deleted after completion.
    Deleted,
    /// Ready or failed: the bytes stay reserved (stored), the upload slot is free.
    Finished,
    /// Rejected or expired: bytes and slot released.
    Released,
}

impl SessionState {
    fn as_str(self) -> &'static str {
        match self {
            Self::Uploading => "uploading",
            Self::Completing => "completing",
            Self::Aborted => "aborted",
            Self::Deleted => "deleted",
            Self::Finished => "finished",
            Self::Released => "released",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "completing" => Self::Completing,
            "aborted" => Self::Aborted,
            "deleted" => Self::Deleted,
            "finished" => Self::Finished,
            "released" => Self::Released,
            _ => Self::Uploading,
        }
    }
}

/// One upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    /// Upload id (UUIDv7).
    pub upload_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Client filename (validated).
    pub filename: String,
    /// Declared size.
    pub size: i64,
    /// Declared, normalized content type.
    pub content_type: String,
    /// Bucket.
    pub bucket: String,
    /// Server-chosen object key under the tenant prefix.
    pub object_key: String,
    /// Storage's multipart upload id.
    pub s3_upload_id: String,
    /// Size of every part but the last.
    pub part_size: i64,
    /// Number of parts.
    pub part_count: i32,
    /// Declared SHA-256, if any.
    pub sha256: Option<String>,
    /// Where the session is.
    pub state: SessionState,
    /// Creation time, micros since the epoch.
    pub created_at: i64,
    /// Expiry of the unfinished upload, micros since the epoch.
    pub expires_at: i64,
    /// Correlation id shared by the upload's events.
    pub correlation_id: String,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// CQL failed (cluster down, timeout).
    #[error(transparent)]
    Cql(#[from] CqlError),
}

fn fail(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Cql(CqlError::statement(what, error))
}

/// Prepared statements over the API's tables.
pub struct Store {
    session: Arc<Session>,
    insert_tenant: PreparedStatement,
    select_tenant: PreparedStatement,
    insert_key: PreparedStatement,
    select_key: PreparedStatement,
    revoke_key: PreparedStatement,
    insert_session: PreparedStatement,
    select_session: PreparedStatement,
    update_session_state: PreparedStatement,
    end_session: PreparedStatement,
    delete_finished: PreparedStatement,
    insert_part: PreparedStatement,
    select_parts: PreparedStatement,
    select_part: PreparedStatement,
    claim_idempotency: PreparedStatement,
    select_idempotency: PreparedStatement,
    delete_idempotency: PreparedStatement,
    quota: Arc<quota::Quota>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store(..)")
    }
}

impl Store {
    /// Applies the API's migrations and prepares its statements.
    pub async fn open(
        session: Arc<Session>,
        keyspace: &str,
        replication: u8,
    ) -> Result<Self, StoreError> {
        cql::migrate(&session, keyspace, replication, COMPONENT, MIGRATIONS).await?;
        let prepare = |cql: String| {
            let session = session.clone();
            async move {
                let mut statement = session
                    .prepare(cql.replace("{ks}", keyspace))
                    .await
                    .map_err(|e| fail("prepare", e))?;
                // Every statement below is safe to retry: inserts carry their own
                // timestamps, LWTs compare before they set.
                statement.set_is_idempotent(true);
                Ok::<_, StoreError>(statement)
            }
        };
        Ok(Self {
            insert_tenant: prepare("INSERT INTO {ks}.api_tenants (tenant_id, name, max_file_size, allowed_content_types, byte_quota, max_concurrent_uploads, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?".into()).await?,
            select_tenant: prepare("SELECT tenant_id, name, max_file_size, allowed_content_types, byte_quota, max_concurrent_uploads FROM {ks}.api_tenants WHERE tenant_id = ?".into()).await?,
            insert_key: prepare("INSERT INTO {ks}.api_keys (key_id, tenant_id, key_hash, revoked, created_at) VALUES (?, ?, ?, false, ?) USING TIMESTAMP ?".into()).await?,
            select_key: prepare("SELECT tenant_id, key_hash, revoked FROM {ks}.api_keys WHERE key_id = ?".into()).await?,
            revoke_key: prepare("UPDATE {ks}.api_keys USING TIMESTAMP ? SET revoked = true WHERE key_id = ?".into()).await?,
            insert_session: prepare("INSERT INTO {ks}.api_sessions (upload_id, tenant_id, filename, size, content_type, bucket, object_key, s3_upload_id, part_size, part_count, sha256, state, created_at, expires_at, correlation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?".into()).await?,
            select_session: prepare("SELECT upload_id, tenant_id, filename, size, content_type, bucket, object_key, s3_upload_id, part_size, part_count, sha256, state, created_at, expires_at, correlation_id FROM {ks}.api_sessions WHERE upload_id = ?".into()).await?,
            delete_finished: prepare("UPDATE {ks}.api_sessions SET state = 'deleted' WHERE upload_id = ? IF state = 'finished'".into()).await?,
            end_session: prepare("UPDATE {ks}.api_sessions SET state = ? WHERE upload_id = ? IF state IN ('uploading', 'completing')".into()).await?,
            update_session_state: prepare("UPDATE {ks}.api_sessions USING TIMESTAMP ? SET state = ? WHERE upload_id = ?".into()).await?,
            insert_part: prepare("INSERT INTO {ks}.api_parts (upload_id, part_number, etag, size) VALUES (?, ?, ?, ?) USING TIMESTAMP ?".into()).await?,
            select_parts: prepare("SELECT part_number, etag, size FROM {ks}.api_parts WHERE upload_id = ?".into()).await?,
            select_part: prepare("SELECT etag, size FROM {ks}.api_parts WHERE upload_id = ? AND part_number = ?".into()).await?,
            claim_idempotency: prepare("INSERT INTO {ks}.api_idempotency (tenant_id, idempotency_key, upload_id, request_hash) VALUES (?, ?, ?, ?) IF NOT EXISTS".into()).await?,
            select_idempotency: prepare("SELECT upload_id, request_hash FROM {ks}.api_idempotency WHERE tenant_id = ? AND idempotency_key = ?".into()).await?,
            delete_idempotency: prepare("DELETE FROM {ks}.api_idempotency WHERE tenant_id = ? AND idempotency_key = ? IF upload_id = ?".into()).await?,
            quota: Arc::new(quota::Quota::prepare(session.clone(), keyspace).await?),
            session,
        })
    }

    /// Records a tenant (after its `TenantCreated` or `QuotaChanged` event was acknowledged).
    pub async fn put_tenant(
        &self,
        policy: &TenantPolicy,
        at_micros: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert_tenant,
                (
                    &policy.tenant_id,
                    &policy.name,
                    policy.max_file_size,
                    &policy.allowed_content_types,
                    policy.byte_quota,
                    policy.max_concurrent_uploads,
                    micros_to_ts(at_micros),
                    at_micros,
                ),
            )
            .await
            .map_err(|e| fail("insert tenant", e))?;
        self.quota.ensure_row(&policy.tenant_id).await
    }

    /// A tenant's policy.
    pub async fn tenant(&self, tenant_id: &str) -> Result<Option<TenantPolicy>, StoreError> {
        type Row = (String, String, i64, Option<Vec<String>>, i64, i32);
        let row = self
            .session
            .execute_unpaged(&self.select_tenant, (tenant_id,))
            .await
            .map_err(|e| fail("select tenant", e))?
            .into_rows_result()
            .map_err(|e| fail("select tenant", e))?
            .maybe_first_row::<Row>()
            .map_err(|e| fail("select tenant", e))?;
        Ok(row.map(
            |(tenant_id, name, max_file_size, types, byte_quota, max_concurrent_uploads)| {
                TenantPolicy {
                    tenant_id,
                    name,
                    max_file_size,
                    allowed_content_types: types.unwrap_or_default(),
                    byte_quota,
                    max_concurrent_uploads,
                }
            },
        ))
    }

    /// Records an issued key's hash.
    pub async fn put_key(
        &self,
        key_id: &str,
        tenant_id: &str,
        key_hash: &str,
        at_micros: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert_key,
                (
                    key_id,
                    tenant_id,
                    key_hash,
                    micros_to_ts(at_micros),
                    at_micros,
                ),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("insert key", e))
    }

    /// Marks a key revoked.
    pub async fn revoke_key(&self, key_id: &str, at_micros: i64) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.revoke_key, (at_micros, key_id))
            .await
            .map(|_| ())
            .map_err(|e| fail("revoke key", e))
    }

    /// Looks a key up by id.
    pub async fn key(&self, key_id: &str) -> Result<Option<StoredKey>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.select_key, (key_id,))
            .await
            .map_err(|e| fail("select key", e))?
            .into_rows_result()
            .map_err(|e| fail("select key", e))?
            .maybe_first_row::<(String, String, Option<bool>)>()
            .map_err(|e| fail("select key", e))?;
        Ok(row.map(|(tenant_id, key_hash, revoked)| StoredKey {
            tenant_id,
            key_hash,
            revoked: revoked.unwrap_or(false),
        }))
    }

    /// Reserves `bytes` and one active upload for a tenant, unless that would exceed its
    /// policy. Safe under any concurrency (compare-and-set).
    pub async fn reserve(
        &self,
        policy: &TenantPolicy,
        bytes: i64,
        uploads: i32,
    ) -> Result<Reservation, ReserveError> {
        self.quota.reserve(policy, bytes, uploads).await
    }

    /// Gives back a reservation (failed initiation, abort, expiry).
    pub async fn release(
        &self,
        tenant_id: &str,
        bytes: i64,
        uploads: i32,
    ) -> Result<(), StoreError> {
        self.quota.release(tenant_id, bytes, uploads).await
    }

    /// Current usage of a tenant: (reserved bytes, active uploads).
    pub async fn usage(&self, tenant_id: &str) -> Result<(i64, i32), StoreError> {
        self.quota.read(tenant_id).await
    }

    /// Records a session (after its `UploadInitiated` was acknowledged).
    pub async fn put_session(&self, s: &UploadSession) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert_session,
                (
                    &s.upload_id,
                    &s.tenant_id,
                    &s.filename,
                    s.size,
                    &s.content_type,
                    &s.bucket,
                    &s.object_key,
                    &s.s3_upload_id,
                    s.part_size,
                    s.part_count,
                    &s.sha256,
                    s.state.as_str(),
                    micros_to_ts(s.created_at),
                    micros_to_ts(s.expires_at),
                    &s.correlation_id,
                    s.created_at,
                ),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("insert session", e))
    }

    /// Looks a session up.
    pub async fn session(&self, upload_id: &str) -> Result<Option<UploadSession>, StoreError> {
        type Row = (
            String,
            String,
            String,
            i64,
            String,
            String,
            String,
            String,
            i64,
            i32,
            Option<String>,
            String,
            scylla::value::CqlTimestamp,
            scylla::value::CqlTimestamp,
            String,
        );
        let row = self
            .session
            .execute_unpaged(&self.select_session, (upload_id,))
            .await
            .map_err(|e| fail("select session", e))?
            .into_rows_result()
            .map_err(|e| fail("select session", e))?
            .maybe_first_row::<Row>()
            .map_err(|e| fail("select session", e))?;
        Ok(row.map(|r| UploadSession {
            upload_id: r.0,
            tenant_id: r.1,
            filename: r.2,
            size: r.3,
            content_type: r.4,
            bucket: r.5,
            object_key: r.6,
            s3_upload_id: r.7,
            part_size: r.8,
            part_count: r.9,
            sha256: r.10,
            state: SessionState::parse(&r.11),
            created_at: r.12.0 * 1000,
            expires_at: r.13.0 * 1000,
            correlation_id: r.14,
        }))
    }

    /// Moves an unfinished (uploading or completing) session to the terminal `state`;
    /// false when it had already ended. A compare-and-set, so that of two concurrent
    /// endings (a redelivered event, a client's delete) exactly one releases the quota.
    pub async fn end_session(
        &self,
        upload_id: &str,
        state: SessionState,
    ) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.end_session, (state.as_str(), upload_id))
            .await
            .map_err(|e| fail("end session", e))?;
        quota::lwt_applied(result).map_err(|e| fail("end session", e))
    }

    /// Moves a finished session to `deleted`; false when it was not finished.
    pub async fn delete_finished(&self, upload_id: &str) -> Result<bool, StoreError> {
        let result = self
            .session
            .execute_unpaged(&self.delete_finished, (upload_id,))
            .await
            .map_err(|e| fail("delete session", e))?;
        quota::lwt_applied(result).map_err(|e| fail("delete session", e))
    }

    /// Moves a session to `state` (after the matching event was acknowledged).
    pub async fn set_state(
        &self,
        upload_id: &str,
        state: SessionState,
        at_micros: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.update_session_state,
                (at_micros, state.as_str(), upload_id),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("update session", e))
    }

    /// Records a confirmed part (after its `PartConfirmed` was acknowledged).
    pub async fn put_part(
        &self,
        upload_id: &str,
        number: i32,
        etag: &str,
        size: i64,
        at_micros: i64,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.insert_part,
                (upload_id, number, etag, size, at_micros),
            )
            .await
            .map(|_| ())
            .map_err(|e| fail("insert part", e))
    }

    /// Confirmed parts of an upload: (number, etag, size), ascending.
    pub async fn parts(&self, upload_id: &str) -> Result<Vec<(i32, String, i64)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.select_parts, (upload_id,))
            .await
            .map_err(|e| fail("select parts", e))?
            .into_rows_result()
            .map_err(|e| fail("select parts", e))?;
        rows.rows::<(i32, String, i64)>()
            .map_err(|e| fail("select parts", e))?
            .map(|r| r.map_err(|e| fail("select parts", e)))
            .collect()
    }

    /// One confirmed part: (etag, size).
    pub async fn part(
        &self,
        upload_id: &str,
        number: i32,
    ) -> Result<Option<(String, i64)>, StoreError> {
        self.session
            .execute_unpaged(&self.select_part, (upload_id, number))
            .await
            .map_err(|e| fail("select part", e))?
            .into_rows_result()
            .map_err(|e| fail("select part", e))?
            .maybe_first_row::<(String, i64)>()
            .map_err(|e| fail("select part", e))
    }

    /// Claims an idempotency key for a new upload id. Returns `None` when claimed, or the
    /// earlier claim `(upload_id, request_hash)` when the key was used before.
    pub async fn claim_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
        upload_id: &str,
        request_hash: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let result = self
            .session
            .execute_unpaged(
                &self.claim_idempotency,
                (tenant_id, key, upload_id, request_hash),
            )
            .await
            .map_err(|e| fail("claim idempotency key", e))?;
        if quota::lwt_applied(result).map_err(|e| fail("claim idempotency key", e))? {
            return Ok(None);
        }
        let row = self
            .session
            .execute_unpaged(&self.select_idempotency, (tenant_id, key))
            .await
            .map_err(|e| fail("read idempotency key", e))?
            .into_rows_result()
            .map_err(|e| fail("read idempotency key", e))?
            .maybe_first_row::<(String, String)>()
            .map_err(|e| fail("read idempotency key", e))?;
        // Gone between the two statements (expired or released): treat as a fresh claim race.
        Ok(Some(row.unwrap_or_default()))
    }

    /// Frees an idempotency key whose request failed, so a retry can proceed.
    pub async fn release_idempotency(
        &self,
        tenant_id: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.delete_idempotency, (tenant_id, key, upload_id))
            .await
            .map(|_| ())
            .map_err(|e| fail("release idempotency key", e))
    }
}

fn micros_to_ts(micros: i64) -> scylla::value::CqlTimestamp {
    scylla::value::CqlTimestamp(micros / 1000)
}
