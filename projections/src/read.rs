//! The read side: typed queries over the read models, for the ingest-api and the realtime
//! bridge. No other crate writes CQL against these tables.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;

use crate::ProjectionError;

/// An upload as the read models know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    /// Upload id.
    pub upload_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Client filename.
    pub filename: Option<String>,
    /// Declared size.
    pub size: Option<i64>,
    /// Declared content type.
    pub content_type: Option<String>,
    /// Number of parts.
    pub part_count: Option<i32>,
    /// State name of the public contract.
    pub state: Option<String>,
    /// Error code of a rejected or failed upload.
    pub error_code: Option<String>,
    /// Error message of a rejected or failed upload.
    pub error_message: Option<String>,
    /// Creation time, millis since the epoch.
    pub created_at_ms: Option<i64>,
    /// Expiry of an unfinished upload, millis since the epoch.
    pub expires_at_ms: Option<i64>,
}

/// One produced variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRow {
    /// Variant name (`thumb`, `display`, `hls_720p`, ...).
    pub variant: String,
    /// Bucket-relative key.
    pub object_key: String,
    /// MIME type.
    pub content_type: String,
    /// Bytes.
    pub size: i64,
    /// Pixel width, for images and video.
    pub width: Option<i32>,
    /// Pixel height.
    pub height: Option<i32>,
    /// Tiny placeholder (ThumbHash) for images.
    pub placeholder: Option<String>,
}

/// A page of a tenant's uploads, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingPage {
    /// Entries of this page: (upload_id, filename, size, content_type, state).
    pub uploads: Vec<ListingRow>,
    /// Cursor of the next page, if there may be one.
    pub next_cursor: Option<String>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingRow {
    /// Upload id.
    pub upload_id: String,
    /// Filename.
    pub filename: Option<String>,
    /// Size.
    pub size: Option<i64>,
    /// Content type.
    pub content_type: Option<String>,
    /// State.
    pub state: Option<String>,
}

/// The latest progress report of an upload's current stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressRow {
    /// Stage, e.g. `transcode`.
    pub stage: String,
    /// Bytes (or units) done.
    pub bytes_done: i64,
    /// Bytes (or units) in all.
    pub bytes_total: i64,
    /// Completion, 0 to 100.
    pub percent: f64,
    /// When it was reported, millis since the epoch.
    pub updated_at_ms: Option<i64>,
}

/// A tenant and its policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantRow {
    /// Tenant id.
    pub tenant_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Largest file accepted, bytes.
    pub max_file_size: Option<i64>,
    /// Allowed content types (`type/*` wildcards allowed).
    pub allowed_content_types: Vec<String>,
    /// Byte quota.
    pub byte_quota: Option<i64>,
    /// Most uploads in flight at once.
    pub max_concurrent_uploads: Option<i32>,
    /// Creation time, millis since the epoch.
    pub created_at_ms: Option<i64>,
}

/// An API key as stored: its hash, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    /// Key id (embedded in the key).
    pub key_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// `sha256:<hex>` of the key.
    pub key_hash: Option<String>,
    /// Issue time, millis since the epoch.
    pub issued_at_ms: Option<i64>,
    /// Expiry, if any, millis since the epoch.
    pub expires_at_ms: Option<i64>,
    /// Revocation time, if revoked, millis since the epoch.
    pub revoked_at_ms: Option<i64>,
}

impl ApiKeyRow {
    /// Whether the key authenticates at `now_ms`.
    pub fn is_valid_at(&self, now_ms: i64) -> bool {
        self.key_hash.is_some()
            && self.revoked_at_ms.is_none()
            && self.expires_at_ms.is_none_or(|at| now_ms < at)
    }
}

/// What a tenant uses, summed from the per-upload items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantUsage {
    /// Bytes reserved by sessions not yet assembled.
    pub reserved_bytes: i64,
    /// Bytes stored: assembled originals and produced variants.
    pub stored_bytes: i64,
    /// Uploads not yet in a final state.
    pub active_uploads: i64,
}

/// Prepared queries over one version of the read models.
struct Statements {
    upload: PreparedStatement,
    parts: PreparedStatement,
    variants: PreparedStatement,
    months: PreparedStatement,
    listing_first: PreparedStatement,
    listing_after: PreparedStatement,
    tenant: PreparedStatement,
    api_key: PreparedStatement,
    tenant_keys: PreparedStatement,
    all_months: PreparedStatement,
    usage: PreparedStatement,
    progress: PreparedStatement,
}

