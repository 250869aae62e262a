//! [`SchemaCatalog`]: which schema id each event type is written with, which writer schema
//! each id stands for, and the Confluent wire-format codec built on that.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Once, PoisonError, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::convert::ConvertError;
use crate::event::{Event, EventType};
use crate::manifest::{CatalogError, Manifest, record_full_name};
use crate::registry::{RegistryClient, RegistryError};

/// First byte of every Confluent-framed message.
pub const MAGIC_BYTE: u8 = 0;
/// Length of the Confluent header: magic byte plus 4-byte big-endian schema id.
pub const HEADER_LEN: usize = 5;
/// Most memory one decode may allocate for a single string, bytes, array or map (16 MiB).
/// Kafka messages are far smaller, so a larger length prefix is hostile or corrupt input.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

static LIMITS: Once = Once::new();

/// Caps apache-avro's allocations at [`MAX_ALLOCATION_BYTES`]. Called by every constructor and
/// decode; the limit is process-wide and can only be set once (if something else set it first,
/// that value stays: see [`allocation_limit`]).
///
/// Decoding sets the limit by itself, before apache-avro would set its 512 MiB default:
///
/// ```
/// // A string length prefix claiming 2^40 bytes, right after the header of schema id 5.
/// let hostile = [0, 0, 0, 0, 5, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40, b'x'];
/// let err = tributary_schemas::decode(&hostile).expect_err("hostile input");
/// assert!(err.to_string().contains("maximum allowed: 16777216"), "{err}");
/// // The process-wide limit (set once; this call cannot change it any more).
/// assert_eq!(apache_avro::util::max_allocation_bytes(usize::MAX), 16 * 1024 * 1024);
/// ```
pub fn init_avro_limits() {
    LIMITS.call_once(|| {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
    });
}

