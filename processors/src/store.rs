//! The processors' own tables (never read by anyone else): the facts of each upload, the
//! part manifest, per-stage outcome markers that make handlers idempotent, and the janitor's
//! deadlines.
//!
//! Rows carry a 30-day TTL: they only serve uploads in flight (a session lives at most
//! days), and the log can rebuild them by replay.

use std::sync::Arc;

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use tributary_runtime::config::CqlConfig;
use tributary_runtime::cql::{self, Migration};
use tributary_schemas::UploadInitiated;

/// Why a table operation failed; always worth a retry (the cluster is down or slow).
#[derive(Debug, thiserror::Error)]
#[error("cql {what}: {reason}")]
pub struct StoreError {
    what: &'static str,
    reason: String,
}

fn fail(what: &'static str) -> impl FnOnce(String) -> StoreError {
    move |reason| StoreError { what, reason }
}

/// Migrations of component `processors`.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "processor state",
        statements: &[
            "CREATE TABLE IF NOT EXISTS {keyspace}.proc_uploads (upload_id text PRIMARY KEY, \
         tenant_id text, filename text, size bigint, content_type text, bucket text, \
         object_key text, s3_upload_id text, part_size bigint, part_count int, sha256 text, \
         expires_at bigint) WITH default_time_to_live = 2592000",
            "CREATE TABLE IF NOT EXISTS {keyspace}.proc_parts (upload_id text, part_number int, \
         etag text, size bigint, PRIMARY KEY (upload_id, part_number)) \
         WITH default_time_to_live = 2592000",
            "CREATE TABLE IF NOT EXISTS {keyspace}.proc_outcomes (upload_id text, stage text, \
         detail text, PRIMARY KEY (upload_id, stage)) WITH default_time_to_live = 2592000",
            // Deadlines bucketed by hour so a sweep reads a few small partitions, never the table.
            "CREATE TABLE IF NOT EXISTS {keyspace}.janitor_deadlines (hour bigint, expires_at bigint, \
         upload_id text, tenant_id text, PRIMARY KEY (hour, expires_at, upload_id)) \
         WITH default_time_to_live = 2592000",
            "CREATE TABLE IF NOT EXISTS {keyspace}.janitor_cursor (name text PRIMARY KEY, hour bigint)",
        ],
    },
    Migration {
        version: 2,
        name: "processing watchdog",
        statements: &[
            // Same shape as the session deadlines: when an upload whose completion was requested
            // must have reached a final state.
            "CREATE TABLE IF NOT EXISTS {keyspace}.janitor_watchdog (hour bigint, expires_at bigint, \
         upload_id text, tenant_id text, PRIMARY KEY (hour, expires_at, upload_id)) \
         WITH default_time_to_live = 2592000",
        ],
    },
];

/// Facts of an upload, from its `UploadInitiated`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadFacts {
    /// Upload id.
    pub upload_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Sanitized file name.
    pub filename: String,
    /// Declared size (0 for client-planned Uppy sessions).
    pub size: i64,
    /// Declared content type.
    pub content_type: String,
    /// Bucket of the original.
    pub bucket: String,
    /// Key of the original.
    pub object_key: String,
    /// S3 multipart upload id.
    pub s3_upload_id: String,
    /// Planned part size (0 when client-planned).
    pub part_size: i64,
    /// Planned part count (0 when client-planned).
    pub part_count: i32,
    /// Declared sha256 (hex), if any.
    pub sha256: Option<String>,
    /// Session deadline, micros since the epoch.
    pub expires_at: i64,
}

impl UploadFacts {
    /// The facts stated by an `UploadInitiated` event of `upload_id` / `tenant_id`.
    pub fn from_event(upload_id: &str, tenant_id: &str, e: &UploadInitiated) -> Self {
        Self {
            upload_id: upload_id.to_string(),
            tenant_id: tenant_id.to_string(),
            filename: e.filename.clone(),
            size: e.size,
            content_type: e.content_type.clone(),
            bucket: e.bucket.clone(),
            object_key: e.object_key.clone(),
            s3_upload_id: e.s3_upload_id.clone(),
            part_size: e.part_size,
            part_count: e.part_count,
            sha256: e.sha256.clone(),
            expires_at: e.expires_at,
        }
    }