/// Typed queries over the active version of the read models. Readers follow a rebuild's
/// switch: [`ReadModels::refresh`] (called periodically) re-prepares the queries against
/// the newly active version.
pub struct ReadModels {
    /// The configured keyspace (version 1, and the version pointer).
    base: String,
    /// The version the queries target and the queries.
    current: std::sync::RwLock<(i32, Arc<Statements>)>,
}

impl std::fmt::Debug for ReadModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadModels(..)")
    }
}

fn millis(ts: Option<CqlTimestamp>) -> Option<i64> {
    ts.map(|t| t.0)
}

impl Statements {
    async fn prepare(session: &Session, keyspace: &str) -> Result<Self, ProjectionError> {
        let prepare = |cql: &str| {
            let cql = cql.replace("{ks}", keyspace);
            async move { session.prepare(cql).await.map_err(ProjectionError::cql) }
        };
        Ok(Self {
            upload: prepare("SELECT upload_id, tenant_id, filename, size, content_type, part_count, state, error_code, error_message, created_at, expires_at FROM {ks}.uploads_by_id WHERE upload_id = ?").await?,
            parts: prepare("SELECT part_number, size FROM {ks}.upload_parts WHERE upload_id = ?").await?,
            variants: prepare("SELECT variant, object_key, content_type, size, width, height, placeholder FROM {ks}.upload_variants WHERE upload_id = ?").await?,
            months: prepare("SELECT month FROM {ks}.tenant_months WHERE tenant_id = ? AND month <= ?").await?,
            listing_first: prepare("SELECT upload_id, filename, size, content_type, state FROM {ks}.uploads_by_tenant WHERE tenant_id = ? AND month = ? LIMIT ?").await?,
            listing_after: prepare("SELECT upload_id, filename, size, content_type, state FROM {ks}.uploads_by_tenant WHERE tenant_id = ? AND month = ? AND upload_id < ? LIMIT ?").await?,
            tenant: prepare("SELECT tenant_id, name, max_file_size, allowed_content_types, byte_quota, max_concurrent_uploads, created_at FROM {ks}.tenants WHERE tenant_id = ?").await?,
            api_key: prepare("SELECT key_id, tenant_id, key_hash, issued_at, expires_at, revoked_at FROM {ks}.keys_by_id WHERE key_id = ?").await?,
            tenant_keys: prepare("SELECT key_id, tenant_id, key_hash, issued_at, expires_at, revoked_at FROM {ks}.keys_by_tenant WHERE tenant_id = ?").await?,
            all_months: prepare("SELECT month FROM {ks}.tenant_months WHERE tenant_id = ?").await?,
            // Summed by the database, one month bucket at a time (bounded partitions).
            progress: prepare("SELECT stage, bytes_done, bytes_total, percent, updated_at FROM {ks}.upload_progress WHERE upload_id = ?").await?,
            usage: prepare("SELECT sum(reserved_bytes), sum(stored_bytes), sum(active) FROM {ks}.tenant_usage_items WHERE tenant_id = ? AND month = ?").await?,
        })
    }
}

impl ReadModels {
    /// Prepares the queries against the active version under `keyspace` (the tables must
    /// exist: see [`crate::ensure_schema`]).
    pub async fn prepare(session: &Session, keyspace: &str) -> Result<Self, ProjectionError> {
        let version = crate::versions::active(session, keyspace)
            .await
            .unwrap_or(1);
        let statements =
            Statements::prepare(session, &crate::versions::keyspace_of(keyspace, version)).await?;
        Ok(Self {
            base: keyspace.to_string(),
            current: std::sync::RwLock::new((version, Arc::new(statements))),
        })
    }

    /// Follows a switch of the active version; true when the queries changed version.
    pub async fn refresh(&self, session: &Session) -> Result<bool, ProjectionError> {
        let active = crate::versions::active(session, &self.base).await?;
        if active == self.version() {
            return Ok(false);
        }
        let statements =
            Statements::prepare(session, &crate::versions::keyspace_of(&self.base, active)).await?;
        if let Ok(mut current) = self.current.write() {
            *current = (active, Arc::new(statements));
        }
        Ok(true)
    }

    /// The version queried.
    pub fn version(&self) -> i32 {
        self.current.read().map(|c| c.0).unwrap_or(1)
    }

    fn statements(&self) -> Arc<Statements> {
        match self.current.read() {
            Ok(current) => current.1.clone(),
            Err(poisoned) => poisoned.into_inner().1.clone(),
        }
    }

