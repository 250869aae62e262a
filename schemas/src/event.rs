//! Rust types of the Tributary events: [`EventMeta`], one struct per payload, [`EventPayload`],
//! [`EventType`] and [`Event`].
//!
//! Every struct mirrors its `.avsc` record field for field (the `meta` field excepted, which
//! lives in [`Event::meta`]). Timestamps are `i64` microseconds since the Unix epoch, as on the
//! wire.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use apache_avro::types::Value;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::convert::{AvroField, ConvertError, Fields};
use crate::topics;

/// Namespace of every record in every schema.
pub const NAMESPACE: &str = "tributary.events";

/// Microseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The UTC calendar date `(year, month, day)` of a day count since 1970-01-01 (Howard
/// Hinnant's civil-from-days), for the few places that format dates without a date crate.
pub fn civil_date(days_since_epoch: i64) -> (i64, u32, u32) {
    let z = days_since_epoch + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // In range by construction: day 1..=31, month 1..=12.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Declares a record struct plus its Avro field conversion.
macro_rules! avro_record {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Names of this struct's Avro fields, in schema order (`meta` excluded).
            pub const FIELD_NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            #[allow(unused_variables, clippy::ptr_arg)]
            pub(crate) fn push_avro_fields(&self, out: &mut Vec<(String, Value)>) {
                $( out.push((stringify!($field).to_owned(), AvroField::to_avro(&self.$field))); )*
            }

            #[allow(unused_variables)]
            pub(crate) fn from_avro_fields(fields: &mut Fields) -> Result<Self, ConvertError> {
                Ok(Self { $( $field: fields.take(stringify!($field))?, )* })
            }
        }
    };
}

avro_record! {
    /// Envelope carried by every event (the Avro record `tributary.events.EventMeta`).
    pub struct EventMeta {
        /// Unique event id, a UUIDv7 (time-ordered).
        pub event_id: Uuid,
        /// Owning tenant.
        pub tenant_id: String,
        /// Upload the event is about; `None` only for tenant-administration events.
        pub upload_id: Option<String>,
        /// When the fact happened, microseconds since the Unix epoch (UTC).
        pub occurred_at: i64,
        /// Emitting service as `service@version`.
        pub producer: String,
        /// Event id (or request id) that caused this event, if any.
        pub causation_id: Option<String>,
        /// Id shared by all events of one logical flow.
        pub correlation_id: String,
    }
}

impl EventMeta {
    /// A new envelope with a fresh UUIDv7 `event_id` and `occurred_at` = now.
    pub fn new(
        tenant_id: impl Into<String>,
        upload_id: Option<String>,
        producer: impl Into<String>,
        correlation_id: impl Into<String>,
        causation_id: Option<String>,
    ) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            tenant_id: tenant_id.into(),
            upload_id,
            occurred_at: now_micros(),
            producer: producer.into(),
            causation_id,
            correlation_id: correlation_id.into(),
        }
    }

    /// The envelope of an event caused by this one: same tenant, upload and correlation id,
    /// `causation_id` = this event's id, fresh `event_id` and `occurred_at`.
    pub fn caused_by(&self, producer: impl Into<String>) -> Self {
        Self::new(
            self.tenant_id.clone(),
            self.upload_id.clone(),
            producer,
            self.correlation_id.clone(),
            Some(self.event_id.to_string()),
        )
    }

    fn from_avro_record(value: Value) -> Result<Self, ConvertError> {
        let mut fields = Fields::from_record("EventMeta", value)?;
        Self::from_avro_fields(&mut fields)
    }
}

