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

/// Prepared queries over one version of the read models.
struct Statements {
    upload: PreparedStatement,
    parts: PreparedStatement,
    variants: PreparedStatement,
    months: PreparedStatement,
    listing_first: PreparedStatement,
    listing_after: PreparedStatement,
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
}