    /// One upload, whoever owns it (callers check the tenant).
    pub async fn upload(
        &self,
        session: &Session,
        upload_id: &str,
    ) -> Result<Option<UploadRow>, ProjectionError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<i32>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<CqlTimestamp>,
            Option<CqlTimestamp>,
        );
        let row = session
            .execute_unpaged(&self.statements().upload, (upload_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?
            .maybe_first_row::<Row>()
            .map_err(ProjectionError::cql)?;
        Ok(row.map(|r| UploadRow {
            upload_id: r.0,
            tenant_id: r.1.unwrap_or_default(),
            filename: r.2,
            size: r.3,
            content_type: r.4,
            part_count: r.5,
            state: r.6,
            error_code: r.7,
            error_message: r.8,
            created_at_ms: millis(r.9),
            expires_at_ms: millis(r.10),
        }))
    }

    /// Confirmed parts: (count, bytes).
    pub async fn confirmed(
        &self,
        session: &Session,
        upload_id: &str,
    ) -> Result<(i64, i64), ProjectionError> {
        let rows = session
            .execute_unpaged(&self.statements().parts, (upload_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?;
        let mut count = 0;
        let mut bytes = 0;
        for row in rows
            .rows::<(i32, Option<i64>)>()
            .map_err(ProjectionError::cql)?
        {
            let (_, size) = row.map_err(ProjectionError::cql)?;
            count += 1;
            bytes += size.unwrap_or(0);
        }
        Ok((count, bytes))
    }

    /// Produced variants.
    pub async fn variants(
        &self,
        session: &Session,
        upload_id: &str,
    ) -> Result<Vec<VariantRow>, ProjectionError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i32>,
            Option<i32>,
            Option<String>,
        );
        let rows = session
            .execute_unpaged(&self.statements().variants, (upload_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?;
        rows.rows::<Row>()
            .map_err(ProjectionError::cql)?
            .map(|row| {
                row.map(|r| VariantRow {
                    variant: r.0,
                    object_key: r.1.unwrap_or_default(),
                    content_type: r.2.unwrap_or_default(),
                    size: r.3.unwrap_or(0),
                    width: r.4,
                    height: r.5,
                    placeholder: r.6,
                })
                .map_err(ProjectionError::cql)
            })
            .collect()
    }

    /// A page of `tenant_id`'s uploads, newest first. The cursor is opaque to clients:
    /// `<month>/<last upload id>`; pages are stable because ids never change position.
    pub async fn list(
        &self,
        session: &Session,
        tenant_id: &str,
        cursor: Option<&str>,
        limit: i32,
    ) -> Result<ListingPage, ProjectionError> {
        let (mut month, mut after) = match cursor.and_then(|c| c.split_once('/')) {
            Some((month, after)) => (month.to_string(), Some(after.to_string())),
            None => ("9999-12".to_string(), None),
        };
        let months: Vec<String> = session
            .execute_unpaged(&self.statements().months, (tenant_id, &month))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?
            .rows::<(String,)>()
            .map_err(ProjectionError::cql)?
            .filter_map(|r| r.ok().map(|(m,)| m))
            .collect();
        let mut uploads = Vec::new();
        for bucket in months {
            if bucket != month {
                month = bucket.clone();
                after = None;
            }
            let want = limit - i32::try_from(uploads.len()).unwrap_or(limit);
            let result = match &after {
                Some(after) => {
                    session
                        .execute_unpaged(
                            &self.statements().listing_after,
                            (tenant_id, &bucket, after, want),
                        )
                        .await
                }
                None => {
                    session
                        .execute_unpaged(
                            &self.statements().listing_first,
                            (tenant_id, &bucket, want),
                        )
                        .await
                }
            }
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?;
            type Row = (
                String,
                Option<String>,
                Option<i64>,
                Option<String>,
                Option<String>,
            );
            for row in result.rows::<Row>().map_err(ProjectionError::cql)? {
                let r = row.map_err(ProjectionError::cql)?;
                uploads.push(ListingRow {
                    upload_id: r.0,
                    filename: r.1,
                    size: r.2,
                    content_type: r.3,
                    state: r.4,
                });
            }
            if uploads.len() >= usize::try_from(limit).unwrap_or(0) {
                let last = uploads
                    .last()
                    .map(|u| u.upload_id.clone())
                    .unwrap_or_default();
                return Ok(ListingPage {
                    uploads,
                    next_cursor: Some(format!("{bucket}/{last}")),
                });
            }
        }
        Ok(ListingPage {
            uploads,
            next_cursor: None,
        })
    }

    /// The latest progress report of an upload, if any.
    pub async fn progress(
        &self,
        session: &Session,
        upload_id: &str,
    ) -> Result<Option<ProgressRow>, ProjectionError> {
        type Row = (
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<f64>,
            Option<CqlTimestamp>,
        );
        let row = session
            .execute_unpaged(&self.statements().progress, (upload_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?
            .maybe_first_row::<Row>()
            .map_err(ProjectionError::cql)?;
        Ok(row.map(|r| ProgressRow {
            stage: r.0.unwrap_or_default(),
            bytes_done: r.1.unwrap_or(0),
            bytes_total: r.2.unwrap_or(0),
            percent: r.3.unwrap_or(0.0),
            updated_at_ms: millis(r.4),
        }))
    }

    /// A tenant and its policy.
    pub async fn tenant(
        &self,
        session: &Session,
        tenant_id: &str,
    ) -> Result<Option<TenantRow>, ProjectionError> {
        type Row = (
            String,
            Option<String>,
            Option<i64>,
            Option<Vec<String>>,
            Option<i64>,
            Option<i32>,
            Option<CqlTimestamp>,
        );
        let row = session
            .execute_unpaged(&self.statements().tenant, (tenant_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?
            .maybe_first_row::<Row>()
            .map_err(ProjectionError::cql)?;
        Ok(row.map(|r| TenantRow {
            tenant_id: r.0,
            name: r.1,
            max_file_size: r.2,
            allowed_content_types: r.3.unwrap_or_default(),
            byte_quota: r.4,
            max_concurrent_uploads: r.5,
            created_at_ms: millis(r.6),
        }))
    }

    /// An API key by id (the id embedded in a presented key).
    pub async fn api_key(
        &self,
        session: &Session,
        key_id: &str,
    ) -> Result<Option<ApiKeyRow>, ProjectionError> {
        let result = session
            .execute_unpaged(&self.statements().api_key, (key_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?;
        let row = result
            .maybe_first_row::<KeyColumns>()
            .map_err(ProjectionError::cql)?;
        Ok(row.map(key_row))
    }

    /// Every API key of a tenant, live or not.
    pub async fn api_keys(
        &self,
        session: &Session,
        tenant_id: &str,
    ) -> Result<Vec<ApiKeyRow>, ProjectionError> {
        let result = session
            .execute_unpaged(&self.statements().tenant_keys, (tenant_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?;
        result
            .rows::<KeyColumns>()
            .map_err(ProjectionError::cql)?
            .map(|row| row.map(key_row).map_err(ProjectionError::cql))
            .collect()
    }

    /// A tenant's usage: the sum of its uploads' items over every month bucket.
    pub async fn tenant_usage(
        &self,
        session: &Session,
        tenant_id: &str,
    ) -> Result<TenantUsage, ProjectionError> {
        let statements = self.statements();
        let months: Vec<String> = session
            .execute_unpaged(&statements.all_months, (tenant_id,))
            .await
            .map_err(ProjectionError::cql)?
            .into_rows_result()
            .map_err(ProjectionError::cql)?
            .rows::<(String,)>()
            .map_err(ProjectionError::cql)?
            .filter_map(|r| r.ok().map(|(m,)| m))
            .collect();
        let mut usage = TenantUsage::default();
        for month in months {
            let sums = session
                .execute_unpaged(&statements.usage, (tenant_id, &month))
                .await
                .map_err(ProjectionError::cql)?
                .into_rows_result()
                .map_err(ProjectionError::cql)?
                .maybe_first_row::<(Option<i64>, Option<i64>, Option<i32>)>()
                .map_err(ProjectionError::cql)?;
            if let Some((reserved, stored, active)) = sums {
                usage.reserved_bytes += reserved.unwrap_or(0);
                usage.stored_bytes += stored.unwrap_or(0);
                usage.active_uploads += i64::from(active.unwrap_or(0));
            }
        }
        Ok(usage)
    }
}

/// Columns of `keys_by_id` / `keys_by_tenant` as selected.
type KeyColumns = (
    String,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
);

fn key_row(r: KeyColumns) -> ApiKeyRow {
    ApiKeyRow {
        key_id: r.0,
        tenant_id: r.1.unwrap_or_default(),
        key_hash: r.2,
        issued_at_ms: millis(r.3),
        expires_at_ms: millis(r.4),
        revoked_at_ms: millis(r.5),
    }
}