avro_record! {
    /// An upload was accepted and an S3 multipart upload was created for it.
    pub struct UploadInitiated {
        /// Client-supplied file name.
        pub filename: String,
        /// Declared size in bytes.
        pub size: i64,
        /// Declared MIME type.
        pub content_type: String,
        /// Bucket that receives the upload.
        pub bucket: String,
        /// Key of the object being uploaded.
        pub object_key: String,
        /// Storage's multipart upload id.
        pub s3_upload_id: String,
        /// Size in bytes of every part but the last.
        pub part_size: i64,
        /// Number of parts.
        pub part_count: i32,
        /// Client-declared SHA-256 of the whole file (lowercase hex), if any.
        pub sha256: Option<String>,
        /// Client-supplied metadata.
        pub metadata: BTreeMap<String, String>,
        /// When the unfinished upload expires (micros since the epoch).
        pub expires_at: i64,
    }
}

avro_record! {
    /// The client confirmed one part and storage vouched for its ETag.
    pub struct PartConfirmed {
        /// 1-based part number.
        pub part_number: i32,
        /// ETag storage returned for the part.
        pub etag: String,
        /// Part size in bytes.
        pub size: i64,
    }
}

avro_record! {
    /// The client asked to complete the upload.
    pub struct UploadCompletionRequested {}
}

avro_record! {
    /// Storage assembled the parts into the final object.
    pub struct UploadAssembled {
        /// Size of the assembled object in bytes.
        pub size: i64,
        /// ETag of the assembled object.
        pub etag: String,
        /// SHA-256 of the assembled object (lowercase hex), if computed.
        pub sha256: Option<String>,
    }
}

avro_record! {
    /// The assembled object passed validation.
    pub struct UploadValidated {
        /// MIME type detected from the content.
        pub detected_content_type: String,
    }
}

avro_record! {
    /// The upload was rejected; terminal.
    pub struct UploadRejected {
        /// Machine-readable reason, e.g. `content_type_mismatch`.
        pub reason_code: String,
        /// Human-readable explanation.
        pub reason: String,
        /// Pipeline stage that rejected it, e.g. `validation`.
        pub stage: String,
    }
}

avro_record! {
    /// A derived rendition of the upload was written to storage.
    pub struct VariantProduced {
        /// Variant name, e.g. `thumb`, `display`, `hls_720p`, `poster`.
        pub variant: String,
        /// Key of the variant object.
        pub object_key: String,
        /// MIME type of the variant.
        pub content_type: String,
        /// Size of the variant in bytes.
        pub size: i64,
        /// Width in pixels, for images and video.
        pub width: Option<i32>,
        /// Height in pixels, for images and video.
        pub height: Option<i32>,
        /// Tiny inline placeholder (e.g. BlurHash or data URL), if any.
        pub placeholder: Option<String>,
    }
}

avro_record! {
    /// A processing step failed.
    pub struct ProcessingFailed {
        /// Stage that failed, e.g. `thumbnail`, `transcode`.
        pub stage: String,
        /// What went wrong.
        pub reason: String,
        /// Whether retrying may succeed.
        pub retryable: bool,
    }
}

avro_record! {
    /// The upload and all its variants are available.
    pub struct UploadReady {
        /// Number of variants produced.
        pub variant_count: i32,
    }
}

avro_record! {
    /// The upload was aborted before completion.
    pub struct UploadAborted {
        /// Why, e.g. `client_request`.
        pub reason: String,
    }
}

avro_record! {
    /// The unfinished upload passed its expiry and was cleaned up.
    pub struct UploadExpired {}
}

avro_record! {
    /// The finished upload and its variants were deleted.
    pub struct UploadDeleted {}
}

avro_record! {
    /// A tenant was created with its initial policy.
    pub struct TenantCreated {
        /// Display name.
        pub name: String,
        /// Largest accepted upload, in bytes.
        pub max_file_size: i64,
        /// Accepted MIME types; entries may be wildcards such as `image/*`.
        pub allowed_content_types: Vec<String>,
        /// Total bytes the tenant may store.
        pub byte_quota: i64,
        /// Uploads the tenant may have in flight at once.
        pub max_concurrent_uploads: i32,
    }
}

