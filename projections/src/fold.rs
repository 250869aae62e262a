//! How each event changes the read models. Every statement is an upsert with the event's
//! `occurred_at` as its write timestamp: applying an event twice, or an older event after a
//! newer one, leaves the rows as they were.

use std::collections::{BTreeMap, HashMap};

use scylla::client::session::Session;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use tributary_schemas::{Event, EventPayload};

use crate::ProjectionError;

/// Where an event sits in the log: what SSE ids and the timeline are keyed by.
///
/// Lifecycle, tenant-admin and progress events carry positions in their own topics; no two
/// topics write the same cells (upload rows, tenant and key rows, progress rows), so offsets of
/// one topic order every write they are compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Partition of the lifecycle topic.
    pub partition: i32,
    /// Offset within it.
    pub offset: i64,
}

/// The state an event moves an upload to, with an error `(code, message)` for failures.
/// `None` for events that do not change the state.
pub fn state_after(event: &Event) -> Option<(&'static str, Option<(String, String)>)> {
    Some(match &event.payload {
        EventPayload::UploadInitiated(_) => ("initiated", None),
        EventPayload::PartConfirmed(_) => ("uploading", None),
        EventPayload::UploadCompletionRequested(_) => ("assembling", None),
        EventPayload::UploadAssembled(_) | EventPayload::UploadValidated(_) => ("processing", None),
        EventPayload::UploadReady(_) => ("ready", None),
        EventPayload::UploadRejected(r) => {
            ("rejected", Some((r.reason_code.clone(), r.reason.clone())))
        }
        EventPayload::ProcessingFailed(f) => ("failed", Some((f.stage.clone(), f.reason.clone()))),
        EventPayload::UploadAborted(_) => ("aborted", None),
        EventPayload::UploadExpired(_) => ("expired", None),
        EventPayload::UploadDeleted(_) => ("deleted", None),
        _ => return None,
    })
}

/// The month bucket (`YYYY-MM`, UTC) of a time in micros since the epoch.
pub fn month_of(micros: i64) -> String {
    let (year, month, _) = tributary_schemas::civil_date(micros.div_euclid(86_400_000_000));
    format!("{year:04}-{month:02}")
}

/// The creation time of an upload, from its UUIDv7 id (micros; 0 if not a v7 id).
pub fn created_micros(upload_id: &str) -> i64 {
    uuid::Uuid::parse_str(upload_id)
        .ok()
        .and_then(|id| id.get_timestamp())
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            i64::try_from(secs).unwrap_or(0) * 1_000_000 + i64::from(nanos / 1000)
        })
        .unwrap_or(0)
}

fn ts(micros: i64) -> CqlTimestamp {
    CqlTimestamp(micros / 1000)
}

/// Prepared upserts of the read models.
pub struct Writer {
    insert_upload: PreparedStatement,
    insert_listing: PreparedStatement,
    insert_month: PreparedStatement,
    set_state: PreparedStatement,
    set_listing_state: PreparedStatement,
    insert_part: PreparedStatement,
    insert_variant: PreparedStatement,
    insert_timeline: PreparedStatement,
    insert_usage: PreparedStatement,
    set_usage_stored: PreparedStatement,
    set_usage_inactive: PreparedStatement,
    delete_usage: PreparedStatement,
    insert_tenant: PreparedStatement,
    set_policy: PreparedStatement,
    insert_key: PreparedStatement,
    insert_tenant_key: PreparedStatement,
    revoke_key: PreparedStatement,
    revoke_tenant_key: PreparedStatement,
    insert_progress: PreparedStatement,
}