    /// Prefix under which everything of this upload is stored (`uploads/<tenant>/<id>/`).
    pub fn prefix(&self) -> String {
        match self.object_key.strip_suffix("original") {
            Some(prefix) => prefix.to_string(),
            None => format!("{}/", self.object_key),
        }
    }
}

/// A confirmed part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmedPart {
    /// 1-based part number.
    pub number: i32,
    /// ETag as listed by the storage.
    pub etag: String,
    /// Bytes.
    pub size: i64,
}

/// Prepared statements over the processors' tables.
pub struct Store {
    session: Arc<Session>,
    put_upload: PreparedStatement,
    upload: PreparedStatement,
    put_part: PreparedStatement,
    parts: PreparedStatement,
    put_outcome: PreparedStatement,
    outcome: PreparedStatement,
    outcomes: PreparedStatement,
    put_deadline: [PreparedStatement; 2],
    deadlines: [PreparedStatement; 2],
    delete_deadline: [PreparedStatement; 2],
    put_cursor: PreparedStatement,
    cursor: PreparedStatement,
}

impl Store {
    /// Applies the migrations and prepares the statements.
    pub async fn open(session: Arc<Session>, config: &CqlConfig) -> Result<Self, StoreError> {
        cql::migrate(
            &session,
            &config.keyspace,
            config.replication_factor,
            "processors",
            MIGRATIONS,
        )
        .await
        .map_err(|e| fail("migrate")(e.to_string()))?;
        let ks = config.keyspace.clone();
        let prepare = |text: &str| {
            let text = text.replace("{ks}", &ks);
            let session = session.clone();
            async move {
                session
                    .prepare(text)
                    .await
                    .map_err(|e| fail("prepare")(e.to_string()))
            }
        };
        Ok(Self {
            put_upload: prepare("INSERT INTO {ks}.proc_uploads (upload_id, tenant_id, filename, size, content_type, bucket, object_key, s3_upload_id, part_size, part_count, sha256, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").await?,
            upload: prepare("SELECT upload_id, tenant_id, filename, size, content_type, bucket, object_key, s3_upload_id, part_size, part_count, sha256, expires_at FROM {ks}.proc_uploads WHERE upload_id = ?").await?,
            put_part: prepare("INSERT INTO {ks}.proc_parts (upload_id, part_number, etag, size) VALUES (?, ?, ?, ?)").await?,
            parts: prepare("SELECT part_number, etag, size FROM {ks}.proc_parts WHERE upload_id = ?").await?,
            put_outcome: prepare("INSERT INTO {ks}.proc_outcomes (upload_id, stage, detail) VALUES (?, ?, ?)").await?,
            outcome: prepare("SELECT detail FROM {ks}.proc_outcomes WHERE upload_id = ? AND stage = ?").await?,
            outcomes: prepare("SELECT stage, detail FROM {ks}.proc_outcomes WHERE upload_id = ?").await?,
            put_deadline: [
                prepare("INSERT INTO {ks}.janitor_deadlines (hour, expires_at, upload_id, tenant_id) VALUES (?, ?, ?, ?)").await?,
                prepare("INSERT INTO {ks}.janitor_watchdog (hour, expires_at, upload_id, tenant_id) VALUES (?, ?, ?, ?)").await?,
            ],
            deadlines: [
                prepare("SELECT expires_at, upload_id, tenant_id FROM {ks}.janitor_deadlines WHERE hour = ? AND expires_at <= ?").await?,
                prepare("SELECT expires_at, upload_id, tenant_id FROM {ks}.janitor_watchdog WHERE hour = ? AND expires_at <= ?").await?,
            ],
            delete_deadline: [
                prepare("DELETE FROM {ks}.janitor_deadlines WHERE hour = ? AND expires_at = ? AND upload_id = ?").await?,
                prepare("DELETE FROM {ks}.janitor_watchdog WHERE hour = ? AND expires_at = ? AND upload_id = ?").await?,
            ],
            put_cursor: prepare("INSERT INTO {ks}.janitor_cursor (name, hour) VALUES (?, ?)").await?,
            cursor: prepare("SELECT hour FROM {ks}.janitor_cursor WHERE name = ?").await?,
            session,
        })
    }