avro_record! {
    /// An API key was issued to a tenant. Only its hash is recorded.
    pub struct ApiKeyIssued {
        /// Public key id.
        pub key_id: String,
        /// Hash of the secret as `algorithm:hex`, e.g. `sha256:...`.
        pub key_hash: String,
        /// When the key expires (micros since the epoch); `None` for never.
        pub expires_at: Option<i64>,
    }
}

avro_record! {
    /// An API key was revoked.
    pub struct ApiKeyRevoked {
        /// Public key id.
        pub key_id: String,
    }
}

avro_record! {
    /// A tenant's policy was replaced.
    pub struct QuotaChanged {
        /// Largest accepted upload, in bytes.
        pub max_file_size: i64,
        /// Accepted MIME types; entries may be wildcards such as `image/*`.
        pub allowed_content_types: Vec<String>,
        /// Total bytes the tenant may store.
        pub byte_quota: i64,
        /// Uploads the tenant may have in flight at once.
        pub max_concurrent_uploads: i32,
    }
}

avro_record! {
    /// Transient progress of an upload or of its processing.
    pub struct UploadProgress {
        /// Stage in progress, e.g. `uploading`, `transcoding`.
        pub stage: String,
        /// Bytes done so far.
        pub bytes_done: i64,
        /// Total bytes of the stage.
        pub bytes_total: i64,
        /// Completion in percent, 0 to 100.
        pub percent: f64,
    }
}

avro_record! {
    /// Heavy media work requested for an upload.
    pub struct MediaJobRequested {
        /// Kind of job: `image` or `video` (see [`MediaJobRequested::KIND_IMAGE`]).
        pub kind: String,
        /// Bucket of the source object.
        pub bucket: String,
        /// Key of the source object.
        pub object_key: String,
        /// MIME type of the source object.
        pub content_type: String,
        /// Size of the source object in bytes.
        pub size: i64,
    }
}

impl MediaJobRequested {
    /// `kind` of an image job.
    pub const KIND_IMAGE: &'static str = "image";
    /// `kind` of a video job.
    pub const KIND_VIDEO: &'static str = "video";
}

/// Which envelope field an event is keyed (partitioned) by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartitionKey {
    /// `meta.tenant_id`.
    TenantId,
    /// `meta.upload_id`.
    UploadId,
}

macro_rules! events {
    ( $( $variant:ident => $topic:path, $key:ident; )* ) => {
        /// The kind of an event: one Avro record (and registry subject) per variant.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType {
            $(
                #[doc = concat!("`", stringify!($variant), "`, see [`", stringify!($variant), "`].")]
                $variant,
            )*
        }

        impl EventType {
            /// Every event type, in manifest order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant),*];

            /// The record name, e.g. `"UploadInitiated"` (also the `event_type` Kafka header).
            pub const fn name(self) -> &'static str {
                match self { $(EventType::$variant => stringify!($variant),)* }
            }

            /// Topic the event is published to.
            pub const fn topic(self) -> &'static str {
                match self { $(EventType::$variant => $topic,)* }
            }

            /// Which envelope field the event is keyed by.
            pub const fn partition_key(self) -> PartitionKey {
                match self { $(EventType::$variant => PartitionKey::$key,)* }
            }

            /// The event type of a record name (`"UploadInitiated"`) or full name
            /// (`"tributary.events.UploadInitiated"`).
            pub fn from_name(name: &str) -> Option<Self> {
                let short = match name.strip_prefix(NAMESPACE) {
                    Some(rest) => rest.strip_prefix('.')?,
                    None => name,
                };
                match short {
                    $(stringify!($variant) => Some(EventType::$variant),)*
                    _ => None,
                }
            }
        }

        /// The payload of an event: one variant per event type.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type")]
        pub enum EventPayload {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        impl EventPayload {
            /// The type of this payload.
            pub const fn event_type(&self) -> EventType {
                match self { $(EventPayload::$variant(_) => EventType::$variant,)* }
            }

            fn push_avro_fields(&self, out: &mut Vec<(String, Value)>) {
                match self { $(EventPayload::$variant(p) => p.push_avro_fields(out),)* }
            }

            fn from_avro_fields(
                event_type: EventType,
                fields: &mut Fields,
            ) -> Result<Self, ConvertError> {
                Ok(match event_type {
                    $(EventType::$variant => EventPayload::$variant($variant::from_avro_fields(fields)?),)*
                })
            }

            /// Avro field names of the payload of `event_type`, in schema order.
            pub const fn field_names(event_type: EventType) -> &'static [&'static str] {
                match event_type { $(EventType::$variant => $variant::FIELD_NAMES,)* }
            }
        }

        $(
            impl From<$variant> for EventPayload {
                fn from(payload: $variant) -> Self {
                    EventPayload::$variant(payload)
                }
            }
        )*
    };
}