/// The allocation limit apache-avro enforces in this process.
pub fn allocation_limit() -> usize {
    init_avro_limits();
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES)
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The envelope breaks a rule (e.g. an upload event without `upload_id`).
    #[error("invalid {event_type} envelope: {reason}")]
    InvalidEnvelope {
        /// Event type.
        event_type: &'static str,
        /// Rule broken.
        reason: &'static str,
    },
    /// The catalog has no schema for the event type (a catalog built from a partial set).
    #[error("no schema for event type {0}")]
    NoSchema(&'static str),
    /// apache-avro refused the value (it does not match the schema).
    #[error("avro encode failed for {event_type} (schema id {id}): {source}")]
    Avro {
        /// Event type.
        event_type: &'static str,
        /// Schema id used.
        id: u32,
        /// Underlying error.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// The embedded manifest is broken.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Why bytes could not be decoded into an [`Event`].
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the 5-byte header.
    #[error("payload too short: {0} bytes")]
    TooShort(usize),
    /// First byte is not [`MAGIC_BYTE`].
    #[error("unknown magic byte {0:#04x}")]
    BadMagic(u8),
    /// No schema known under this id (and none could be fetched).
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// The body is not a valid datum of the writer schema, or does not resolve to the reader
    /// schema.
    #[error("avro decode failed for schema id {id}: {source}")]
    Avro {
        /// Writer schema id.
        id: u32,
        /// Underlying error.
        #[source]
        source: Box<apache_avro::Error>,
    },
    /// Bytes left over after one datum.
    #[error("{count} trailing bytes after the datum of schema id {id}")]
    TrailingBytes {
        /// Writer schema id.
        id: u32,
        /// Leftover byte count.
        count: usize,
    },
    /// The datum decoded but does not fit the Rust type.
    #[error("schema id {id} ({event_type}): {source}")]
    Convert {
        /// Writer schema id.
        id: u32,
        /// Event type.
        event_type: &'static str,
        /// Underlying error.
        #[source]
        source: ConvertError,
    },
    /// A schema fetched from the registry is unusable.
    #[error("registry schema id {id} is unusable: {reason}")]
    BadWriterSchema {
        /// Schema id.
        id: u32,
        /// Why.
        reason: String,
    },
    /// Fetching the writer schema from the registry failed.
    #[error("fetching schema id {id} failed: {source}")]
    Registry {
        /// Schema id.
        id: u32,
        /// Underlying error.
        #[source]
        source: Box<RegistryError>,
    },
    /// The embedded manifest is broken.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A writer schema known to the catalog.
#[derive(Debug)]
struct KnownSchema {
    event_type: EventType,
    schema: Schema,
}

/// Schemas by id and the id each event type is currently written with.
///
/// Two sources: [`SchemaCatalog::embedded`] (ids from `registry.json`) and
/// [`SchemaCatalog::from_registry`] (ids assigned by a Confluent-compatible registry, unknown
/// writer ids fetched on demand by [`SchemaCatalog::decode_async`] or
/// [`SchemaCatalog::ensure_id`]). Reader schemas are always this binary's current versions.
#[derive(Debug)]
pub struct SchemaCatalog {
    /// Current (reader and writer) schema and its id, per event type.
    current: HashMap<EventType, (u32, Arc<KnownSchema>)>,
    /// Writer schemas by id.
    writers: RwLock<HashMap<u32, Arc<KnownSchema>>>,
    registry: Option<RegistryClient>,
}

static EMBEDDED: LazyLock<Result<SchemaCatalog, CatalogError>> =
    LazyLock::new(SchemaCatalog::embedded);

/// Encodes `event` in the Confluent wire format with the embedded catalog (manifest ids).
pub fn encode(event: &Event) -> Result<Vec<u8>, EncodeError> {
    EMBEDDED.as_ref().map_err(Clone::clone)?.encode(event)
}

/// Decodes Confluent-framed bytes with the embedded catalog (manifest ids).
pub fn decode(bytes: &[u8]) -> Result<Event, DecodeError> {
    EMBEDDED.as_ref().map_err(Clone::clone)?.decode(bytes)
}

/// The 5-byte header: magic byte and big-endian schema id.
pub fn frame_header(id: u32) -> [u8; HEADER_LEN] {
    let id = id.to_be_bytes();
    [MAGIC_BYTE, id[0], id[1], id[2], id[3]]
}

/// Splits Confluent-framed bytes into schema id and Avro body.
pub fn split_frame(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    let Some((header, body)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(DecodeError::TooShort(bytes.len()));
    };
    let [magic, id @ ..] = *header;
    if magic != MAGIC_BYTE {
        return Err(DecodeError::BadMagic(magic));
    }
    Ok((u32::from_be_bytes(id), body))
}

impl SchemaCatalog {
    /// The catalog of the embedded manifest: every version's id from `registry.json`; each
    /// event type written with its subject's latest version.
    pub fn embedded() -> Result<Self, CatalogError> {
        init_avro_limits();
        let manifest = Manifest::embedded()?;
        let mut writers = HashMap::new();
        let mut current: HashMap<EventType, (u32, Arc<KnownSchema>)> = HashMap::new();
        for entry in manifest.entries() {
            let known = Arc::new(parse_known(&entry.schema).map_err(|reason| {
                CatalogError::InvalidSchema {
                    file: entry.file.clone(),
                    reason,
                }
            })?);
            let is_latest = manifest
                .latest(&entry.subject)
                .is_some_and(|latest| latest.id == entry.id);
            if is_latest {
                current.insert(known.event_type, (entry.id, Arc::clone(&known)));
            }
            writers.insert(entry.id, known);
        }
        if let Some(missing) = EventType::ALL.iter().find(|t| !current.contains_key(t)) {
            return Err(CatalogError::MissingEventType(missing.name().to_owned()));
        }
        Ok(Self {
            current,
            writers: RwLock::new(writers),
            registry: None,
        })
    }

    /// A catalog backed by the registry at `url`: registers the current schema of every event
    /// type (`POST /subjects/{subject}/versions`, RecordNameStrategy subjects) to learn the ids
    /// to write with. Writer ids it does not know are fetched when first seen.
    pub async fn from_registry(url: &str) -> Result<Self, RegistryError> {
        init_avro_limits();
        let client = RegistryClient::new(url)?;
        let embedded = Self::embedded().map_err(|e| RegistryError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("embedded schemas unusable: {e}"),
        })?;
        let manifest = Manifest::embedded().map_err(|e| RegistryError::InvalidUrl {
            url: url.to_owned(),
            reason: format!("embedded manifest unusable: {e}"),
        })?;
        let mut current = HashMap::new();
        let mut writers = HashMap::new();
        for &event_type in EventType::ALL {
            let subject = event_type.subject();
            let (Some(latest), Some((_, known))) =
                (manifest.latest(&subject), embedded.current.get(&event_type))
            else {
                continue; // embedded() guarantees both exist
            };
            let id = client.register(&subject, &latest.schema).await?;
            current.insert(event_type, (id, Arc::clone(known)));
            writers.insert(id, Arc::clone(known));
        }
        Ok(Self {
            current,
            writers: RwLock::new(writers),
            registry: Some(client),
        })
    }

    /// The registry client, if this catalog is registry-backed.
    pub fn registry(&self) -> Option<&RegistryClient> {
        self.registry.as_ref()
    }

    /// The id events of `event_type` are written with.
    pub fn current_id(&self, event_type: EventType) -> Option<u32> {
        self.current.get(&event_type).map(|(id, _)| *id)
    }

    /// Whether a writer schema is known under `id`.
    pub fn knows_id(&self, id: u32) -> bool {
        self.writers_read().contains_key(&id)
    }

    /// Adds a writer schema under `id` (e.g. one fetched from a registry by other means).
    /// The schema must be a record of one of the known event types.
    pub fn add_writer_schema(&self, id: u32, schema_json: &str) -> Result<(), DecodeError> {
        let known = parse_known(schema_json)
            .map_err(|reason| DecodeError::BadWriterSchema { id, reason })?;
        self.writers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::new(known));
        Ok(())
    }

    /// Makes sure the writer schema `id` is known, fetching it from the registry
    /// (`GET /schemas/ids/{id}`) if needed. Without a registry an unknown id is
    /// [`DecodeError::UnknownSchemaId`].
    pub async fn ensure_id(&self, id: u32) -> Result<(), DecodeError> {
        if self.knows_id(id) {
            return Ok(());
        }
        let Some(client) = &self.registry else {
            return Err(DecodeError::UnknownSchemaId(id));
        };
        let json = client
            .schema_by_id(id)
            .await
            .map_err(|source| match source {
                RegistryError::Status { status: 404, .. } => DecodeError::UnknownSchemaId(id),
                other => DecodeError::Registry {
                    id,
                    source: Box::new(other),
                },
            })?;
        self.add_writer_schema(id, &json)
    }

    /// Encodes `event` as magic byte, schema id of its current schema, Avro binary datum.
    pub fn encode(&self, event: &Event) -> Result<Vec<u8>, EncodeError> {
        let event_type = event.kind();
        event
            .check_envelope()
            .map_err(|reason| EncodeError::InvalidEnvelope {
                event_type: event_type.name(),
                reason,
            })?;
        let (id, known) = self
            .current
            .get(&event_type)
            .ok_or(EncodeError::NoSchema(event_type.name()))?;
        let avro = |source| EncodeError::Avro {
            event_type: event_type.name(),
            id: *id,
            source: Box::new(source),
        };
        let writer = GenericDatumWriter::builder(&known.schema)
            .build()
            .map_err(avro)?;
        let mut out = frame_header(*id).to_vec();
        writer
            .write_value(&mut out, event.to_avro_value())
            .map_err(avro)?;
        Ok(out)
    }

    /// Decodes Confluent-framed bytes: reads the schema id, decodes the datum with that writer
    /// schema resolved against the current schema of the same event type, and converts it.
    /// Uses only schemas already known (see [`Self::decode_async`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        init_avro_limits();
        let (id, body) = split_frame(bytes)?;
        let writer = self
            .writers_read()
            .get(&id)
            .cloned()
            .ok_or(DecodeError::UnknownSchemaId(id))?;
        let event_type = writer.event_type;
        let (_, reader) = self
            .current
            .get(&event_type)
            .ok_or(DecodeError::UnknownSchemaId(id))?;
        let avro = |source| DecodeError::Avro {
            id,
            source: Box::new(source),
        };
        // Same schema: plain decode. Otherwise resolve (defaults, promotions, dropped fields).
        let reader_schema = (!Arc::ptr_eq(&writer, reader)).then_some(&reader.schema);
        let datum_reader = GenericDatumReader::builder(&writer.schema)
            .maybe_reader_schema(reader_schema)
            .build()
            .map_err(avro)?;
        let mut rest = body;
        let value = datum_reader.read_value(&mut rest).map_err(avro)?;
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes {
                id,
                count: rest.len(),
            });
        }
        Event::from_avro_value(event_type, value).map_err(|source| DecodeError::Convert {
            id,
            event_type: event_type.name(),
            source,
        })
    }

    /// Like [`Self::decode`], fetching an unknown writer schema from the registry first.
    pub async fn decode_async(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        let (id, _) = split_frame(bytes)?;
        self.ensure_id(id).await?;
        self.decode(bytes)
    }

    fn writers_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Arc<KnownSchema>>> {
        self.writers.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Parses a writer schema and finds its event type.
fn parse_known(schema_json: &str) -> Result<KnownSchema, String> {
    let schema = Schema::parse_str(schema_json).map_err(|e| e.to_string())?;
    let name = record_full_name(&schema).ok_or_else(|| "not a record schema".to_owned())?;
    let event_type = EventType::from_name(&name)
        .filter(|t| t.subject() == name)
        .ok_or_else(|| format!("unknown record {name}"))?;
    Ok(KnownSchema { event_type, schema })
}