    /// Records an upload's facts (idempotent: the same event writes the same row).
    pub async fn put_upload(&self, f: &UploadFacts) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.put_upload,
                (
                    &f.upload_id,
                    &f.tenant_id,
                    &f.filename,
                    f.size,
                    &f.content_type,
                    &f.bucket,
                    &f.object_key,
                    &f.s3_upload_id,
                    f.part_size,
                    f.part_count,
                    &f.sha256,
                    f.expires_at,
                ),
            )
            .await
            .map_err(|e| fail("put upload")(e.to_string()))?;
        Ok(())
    }

    /// An upload's facts, if its `UploadInitiated` was seen.
    pub async fn upload(&self, upload_id: &str) -> Result<Option<UploadFacts>, StoreError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i32>,
            Option<String>,
            Option<i64>,
        );
        let row = self
            .session
            .execute_unpaged(&self.upload, (upload_id,))
            .await
            .map_err(|e| fail("read upload")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read upload")(e.to_string()))?
            .maybe_first_row::<Row>()
            .map_err(|e| fail("read upload")(e.to_string()))?;
        Ok(row.map(|r| UploadFacts {
            upload_id: r.0,
            tenant_id: r.1.unwrap_or_default(),
            filename: r.2.unwrap_or_default(),
            size: r.3.unwrap_or_default(),
            content_type: r.4.unwrap_or_default(),
            bucket: r.5.unwrap_or_default(),
            object_key: r.6.unwrap_or_default(),
            s3_upload_id: r.7.unwrap_or_default(),
            part_size: r.8.unwrap_or_default(),
            part_count: r.9.unwrap_or_default(),
            sha256: r.10,
            expires_at: r.11.unwrap_or_default(),
        }))
    }

    /// Records a confirmed part (a duplicate confirmation rewrites the same row).
    pub async fn put_part(&self, upload_id: &str, part: &ConfirmedPart) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.put_part,
                (upload_id, part.number, &part.etag, part.size),
            )
            .await
            .map_err(|e| fail("put part")(e.to_string()))?;
        Ok(())
    }

    /// The confirmed parts of an upload, by part number.
    pub async fn parts(&self, upload_id: &str) -> Result<Vec<ConfirmedPart>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.parts, (upload_id,))
            .await
            .map_err(|e| fail("read parts")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read parts")(e.to_string()))?;
        let mut parts = Vec::new();
        for row in rows
            .rows::<(i32, Option<String>, Option<i64>)>()
            .map_err(|e| fail("read parts")(e.to_string()))?
        {
            let (number, etag, size) = row.map_err(|e| fail("read parts")(e.to_string()))?;
            parts.push(ConfirmedPart {
                number,
                etag: etag.unwrap_or_default(),
                size: size.unwrap_or_default(),
            });
        }
        Ok(parts)
    }

    /// Marks `stage` of an upload as done, with a detail (e.g. the ETag, the variant key).
    pub async fn put_outcome(
        &self,
        upload_id: &str,
        stage: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.put_outcome, (upload_id, stage, detail))
            .await
            .map_err(|e| fail("put outcome")(e.to_string()))?;
        Ok(())
    }

    /// The detail recorded for `stage`, if that stage is done.
    pub async fn outcome(
        &self,
        upload_id: &str,
        stage: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.outcome, (upload_id, stage))
            .await
            .map_err(|e| fail("read outcome")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read outcome")(e.to_string()))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|e| fail("read outcome")(e.to_string()))?;
        Ok(row.map(|(detail,)| detail.unwrap_or_default()))
    }

    /// Every stage recorded for an upload, as (stage, detail).
    pub async fn outcomes(&self, upload_id: &str) -> Result<Vec<(String, String)>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.outcomes, (upload_id,))
            .await
            .map_err(|e| fail("read outcomes")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read outcomes")(e.to_string()))?;
        let mut out = Vec::new();
        for row in rows
            .rows::<(String, Option<String>)>()
            .map_err(|e| fail("read outcomes")(e.to_string()))?
        {
            let (stage, detail) = row.map_err(|e| fail("read outcomes")(e.to_string()))?;
            out.push((stage, detail.unwrap_or_default()));
        }
        Ok(out)
    }

    /// Schedules a check of an upload on `schedule`.
    pub async fn put_deadline(&self, schedule: Schedule, d: &Deadline) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.put_deadline[schedule as usize],
                (
                    hour_of(d.expires_at),
                    d.expires_at,
                    &d.upload_id,
                    &d.tenant_id,
                ),
            )
            .await
            .map_err(|e| fail("put deadline")(e.to_string()))?;
        Ok(())
    }

    /// Deadlines of `schedule` in `hour` that are due at `now` (micros).
    pub async fn due(
        &self,
        schedule: Schedule,
        hour: i64,
        now: i64,
    ) -> Result<Vec<Deadline>, StoreError> {
        let rows = self
            .session
            .execute_unpaged(&self.deadlines[schedule as usize], (hour, now))
            .await
            .map_err(|e| fail("read deadlines")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read deadlines")(e.to_string()))?;
        let mut due = Vec::new();
        for row in rows
            .rows::<(i64, String, Option<String>)>()
            .map_err(|e| fail("read deadlines")(e.to_string()))?
        {
            let (expires_at, upload_id, tenant_id) =
                row.map_err(|e| fail("read deadlines")(e.to_string()))?;
            due.push(Deadline {
                upload_id,
                tenant_id: tenant_id.unwrap_or_default(),
                expires_at,
            });
        }
        Ok(due)
    }

    /// Removes a handled deadline of `schedule`.
    pub async fn delete_deadline(
        &self,
        schedule: Schedule,
        d: &Deadline,
    ) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(
                &self.delete_deadline[schedule as usize],
                (hour_of(d.expires_at), d.expires_at, &d.upload_id),
            )
            .await
            .map_err(|e| fail("delete deadline")(e.to_string()))?;
        Ok(())
    }

    /// The oldest hour bucket that may still hold deadlines.
    pub async fn cursor(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let row = self
            .session
            .execute_unpaged(&self.cursor, (name,))
            .await
            .map_err(|e| fail("read cursor")(e.to_string()))?
            .into_rows_result()
            .map_err(|e| fail("read cursor")(e.to_string()))?
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| fail("read cursor")(e.to_string()))?;
        Ok(row.and_then(|(hour,)| hour))
    }

    /// Moves the sweep cursor.
    pub async fn put_cursor(&self, name: &str, hour: i64) -> Result<(), StoreError> {
        self.session
            .execute_unpaged(&self.put_cursor, (name, hour))
            .await
            .map_err(|e| fail("put cursor")(e.to_string()))?;
        Ok(())
    }
}

/// The janitor's two schedules of deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// A session must be completed (or aborted) by its deadline, or it expires.
    Expiry = 0,
    /// An upload whose completion was requested must reach a final state by its deadline,
    /// or the watchdog fails it.
    Watchdog = 1,
}

impl Schedule {
    /// Name of the schedule's sweep cursor.
    pub fn cursor(self) -> &'static str {
        match self {
            Schedule::Expiry => "expiry",
            Schedule::Watchdog => "watchdog",
        }
    }
}

/// A deadline on one of the janitor's schedules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deadline {
    /// Upload id.
    pub upload_id: String,
    /// Owning tenant.
    pub tenant_id: String,
    /// Deadline, micros since the epoch.
    pub expires_at: i64,
}

/// The hour bucket of a time in micros.
pub fn hour_of(micros: i64) -> i64 {
    micros.div_euclid(3_600_000_000)
}