events! {
    UploadInitiated => topics::LIFECYCLE, TenantId;
    PartConfirmed => topics::LIFECYCLE, TenantId;
    UploadCompletionRequested => topics::LIFECYCLE, TenantId;
    UploadAssembled => topics::LIFECYCLE, TenantId;
    UploadValidated => topics::LIFECYCLE, TenantId;
    UploadRejected => topics::LIFECYCLE, TenantId;
    VariantProduced => topics::LIFECYCLE, TenantId;
    ProcessingFailed => topics::LIFECYCLE, TenantId;
    UploadReady => topics::LIFECYCLE, TenantId;
    UploadAborted => topics::LIFECYCLE, TenantId;
    UploadExpired => topics::LIFECYCLE, TenantId;
    UploadDeleted => topics::LIFECYCLE, TenantId;
    TenantCreated => topics::TENANT_ADMIN, TenantId;
    ApiKeyIssued => topics::TENANT_ADMIN, TenantId;
    ApiKeyRevoked => topics::TENANT_ADMIN, TenantId;
    QuotaChanged => topics::TENANT_ADMIN, TenantId;
    UploadProgress => topics::PROGRESS, TenantId;
    MediaJobRequested => topics::MEDIA_JOBS, UploadId;
}

impl EventType {
    /// Registry subject (RecordNameStrategy): the record's full name, e.g.
    /// `tributary.events.UploadInitiated`.
    pub fn subject(self) -> String {
        format!("{NAMESPACE}.{}", self.name())
    }

    /// Whether events of this type concern one upload (`meta.upload_id` must be set); false
    /// for tenant-administration events (`meta.upload_id` must be null).
    pub const fn is_upload_scoped(self) -> bool {
        !matches!(
            self,
            EventType::TenantCreated
                | EventType::ApiKeyIssued
                | EventType::ApiKeyRevoked
                | EventType::QuotaChanged
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One event: envelope plus payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The envelope.
    pub meta: EventMeta,
    /// The type-specific fields.
    pub payload: EventPayload,
}

impl Event {
    /// An event from its envelope and payload.
    pub fn new(meta: EventMeta, payload: impl Into<EventPayload>) -> Self {
        Self {
            meta,
            payload: payload.into(),
        }
    }

    /// The record name, e.g. `"UploadInitiated"`.
    pub const fn event_type(&self) -> &'static str {
        self.payload.event_type().name()
    }

    /// The event type as an enum.
    pub const fn kind(&self) -> EventType {
        self.payload.event_type()
    }

    /// The envelope.
    pub const fn meta(&self) -> &EventMeta {
        &self.meta
    }

    /// The payload.
    pub const fn payload(&self) -> &EventPayload {
        &self.payload
    }

    /// Topic the event is published to.
    pub const fn topic(&self) -> &'static str {
        self.kind().topic()
    }

    /// Kafka key: `meta.tenant_id`, or `meta.upload_id` for media jobs (falling back to the
    /// tenant id if a media job has no upload id, which [`crate::encode`] refuses anyway).
    pub fn partition_key(&self) -> &str {
        match self.kind().partition_key() {
            PartitionKey::TenantId => &self.meta.tenant_id,
            PartitionKey::UploadId => self
                .meta
                .upload_id
                .as_deref()
                .unwrap_or(&self.meta.tenant_id),
        }
    }