impl Writer {
    /// Prepares the statements against `keyspace`.
    pub async fn prepare(session: &Session, keyspace: &str) -> Result<Self, ProjectionError> {
        let prepare = |cql: &str| {
            let cql = cql.replace("{ks}", keyspace);
            async move {
                let mut statement = session.prepare(cql).await.map_err(ProjectionError::cql)?;
                statement.set_is_idempotent(true);
                Ok::<_, ProjectionError>(statement)
            }
        };
        Ok(Self {
            insert_upload: prepare("INSERT INTO {ks}.uploads_by_id (upload_id, tenant_id, filename, size, content_type, bucket, object_key, part_size, part_count, sha256, metadata, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_listing: prepare("INSERT INTO {ks}.uploads_by_tenant (tenant_id, month, upload_id, filename, size, content_type) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_month: prepare("INSERT INTO {ks}.tenant_months (tenant_id, month) VALUES (?, ?) USING TIMESTAMP ?").await?,
            set_state: prepare("UPDATE {ks}.uploads_by_id USING TIMESTAMP ? SET tenant_id = ?, state = ?, error_code = ?, error_message = ?, updated_at = ? WHERE upload_id = ?").await?,
            set_listing_state: prepare("UPDATE {ks}.uploads_by_tenant USING TIMESTAMP ? SET state = ? WHERE tenant_id = ? AND month = ? AND upload_id = ?").await?,
            insert_part: prepare("INSERT INTO {ks}.upload_parts (upload_id, part_number, etag, size) VALUES (?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_variant: prepare("INSERT INTO {ks}.upload_variants (upload_id, variant, object_key, content_type, size, width, height, placeholder) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_timeline: prepare("INSERT INTO {ks}.upload_timeline (upload_id, log_partition, log_offset, event_type, event_id, occurred_at) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_usage: prepare("INSERT INTO {ks}.tenant_usage_items (tenant_id, month, upload_id, item, reserved_bytes, stored_bytes, active) VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            set_usage_stored: prepare("UPDATE {ks}.tenant_usage_items USING TIMESTAMP ? SET reserved_bytes = 0, stored_bytes = ? WHERE tenant_id = ? AND month = ? AND upload_id = ? AND item = 'original'").await?,
            set_usage_inactive: prepare("UPDATE {ks}.tenant_usage_items USING TIMESTAMP ? SET active = 0 WHERE tenant_id = ? AND month = ? AND upload_id = ? AND item = 'original'").await?,
            // A range tombstone: shadows every item of the upload written before it, and
            // any redelivered older write.
            delete_usage: prepare("DELETE FROM {ks}.tenant_usage_items USING TIMESTAMP ? WHERE tenant_id = ? AND month = ? AND upload_id = ?").await?,
            insert_tenant: prepare("INSERT INTO {ks}.tenants (tenant_id, name, max_file_size, allowed_content_types, byte_quota, max_concurrent_uploads, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            set_policy: prepare("UPDATE {ks}.tenants USING TIMESTAMP ? SET max_file_size = ?, allowed_content_types = ?, byte_quota = ?, max_concurrent_uploads = ?, updated_at = ? WHERE tenant_id = ?").await?,
            insert_key: prepare("INSERT INTO {ks}.keys_by_id (key_id, tenant_id, key_hash, issued_at, expires_at) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            insert_tenant_key: prepare("INSERT INTO {ks}.keys_by_tenant (tenant_id, key_id, key_hash, issued_at, expires_at) VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            revoke_key: prepare("UPDATE {ks}.keys_by_id USING TIMESTAMP ? SET tenant_id = ?, revoked_at = ? WHERE key_id = ?").await?,
            insert_progress: prepare("INSERT INTO {ks}.upload_progress (upload_id, stage, bytes_done, bytes_total, percent, updated_at) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?").await?,
            revoke_tenant_key: prepare("UPDATE {ks}.keys_by_tenant USING TIMESTAMP ? SET revoked_at = ? WHERE tenant_id = ? AND key_id = ?").await?,
        })
    }

    /// Applies one lifecycle event (a batch of one).
    pub async fn apply(
        &self,
        session: &Session,
        event: &Event,
        at: LogPosition,
    ) -> Result<(), ProjectionError> {
        self.apply_batch(session, &[(event.clone(), at)], 1).await
    }

    /// Applies many events at once: their writes are grouped by partition key (one unlogged
    /// batch per key, which Cassandra and ScyllaDB apply as a single mutation), superseded
    /// state updates of one upload are dropped, and up to `concurrency` batches are in
    /// flight. Every write carries its event's log position as timestamp, so the result equals applying the
    /// events one by one, in any order, any number of times.
    pub async fn apply_batch(
        &self,
        session: &Session,
        events: &[(Event, LogPosition)],
        concurrency: usize,
    ) -> Result<(), ProjectionError> {
        use futures::StreamExt as _;
        let groups = self.plan(events);
        let mut batches = Vec::new();
        for rows in groups.into_values() {
            // Cassandra refuses batches over 50 KiB and warns from 5 KiB: a long replay of
            // one upload (hundreds of parts) is split.
            for chunk in rows.chunks(MAX_ROWS_PER_BATCH) {
                batches.push(chunk.to_vec());
            }
        }
        let results: Vec<Result<(), ProjectionError>> = futures::stream::iter(batches)
            .map(|rows| execute(session, rows))
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// The writes of `events`, grouped by partition key.
    fn plan(&self, events: &[(Event, LogPosition)]) -> BTreeMap<String, Vec<Row>> {
        let mut groups: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        // The latest state change per upload, in log order (an upload's events all sit in its
        // tenant's partition): earlier ones in the same batch would be overwritten by it.
        let mut latest_state: HashMap<&str, (i64, usize)> = HashMap::new();
        for (index, (event, at)) in events.iter().enumerate() {
            let Some(upload_id) = event.meta.upload_id.as_deref() else {
                continue;
            };
            if state_after(event).is_some() {
                let key = (at.offset, index);
                latest_state
                    .entry(upload_id)
                    .and_modify(|current| {
                        if key.0 >= current.0 {
                            *current = key;
                        }
                    })
                    .or_insert(key);
            }
        }
        // Progress is selective: only the latest report per upload in the batch is written.
        let mut latest_progress: HashMap<&str, usize> = HashMap::new();
        for (index, (event, _)) in events.iter().enumerate() {
            if let (EventPayload::UploadProgress(_), Some(upload_id)) =
                (&event.payload, event.meta.upload_id.as_deref())
            {
                latest_progress.insert(upload_id, index);
            }
        }
        for (index, (event, at)) in events.iter().enumerate() {
            let Some(upload_id) = event.meta.upload_id.as_deref() else {
                self.plan_tenant_admin(event, *at, &mut groups);
                continue;
            };
            // From the progress topic: its own table, none of the lifecycle's rows.
            if let EventPayload::UploadProgress(progress) = &event.payload {
                if latest_progress.get(upload_id) == Some(&index) {
                    groups
                        .entry(format!("p/{upload_id}"))
                        .or_default()
                        .push(Row {
                            statement: self.insert_progress.clone(),
                            values: vec![
                                text(upload_id),
                                text(&progress.stage),
                                big(progress.bytes_done),
                                big(progress.bytes_total),
                                Some(CqlValue::Double(progress.percent)),
                                time(event.meta.occurred_at),
                                big(write_timestamp(*at)),
                            ],
                        });
                }
                continue;
            }
            let tenant_id = event.meta.tenant_id.as_str();
            let written = write_timestamp(*at);
            let month = month_of(created_micros(upload_id));
            let upload_key = format!("u/{upload_id}");
            let listing_key = format!("l/{tenant_id}/{month}");
            let usage_key = format!("g/{tenant_id}/{month}");
            let mut push = |key: &str, statement: &PreparedStatement, values: Vec<Value>| {
                groups.entry(key.to_string()).or_default().push(Row {
                    statement: statement.clone(),
                    values,
                });
            };
            match &event.payload {
                EventPayload::UploadInitiated(init) => {
                    let metadata = CqlValue::Map(
                        init.metadata
                            .iter()
                            .map(|(k, v)| (CqlValue::Text(k.clone()), CqlValue::Text(v.clone())))
                            .collect(),
                    );
                    push(
                        &upload_key,
                        &self.insert_upload,
                        vec![
                            text(upload_id),
                            text(tenant_id),
                            text(&init.filename),
                            big(init.size),
                            text(&init.content_type),
                            text(&init.bucket),
                            text(&init.object_key),
                            big(init.part_size),
                            int(init.part_count),
                            opt_text(init.sha256.as_deref()),
                            Some(metadata),
                            time(event.meta.occurred_at),
                            time(init.expires_at),
                            big(written),
                        ],
                    );
                    push(
                        &listing_key,
                        &self.insert_listing,
                        vec![
                            text(tenant_id),
                            text(&month),
                            text(upload_id),
                            text(&init.filename),
                            big(init.size),
                            text(&init.content_type),
                            big(written),
                        ],
                    );
                    push(
                        &format!("m/{tenant_id}"),
                        &self.insert_month,
                        vec![text(tenant_id), text(&month), big(written)],
                    );
                    push(
                        &usage_key,
                        &self.insert_usage,
                        vec![
                            text(tenant_id),
                            text(&month),
                            text(upload_id),
                            text("original"),
                            big(init.size),
                            big(0),
                            int(1),
                            big(written),
                        ],
                    );
                }
                EventPayload::UploadAssembled(assembled) => {
                    push(
                        &usage_key,
                        &self.set_usage_stored,
                        vec![
                            big(written),
                            big(assembled.size),
                            text(tenant_id),
                            text(&month),
                            text(upload_id),
                        ],
                    );
                }
                EventPayload::UploadReady(_) | EventPayload::ProcessingFailed(_) => {
                    push(
                        &usage_key,
                        &self.set_usage_inactive,
                        vec![big(written), text(tenant_id), text(&month), text(upload_id)],
                    );
                }
                // The janitor deletes everything stored for these: nothing counts any more.
                EventPayload::UploadRejected(_)
                | EventPayload::UploadExpired(_)
                | EventPayload::UploadAborted(_)
                | EventPayload::UploadDeleted(_) => {
                    push(
                        &usage_key,
                        &self.delete_usage,
                        vec![big(written), text(tenant_id), text(&month), text(upload_id)],
                    );
                }
                EventPayload::PartConfirmed(part) => {
                    push(
                        &upload_key,
                        &self.insert_part,
                        vec![
                            text(upload_id),
                            int(part.part_number),
                            text(&part.etag),
                            big(part.size),
                            big(written),
                        ],
                    );
                }
                EventPayload::VariantProduced(v) => {
                    push(
                        &upload_key,
                        &self.insert_variant,
                        vec![
                            text(upload_id),
                            text(&v.variant),
                            text(&v.object_key),
                            text(&v.content_type),
                            big(v.size),
                            v.width.map(CqlValue::Int),
                            v.height.map(CqlValue::Int),
                            opt_text(v.placeholder.as_deref()),
                            big(written),
                        ],
                    );
                    push(
                        &usage_key,
                        &self.insert_usage,
                        vec![
                            text(tenant_id),
                            text(&month),
                            text(upload_id),
                            text(&format!("variant/{}", v.variant)),
                            big(0),
                            big(v.size),
                            int(0),
                            big(written),
                        ],
                    );
                }
                _ => {}
            }
            let is_latest = latest_state
                .get(upload_id)
                .is_some_and(|(_, i)| *i == index);
            if let (true, Some((state, error))) = (is_latest, state_after(event)) {
                let (code, message) = error.map_or((None, None), |(c, m)| (Some(c), Some(m)));
                push(
                    &upload_key,
                    &self.set_state,
                    vec![
                        big(written),
                        text(tenant_id),
                        text(state),
                        code.map(CqlValue::Text),
                        message.map(CqlValue::Text),
                        time(event.meta.occurred_at),
                        text(upload_id),
                    ],
                );
                push(
                    &listing_key,
                    &self.set_listing_state,
                    vec![
                        big(written),
                        text(state),
                        text(tenant_id),
                        text(&month),
                        text(upload_id),
                    ],
                );
            }
            push(
                &upload_key,
                &self.insert_timeline,
                vec![
                    text(upload_id),
                    int(at.partition),
                    big(at.offset),
                    text(event.event_type()),
                    text(&event.meta.event_id.to_string()),
                    time(event.meta.occurred_at),
                    big(written),
                ],
            );
        }
        groups
    }

    /// The writes of a tenant-administration event (tenants and API keys).
    fn plan_tenant_admin(
        &self,
        event: &Event,
        at: LogPosition,
        groups: &mut BTreeMap<String, Vec<Row>>,
    ) {
        let tenant_id = event.meta.tenant_id.as_str();
        let written = write_timestamp(at);
        let occurred = event.meta.occurred_at;
        let mut push = |key: String, statement: &PreparedStatement, values: Vec<Value>| {
            groups.entry(key).or_default().push(Row {
                statement: statement.clone(),
                values,
            });
        };
        let types = |list: &[String]| {
            Some(CqlValue::List(
                list.iter().map(|t| CqlValue::Text(t.clone())).collect(),
            ))
        };
        match &event.payload {
            EventPayload::TenantCreated(created) => push(
                format!("t/{tenant_id}"),
                &self.insert_tenant,
                vec![
                    text(tenant_id),
                    text(&created.name),
                    big(created.max_file_size),
                    types(&created.allowed_content_types),
                    big(created.byte_quota),
                    int(created.max_concurrent_uploads),
                    time(occurred),
                    time(occurred),
                    big(written),
                ],
            ),
            EventPayload::QuotaChanged(policy) => push(
                format!("t/{tenant_id}"),
                &self.set_policy,
                vec![
                    big(written),
                    big(policy.max_file_size),
                    types(&policy.allowed_content_types),
                    big(policy.byte_quota),
                    int(policy.max_concurrent_uploads),
                    time(occurred),
                    text(tenant_id),
                ],
            ),
            EventPayload::ApiKeyIssued(key) => {
                let expires = key.expires_at.and_then(time);
                push(
                    format!("k/{}", key.key_id),
                    &self.insert_key,
                    vec![
                        text(&key.key_id),
                        text(tenant_id),
                        text(&key.key_hash),
                        time(occurred),
                        expires.clone(),
                        big(written),
                    ],
                );
                push(
                    format!("tk/{tenant_id}"),
                    &self.insert_tenant_key,
                    vec![
                        text(tenant_id),
                        text(&key.key_id),
                        text(&key.key_hash),
                        time(occurred),
                        expires,
                        big(written),
                    ],
                );
            }
            EventPayload::ApiKeyRevoked(key) => {
                push(
                    format!("k/{}", key.key_id),
                    &self.revoke_key,
                    vec![
                        big(written),
                        text(tenant_id),
                        time(occurred),
                        text(&key.key_id),
                    ],
                );
                push(
                    format!("tk/{tenant_id}"),
                    &self.revoke_tenant_key,
                    vec![
                        big(written),
                        time(occurred),
                        text(tenant_id),
                        text(&key.key_id),
                    ],
                );
            }
            // Upload events always name their upload; anything else here is not ours.
            _ => {}
        }
    }
}

/// The write timestamp (`USING TIMESTAMP`) of an event's rows: its log position.
///
/// Every row is written only by events of one tenant, hence of one partition, so offsets
/// order its writes exactly as the log does: a redelivery or a rebuild writes the same
/// timestamps (no-ops), and neither clock skew between producers nor two events in the same
/// microsecond can reorder states (equal timestamps would let a null's tombstone beat a value).
/// The base keeps these above the microsecond timestamps of rows written by earlier builds.
pub fn write_timestamp(at: LogPosition) -> i64 {
    LOG_TIMESTAMP_BASE + at.offset
}

/// 2^52: above any microsecond timestamp until the year 2112.
const LOG_TIMESTAMP_BASE: i64 = 1 << 52;

/// Most statements in one unlogged batch.
const MAX_ROWS_PER_BATCH: usize = 16;

/// One value of a bound statement (`None` is CQL null).
type Value = Option<CqlValue>;

/// One write: a prepared statement (a cheap handle) and its values.
#[derive(Clone)]
struct Row {
    statement: PreparedStatement,
    values: Vec<Value>,
}

fn text(s: &str) -> Value {
    Some(CqlValue::Text(s.to_string()))
}

fn opt_text(s: Option<&str>) -> Value {
    s.map(|s| CqlValue::Text(s.to_string()))
}

fn big(v: i64) -> Value {
    Some(CqlValue::BigInt(v))
}

fn int(v: i32) -> Value {
    Some(CqlValue::Int(v))
}

fn time(micros: i64) -> Value {
    Some(CqlValue::Timestamp(ts(micros)))
}

/// Writes rows of one partition key: a single statement as is, several as an unlogged batch.
async fn execute(session: &Session, rows: Vec<Row>) -> Result<(), ProjectionError> {
    if let [row] = rows.as_slice() {
        return session
            .execute_unpaged(&row.statement, &row.values)
            .await
            .map(|_| ())
            .map_err(ProjectionError::cql);
    }
    let mut batch = Batch::new(BatchType::Unlogged);
    batch.set_is_idempotent(true);
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        batch.append_statement(row.statement);
        values.push(row.values);
    }
    session
        .batch(&batch, values)
        .await
        .map(|_| ())
        .map_err(ProjectionError::cql)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_schemas::{EventMeta, PartConfirmed, UploadReady, UploadRejected};

    fn event(payload: impl Into<EventPayload>) -> Event {
        Event::new(
            EventMeta::new("t", Some("u".into()), "tests", "c", None),
            payload,
        )
    }

    #[test]
    fn states_follow_the_contract() {
        assert_eq!(
            state_after(&event(PartConfirmed {
                part_number: 1,
                etag: "e".into(),
                size: 1
            }))
            .map(|s| s.0),
            Some("uploading")
        );
        assert_eq!(
            state_after(&event(UploadReady { variant_count: 1 })).map(|s| s.0),
            Some("ready")
        );
        let rejected = event(UploadRejected {
            reason_code: "type_mismatch".into(),
            reason: "png declared, zip found".into(),
            stage: "validate".into(),
        });
        assert_eq!(
            state_after(&rejected),
            Some((
                "rejected",
                Some(("type_mismatch".into(), "png declared, zip found".into()))
            ))
        );
    }

    #[test]
    fn months_and_v7_times() {
        assert_eq!(month_of(0), "1970-01");
        assert_eq!(month_of(1_795_420_800_000_000), "2026-11");
        assert_eq!(
            month_of(951_782_400_000_000),
            "2000-02-29".get(..7).unwrap_or_default()
        );
        let id = uuid::Uuid::now_v7().to_string();
        let created = created_micros(&id);
        assert!((tributary_schemas::now_micros() - created).abs() < 5_000_000);
        assert_eq!(created_micros("not-a-uuid"), 0);
    }
}
