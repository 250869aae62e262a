//! Tributary's event contract: one Avro schema per event type (namespace `tributary.events`,
//! registry subjects by RecordNameStrategy), the Rust types of those events, and the Confluent
//! wire format (`0x00`, 4-byte big-endian schema id, Avro binary datum).
//!
//! ```
//! use tributary_schemas::{Event, EventMeta, UploadReady, decode, encode};
//!
//! let meta = EventMeta::new("tenant-1", Some("upload-1".into()), "ingest-api@0.1.0", "req-1", None);
//! let event = Event::new(meta, UploadReady { variant_count: 3 });
//! let bytes = encode(&event)?;
//! assert_eq!(bytes[0], 0);
//! assert_eq!(decode(&bytes)?, event);
//! assert_eq!(event.topic(), tributary_schemas::topics::LIFECYCLE);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Schemas live in `schemas/avro/<snake_name>.v<N>.avsc`, ids and versions in
//! `schemas/registry.json`; both are compiled in. See `schemas/README.md` for evolution rules.

mod catalog;
mod compat;
mod convert;
mod event;
mod manifest;
pub mod registry;

pub use catalog::{
    DecodeError, EncodeError, HEADER_LEN, MAGIC_BYTE, MAX_ALLOCATION_BYTES, SchemaCatalog,
    allocation_limit, decode, encode, frame_header, init_avro_limits, split_frame,
};
pub use compat::{CompatibilityError, check_evolution};
pub use convert::ConvertError;
pub use event::{
    ApiKeyIssued, ApiKeyRevoked, Event, EventMeta, EventPayload, EventType, MediaJobRequested,
    NAMESPACE, PartConfirmed, PartitionKey, ProcessingFailed, QuotaChanged, TenantCreated,
    UploadAborted, UploadAssembled, UploadCompletionRequested, UploadDeleted, UploadExpired,
    UploadInitiated, UploadProgress, UploadReady, UploadRejected, UploadValidated, VariantProduced,
    civil_date, now_micros,
};
pub use manifest::{CatalogError, Manifest, SchemaVersion};

/// Topic names.
pub mod topics {
    /// Upload lifecycle, the source of truth; keyed by tenant id; kept forever.
    pub const LIFECYCLE: &str = "tributary.uploads.lifecycle.v1";
    /// Tenant administration (tenants, API keys, quotas); keyed by tenant id; kept forever.
    pub const TENANT_ADMIN: &str = "tributary.tenants.admin.v1";
    /// Transient progress; keyed by tenant id; short retention.
    pub const PROGRESS: &str = "tributary.uploads.progress.v1";
    /// Heavy media work; keyed by upload id so one tenant cannot hog a worker.
    pub const MEDIA_JOBS: &str = "tributary.media.jobs.v1";
    /// Every topic that carries events of this crate.
    pub const ALL: &[&str] = &[LIFECYCLE, TENANT_ADMIN, PROGRESS, MEDIA_JOBS];
}

/// Kafka header names every producer sets.
pub mod headers {
    /// Record name of the event, e.g. `UploadInitiated`.
    pub const EVENT_TYPE: &str = "event_type";
    /// `meta.tenant_id`.
    pub const TENANT_ID: &str = "tenant_id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
}