    /// Checks envelope rules the schema cannot express: `upload_id` is set exactly for
    /// upload-scoped events.
    pub fn check_envelope(&self) -> Result<(), &'static str> {
        match (self.kind().is_upload_scoped(), &self.meta.upload_id) {
            (true, None) => Err("upload_id is required for upload events"),
            (false, Some(_)) => Err("upload_id must be null for tenant-admin events"),
            _ => Ok(()),
        }
    }

    /// The Avro record value of this event (shaped for its current schema).
    pub(crate) fn to_avro_value(&self) -> Value {
        let mut meta = Vec::with_capacity(EventMeta::FIELD_NAMES.len());
        self.meta.push_avro_fields(&mut meta);
        let mut fields = vec![("meta".to_owned(), Value::Record(meta))];
        self.payload.push_avro_fields(&mut fields);
        Value::Record(fields)
    }

    /// The event of a record value already resolved against the current schema.
    pub(crate) fn from_avro_value(
        event_type: EventType,
        value: Value,
    ) -> Result<Self, ConvertError> {
        let mut fields = Fields::from_record(event_type.name(), value)?;
        let meta = fields.take_record("meta", EventMeta::from_avro_record)?;
        let payload = EventPayload::from_avro_fields(event_type, &mut fields)?;
        Ok(Self { meta, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_names_round_trip() {
        for &t in EventType::ALL {
            assert_eq!(EventType::from_name(t.name()), Some(t));
            assert_eq!(EventType::from_name(&t.subject()), Some(t));
        }
        assert_eq!(EventType::from_name("tributary.eventsUploadReady"), None);
        assert_eq!(EventType::from_name("other.UploadReady"), None);
        assert_eq!(EventType::ALL.len(), 18);
    }

    #[test]
    fn meta_new_uses_uuid_v7_and_now() {
        let before = now_micros();
        let meta = EventMeta::new("t1", Some("u1".into()), "svc@1.0.0", "c1", None);
        assert_eq!(meta.event_id.get_version_num(), 7);
        assert!(meta.occurred_at >= before && meta.occurred_at <= now_micros());
        let next = meta.caused_by("other@2");
        assert_eq!(next.causation_id, Some(meta.event_id.to_string()));
        assert_eq!(next.correlation_id, "c1");
        assert_eq!(next.upload_id.as_deref(), Some("u1"));
        assert_ne!(next.event_id, meta.event_id);
    }

    #[test]
    fn topics_and_keys() {
        let meta = EventMeta::new("tenant", Some("upload".into()), "p@1", "c", None);
        let job = Event::new(
            meta.clone(),
            MediaJobRequested {
                kind: MediaJobRequested::KIND_VIDEO.into(),
                bucket: "b".into(),
                object_key: "k".into(),
                content_type: "video/mp4".into(),
                size: 1,
            },
        );
        assert_eq!(job.topic(), topics::MEDIA_JOBS);
        assert_eq!(job.partition_key(), "upload");
        let ready = Event::new(meta, UploadReady { variant_count: 2 });
        assert_eq!(ready.topic(), topics::LIFECYCLE);
        assert_eq!(ready.partition_key(), "tenant");
        assert_eq!(ready.event_type(), "UploadReady");
        assert_eq!(EventType::QuotaChanged.topic(), topics::TENANT_ADMIN);
        assert_eq!(EventType::UploadProgress.topic(), topics::PROGRESS);
    }

    #[test]
    fn envelope_rules() {
        let admin = Event::new(
            EventMeta::new("t", Some("u".into()), "p@1", "c", None),
            ApiKeyRevoked { key_id: "k".into() },
        );
        assert!(admin.check_envelope().is_err());
        let upload = Event::new(
            EventMeta::new("t", None, "p@1", "c", None),
            UploadExpired {},
        );
        assert!(upload.check_envelope().is_err());
    }
}
