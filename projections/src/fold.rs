//! How each event changes the read models. Every statement is an upsert with the event's
//! `occurred_at` as its write timestamp: applying an event twice, or an older event after a
//! newer one, leaves the rows as they were.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use tributary_schemas::{Event, EventPayload};

use crate::ProjectionError;

/// Where an event sits in the log: what SSE ids and the timeline are keyed by.
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
    // Civil-from-days (Howard Hinnant's algorithm), to avoid a date crate for one function.
    let days = micros.div_euclid(86_400_000_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
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
        })
    }

    /// Applies one lifecycle event. Events without an upload id are skipped.
    pub async fn apply(
        &self,
        session: &Session,
        event: &Event,
        at: LogPosition,
    ) -> Result<(), ProjectionError> {
        let Some(upload_id) = event.meta.upload_id.as_deref() else {
            return Ok(());
        };
        let tenant_id = event.meta.tenant_id.as_str();
        let written = event.meta.occurred_at;
        let month = month_of(created_micros(upload_id));
        match &event.payload {
            EventPayload::UploadInitiated(init) => {
                exec(
                    session,
                    &self.insert_upload,
                    (
                        upload_id,
                        tenant_id,
                        &init.filename,
                        init.size,
                        &init.content_type,
                        &init.bucket,
                        &init.object_key,
                        init.part_size,
                        init.part_count,
                        &init.sha256,
                        &init.metadata,
                        ts(event.meta.occurred_at),
                        ts(init.expires_at),
                        written,
                    ),
                )
                .await?;
                exec(
                    session,
                    &self.insert_listing,
                    (
                        tenant_id,
                        &month,
                        upload_id,
                        &init.filename,
                        init.size,
                        &init.content_type,
                        written,
                    ),
                )
                .await?;
                exec(session, &self.insert_month, (tenant_id, &month, written)).await?;
            }
            EventPayload::PartConfirmed(part) => {
                exec(
                    session,
                    &self.insert_part,
                    (upload_id, part.part_number, &part.etag, part.size, written),
                )
                .await?;
            }
            EventPayload::VariantProduced(v) => {
                exec(
                    session,
                    &self.insert_variant,
                    (
                        upload_id,
                        &v.variant,
                        &v.object_key,
                        &v.content_type,
                        v.size,
                        v.width,
                        v.height,
                        &v.placeholder,
                        written,
                    ),
                )
                .await?;
            }
            _ => {}
        }
        if let Some((state, error)) = state_after(event) {
            let (code, message) = error.map_or((None, None), |(c, m)| (Some(c), Some(m)));
            exec(
                session,
                &self.set_state,
                (
                    written,
                    tenant_id,
                    state,
                    code,
                    message,
                    ts(written),
                    upload_id,
                ),
            )
            .await?;
            exec(
                session,
                &self.set_listing_state,
                (written, state, tenant_id, &month, upload_id),
            )
            .await?;
        }
        exec(
            session,
            &self.insert_timeline,
            (
                upload_id,
                at.partition,
                at.offset,
                event.event_type(),
                event.meta.event_id.to_string(),
                ts(event.meta.occurred_at),
                written,
            ),
        )
        .await
    }
}

async fn exec(
    session: &Session,
    statement: &PreparedStatement,
    values: impl scylla::serialize::row::SerializeRow,
) -> Result<(), ProjectionError> {
    session
        .execute_unpaged(statement, values)
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
