//! The event contract: round trips, schema/struct agreement, manifest rules, evolution checks
//! and resolution between schema versions.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use tributary_schemas::*;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: impl AsRef<Path>) -> String {
    let path = schemas_dir().join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(path: &str) -> Schema {
    Schema::parse_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn manifest() -> &'static Manifest {
    Manifest::embedded().expect("embedded manifest")
}

fn manifest_id(event_type: EventType) -> u32 {
    manifest()
        .latest(&event_type.subject())
        .expect("subject in manifest")
        .id
}

/// Ids released so far. They are frozen: a released id never changes meaning and is never
/// reused. Append new releases here when adding schema versions to the manifest.
const RELEASED: &[(u32, &str, u32)] = &[
    (1, "tributary.events.UploadInitiated", 1),
    (2, "tributary.events.PartConfirmed", 1),
    (3, "tributary.events.UploadCompletionRequested", 1),
    (4, "tributary.events.UploadAssembled", 1),
    (5, "tributary.events.UploadValidated", 1),
    (6, "tributary.events.UploadRejected", 1),
    (7, "tributary.events.VariantProduced", 1),
    (8, "tributary.events.ProcessingFailed", 1),
    (9, "tributary.events.UploadReady", 1),
    (10, "tributary.events.UploadAborted", 1),
    (11, "tributary.events.UploadExpired", 1),
    (12, "tributary.events.UploadDeleted", 1),
    (13, "tributary.events.TenantCreated", 1),
    (14, "tributary.events.ApiKeyIssued", 1),
    (15, "tributary.events.ApiKeyRevoked", 1),
    (16, "tributary.events.QuotaChanged", 1),
    (17, "tributary.events.UploadProgress", 1),
    (18, "tributary.events.MediaJobRequested", 1),
];

// ---------------------------------------------------------------------------------------------
// 1. Round trips

#[test]
fn samples_cover_every_event_type() {
    let covered: BTreeSet<EventType> = common::samples().iter().map(Event::kind).collect();
    let all: BTreeSet<EventType> = EventType::ALL.iter().copied().collect();
    assert_eq!(covered, all);
}

#[test]
fn round_trip_every_event_type_with_manifest_ids() {
    let catalog = SchemaCatalog::embedded().expect("catalog");
    for event in common::samples()
        .into_iter()
        .chain(common::sparse_samples())
    {
        let bytes = encode(&event).unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
        let id = manifest_id(event.kind());
        assert_eq!(bytes[0], 0x00, "{}", event.event_type());
        assert_eq!(bytes[1..5], id.to_be_bytes(), "{}", event.event_type());
        assert_eq!(catalog.current_id(event.kind()), Some(id));
        let decoded = decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", event.event_type()));
        assert_eq!(decoded, event);
        // A separately built catalog agrees (bytes may differ only in map entry order).
        let again = catalog.encode(&event).expect("encode");
        assert_eq!(again.len(), bytes.len());
        assert_eq!(catalog.decode(&again).expect("decode"), event);
        assert_eq!(catalog.decode(&bytes).expect("decode"), event);
    }
}

#[test]
fn body_is_a_plain_avro_datum_of_the_manifest_schema() {
    // Independent check of the framing: the body decodes with apache-avro directly, using the
    // schema text served for the id, and leaves no bytes over.
    for event in common::samples() {
        let bytes = encode(&event).expect("encode");
        let (id, body) = split_frame(&bytes).expect("frame");
        let schema = Schema::parse_str(&manifest().by_id(id).expect("id").schema).expect("schema");
        let reader = GenericDatumReader::builder(&schema)
            .build()
            .expect("reader");
        let mut rest = body;
        let value = reader.read_value(&mut rest).expect("datum");
        assert!(rest.is_empty());
        let Value::Record(fields) = value else {
            panic!("not a record")
        };
        assert_eq!(fields[0].0, "meta");
        let Value::Record(meta) = &fields[0].1 else {
            panic!("meta not a record")
        };
        assert_eq!(
            meta[0],
            ("event_id".into(), Value::Uuid(event.meta.event_id))
        );
        assert_eq!(
            meta[3],
            (
                "occurred_at".into(),
                Value::TimestampMicros(event.meta.occurred_at)
            )
        );
    }
}

#[test]
fn json_form_round_trips() {
    for event in common::samples() {
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(json["payload"]["type"], event.event_type());
        let back: Event = serde_json::from_value(json).expect("from json");
        assert_eq!(back, event);
    }
}

#[test]
fn topics_and_partition_keys() {
    for event in common::samples() {
        let expected_topic = match event.event_type() {
            "TenantCreated" | "ApiKeyIssued" | "ApiKeyRevoked" | "QuotaChanged" => {
                "tributary.tenants.admin.v1"
            }
            "UploadProgress" => "tributary.uploads.progress.v1",
            "MediaJobRequested" => "tributary.media.jobs.v1",
            _ => "tributary.uploads.lifecycle.v1",
        };
        assert_eq!(event.topic(), expected_topic, "{}", event.event_type());
        let expected_key = if event.event_type() == "MediaJobRequested" {
            event.meta.upload_id.as_deref().expect("upload id")
        } else {
            event.meta.tenant_id.as_str()
        };
        assert_eq!(event.partition_key(), expected_key);
    }
}

#[test]
fn encode_enforces_envelope_rules() {
    let mut upload = common::samples().remove(0);
    upload.meta.upload_id = None;
    let err = encode(&upload).expect_err("upload event without upload_id");
    assert_eq!(
        err.to_string(),
        "invalid UploadInitiated envelope: upload_id is required for upload events"
    );
    let mut admin = common::samples()
        .into_iter()
        .find(|e| e.event_type() == "TenantCreated")
        .expect("sample");
    admin.meta.upload_id = Some("u".into());
    assert!(matches!(
        encode(&admin),
        Err(EncodeError::InvalidEnvelope { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Schema files, manifest, struct agreement

#[test]
fn rust_fields_match_schema_fields() {
    for &event_type in EventType::ALL {
        let entry = manifest().latest(&event_type.subject()).expect("subject");
        let Schema::Record(record) = Schema::parse_str(&entry.schema).expect("schema") else {
            panic!("{event_type} is not a record")
        };
        let names: Vec<&str> = record.fields.iter().map(|f| f.name.as_str()).collect();
        let mut expected = vec!["meta"];
        expected.extend(EventPayload::field_names(event_type));
        assert_eq!(names, expected, "{event_type}");
        let Schema::Record(meta) = &record.fields[0].schema else {
            panic!("{event_type}: meta is not a record")
        };
        let meta_names: Vec<&str> = meta.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(meta_names, EventMeta::FIELD_NAMES, "{event_type}");
    }
}

/// Every nullable field is `["null", T]` with default null; no enums anywhere (adding a symbol
/// breaks old readers).
#[test]
fn schemas_use_no_enums_and_nullable_fields_have_null_defaults() {
    fn walk(file: &str, path: &str, value: &serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                assert_ne!(
                    map.get("type"),
                    Some(&"enum".into()),
                    "{file}: enum at {path}"
                );
                if let (Some(name), Some(serde_json::Value::Array(union))) =
                    (map.get("name"), map.get("type"))
                {
                    assert_eq!(union.first(), Some(&"null".into()), "{file}: {name}");
                    assert_eq!(
                        map.get("default"),
                        Some(&serde_json::Value::Null),
                        "{file}: {name} needs default null"
                    );
                }
                for (k, v) in map {
                    walk(file, &format!("{path}.{k}"), v);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    walk(file, path, v);
                }
            }
            _ => {}
        }
    }
    for entry in manifest().entries() {
        let json: serde_json::Value = serde_json::from_str(&entry.schema).expect("json");
        walk(&entry.file, "", &json);
    }
}

#[test]
fn event_meta_is_identical_in_every_schema() {
    let mut copies = BTreeMap::new();
    for entry in manifest().entries() {
        let json: serde_json::Value = serde_json::from_str(&entry.schema).expect("json");
        let meta = json["fields"]
            .as_array()
            .and_then(|fields| fields.iter().find(|f| f["name"] == "meta"))
            .unwrap_or_else(|| panic!("{}: no meta field", entry.file));
        copies.insert(entry.file.clone(), meta.clone());
    }
    let (first_file, first) = copies.iter().next().expect("some schemas");
    assert_eq!(first["type"]["name"], "EventMeta");
    assert_eq!(first["type"]["namespace"], "tributary.events");
    for (file, meta) in &copies {
        assert_eq!(meta, first, "EventMeta in {file} differs from {first_file}");
    }
}

#[test]
fn manifest_files_exist_are_named_by_convention_and_embedded_verbatim() {
    let mut on_disk = BTreeSet::new();
    for dir_entry in std::fs::read_dir(schemas_dir().join("avro")).expect("avro dir") {
        let name = dir_entry.expect("entry").file_name();
        on_disk.insert(format!("avro/{}", name.to_string_lossy()));
    }
    let in_manifest: BTreeSet<String> = manifest().entries().map(|e| e.file.clone()).collect();
    assert_eq!(
        on_disk, in_manifest,
        "files under avro/ and registry.json differ"
    );
    for entry in manifest().entries() {
        let record = entry.subject.rsplit('.').next().expect("name");
        let mut snake = String::new();
        for (i, c) in record.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        }
        assert_eq!(entry.file, format!("avro/{snake}.v{}.avsc", entry.version));
        let on_disk: serde_json::Value =
            serde_json::from_str(&read(&entry.file)).expect("json on disk");
        let embedded: serde_json::Value = serde_json::from_str(&entry.schema).expect("json");
        assert_eq!(on_disk, embedded, "{} embedded copy is stale", entry.file);
    }
}

#[test]
fn released_ids_are_frozen_and_versions_contiguous() {
    for &(id, subject, version) in RELEASED {
        let entry = manifest()
            .by_id(id)
            .unwrap_or_else(|| panic!("id {id} vanished"));
        assert_eq!(
            (entry.subject.as_str(), entry.version),
            (subject, version),
            "id {id}"
        );
    }
    let max_released = RELEASED.iter().map(|r| r.0).max().unwrap_or(0);
    for entry in manifest().entries() {
        assert!(
            RELEASED.iter().any(|r| r.0 == entry.id) || entry.id > max_released,
            "new id {} must be above every released id",
            entry.id
        );
    }
    for subject in manifest().subjects() {
        let versions = manifest().versions(subject).expect("versions");
        let expected: Vec<u32> = (1..=u32::try_from(versions.len()).expect("count")).collect();
        assert_eq!(versions, expected, "{subject} versions must be 1..N");
    }
    let subjects: BTreeSet<String> = manifest()
        .subjects()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let expected: BTreeSet<String> = EventType::ALL.iter().map(|t| t.subject()).collect();
    assert_eq!(subjects, expected);
}

#[test]
fn read_only_registry_view() {
    let m = manifest();
    assert_eq!(m.subjects().len(), 18);
    assert!(m.subjects().windows(2).all(|w| w[0] < w[1]), "sorted");
    let subject = "tributary.events.PartConfirmed";
    assert_eq!(m.versions(subject), Some(vec![1]));
    assert_eq!(m.versions("nope"), None);
    let v1 = m.by_subject_version(subject, 1).expect("v1");
    assert_eq!((v1.id, v1.version, v1.subject.as_str()), (2, 1, subject));
    assert_eq!(m.by_subject_version_str(subject, "latest"), Some(v1));
    assert_eq!(m.by_subject_version_str(subject, "-1"), Some(v1));
    assert_eq!(m.by_subject_version_str(subject, "1"), Some(v1));
    assert_eq!(m.by_subject_version_str(subject, "2"), None);
    assert_eq!(m.by_subject_version_str(subject, "x"), None);
    assert_eq!(m.by_id(2), Some(v1));
    assert_eq!(m.by_id(0), None);
    assert_eq!(m.by_id(77), None);
    // The schema text is compact, parses, and keeps logical types and defaults.
    assert!(!v1.schema.contains('\n'));
    assert!(v1.schema.contains("\"logicalType\":\"timestamp-micros\""));
    assert!(v1.schema.contains("\"default\":null"));
    assert_eq!(
        Schema::parse_str(&v1.schema).expect("schema"),
        parse("avro/part_confirmed.v1.avsc")
    );
    // Confluent's /subjects/{s}/versions/{v} body.
    let body = serde_json::to_value(v1).expect("json");
    assert_eq!(
        body,
        serde_json::json!({"subject": subject, "version": 1, "id": 2, "schema": v1.schema})
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Compatibility

#[test]
fn every_subject_version_is_fully_compatible_with_the_previous_one() {
    let mut checked = 0;
    for subject in manifest().subjects() {
        let versions = manifest().versions(subject).expect("versions");
        for pair in versions.windows(2) {
            let previous = manifest()
                .by_subject_version(subject, pair[0])
                .expect("prev");
            let next = manifest()
                .by_subject_version(subject, pair[1])
                .expect("next");
            let previous = Schema::parse_str(&previous.schema).expect("prev schema");
            let next = Schema::parse_str(&next.schema).expect("next schema");
            check_evolution(&previous, &next)
                .unwrap_or_else(|e| panic!("{subject} v{} -> v{}: {e}", pair[0], pair[1]));
            checked += 1;
        }
    }
    // Every subject is at v1 today; this count grows with the first v2.
    assert_eq!(
        checked,
        manifest().entries().count() - manifest().subjects().len()
    );
}

const V1: &str = "avro/part_confirmed.v1.avsc";
const V2_COMPATIBLE: &str = "tests/fixtures/part_confirmed.v2.compatible.avsc";
const V2_ADDED_REQUIRED: &str = "tests/fixtures/part_confirmed.v2.incompatible_added_required.avsc";
const V2_REMOVED_REQUIRED: &str =
    "tests/fixtures/part_confirmed.v2.incompatible_removed_required.avsc";

#[test]
fn compatible_fixture_is_accepted() {
    check_evolution(&parse(V1), &parse(V2_COMPATIBLE)).expect("new optional field is fine");
    // and the reverse step (dropping a field that has a default) too
    check_evolution(&parse(V2_COMPATIBLE), &parse(V1)).expect("dropping a defaulted field");
}

#[test]
fn new_field_without_default_is_rejected_as_backward_incompatible() {
    let err = check_evolution(&parse(V1), &parse(V2_ADDED_REQUIRED)).expect_err("must reject");
    assert!(matches!(err, CompatibilityError::Backward(_)), "{err}");
    assert!(err.to_string().contains("storage_class"), "{err}");
}

#[test]
fn removed_field_without_default_is_rejected_as_forward_incompatible() {
    let err = check_evolution(&parse(V1), &parse(V2_REMOVED_REQUIRED)).expect_err("must reject");
    assert!(matches!(err, CompatibilityError::Forward(_)), "{err}");
    assert!(err.to_string().contains("etag"), "{err}");
}

#[test]
fn renaming_the_record_is_rejected() {
    let err = check_evolution(&parse(V1), &parse("avro/upload_ready.v1.avsc"))
        .expect_err("different record");
    assert!(matches!(err, CompatibilityError::Renamed { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 3. Decoding data written with another version

fn part_confirmed_v2_value(checksum: Option<&str>) -> Value {
    let mut fields = match encode_value_of(&common::samples()[1]) {
        Value::Record(fields) => fields,
        other => panic!("not a record: {other:?}"),
    };
    fields.push((
        "checksum_crc32c".into(),
        match checksum {
            Some(c) => Value::Union(1, Box::new(Value::String(c.into()))),
            None => Value::Union(0, Box::new(Value::Null)),
        },
    ));
    Value::Record(fields)
}

/// The generic value of an event, read back from its v1 encoding.
fn encode_value_of(event: &Event) -> Value {
    let bytes = encode(event).expect("encode");
    let (_, body) = split_frame(&bytes).expect("frame");
    let v1 = parse(V1);
    GenericDatumReader::builder(&v1)
        .build()
        .expect("reader")
        .read_value(&mut &body[..])
        .expect("value")
}

#[test]
fn v2_data_resolves_to_v1_reader_and_v1_data_to_v2_reader() {
    let v1 = parse(V1);
    let v2 = parse(V2_COMPATIBLE);

    // new writer, old reader: the extra field is skipped
    let v2_bytes = GenericDatumWriter::builder(&v2)
        .build()
        .expect("writer")
        .write_value_to_vec(part_confirmed_v2_value(Some("yZRlqg==")))
        .expect("v2 datum");
    let as_v1 = GenericDatumReader::builder(&v2)
        .reader_schema(&v1)
        .build()
        .expect("reader")
        .read_value(&mut &v2_bytes[..])
        .expect("v2 -> v1");
    assert_eq!(as_v1, encode_value_of(&common::samples()[1]));

    // old writer, new reader: the new field takes its default
    let v1_bytes = encode(&common::samples()[1]).expect("encode");
    let (_, body) = split_frame(&v1_bytes).expect("frame");
    let as_v2 = GenericDatumReader::builder(&v1)
        .reader_schema(&v2)
        .build()
        .expect("reader")
        .read_value(&mut &body[..])
        .expect("v1 -> v2");
    let Value::Record(fields) = as_v2 else {
        panic!("not a record")
    };
    assert_eq!(
        fields.last(),
        Some(&(
            "checksum_crc32c".to_owned(),
            Value::Union(0, Box::new(Value::Null))
        ))
    );
}

#[test]
fn catalog_decodes_messages_written_with_a_newer_compatible_version() {
    let catalog = SchemaCatalog::embedded().expect("catalog");
    catalog
        .add_writer_schema(1000, &read(V2_COMPATIBLE))
        .expect("add v2");
    let v2 = parse(V2_COMPATIBLE);
    let mut bytes = frame_header(1000).to_vec();
    bytes.extend(
        GenericDatumWriter::builder(&v2)
            .build()
            .expect("writer")
            .write_value_to_vec(part_confirmed_v2_value(Some("yZRlqg==")))
            .expect("datum"),
    );
    assert_eq!(
        catalog.decode(&bytes).expect("decode"),
        common::samples()[1]
    );
    // The embedded catalog does not know id 1000.
    assert_eq!(
        decode(&bytes).expect_err("unknown").to_string(),
        "unknown schema id 1000"
    );
}

#[test]
fn catalog_refuses_messages_of_an_incompatible_writer() {
    let catalog = SchemaCatalog::embedded().expect("catalog");
    catalog
        .add_writer_schema(1001, &read(V2_REMOVED_REQUIRED))
        .expect("add");
    let writer = parse(V2_REMOVED_REQUIRED);
    let Value::Record(mut fields) = encode_value_of(&common::samples()[1]) else {
        panic!("record")
    };
    fields.retain(|(name, _)| name != "etag");
    let mut bytes = frame_header(1001).to_vec();
    bytes.extend(
        GenericDatumWriter::builder(&writer)
            .build()
            .expect("writer")
            .write_value_to_vec(Value::Record(fields))
            .expect("datum"),
    );
    let err = catalog.decode(&bytes).expect_err("etag has no default");
    assert!(
        err.to_string()
            .starts_with("avro decode failed for schema id 1001: "),
        "{err}"
    );
    assert!(
        catalog
            .add_writer_schema(1002, "{\"type\":\"string\"}")
            .is_err(),
        "non-record writer schema"
    );
    assert!(
        catalog
            .add_writer_schema(
                1003,
                "{\"type\":\"record\",\"name\":\"other.Thing\",\"fields\":[]}"
            )
            .is_err(),
        "unknown record"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn decode_errors_have_context() {
    assert_eq!(
        decode(&[0, 0, 0]).expect_err("short").to_string(),
        "payload too short: 3 bytes"
    );
    assert_eq!(
        decode(&[]).expect_err("empty").to_string(),
        "payload too short: 0 bytes"
    );
    assert_eq!(
        decode(&[1, 0, 0, 0, 1, 0]).expect_err("magic").to_string(),
        "unknown magic byte 0x01"
    );
    assert_eq!(
        decode(&[0, 0, 0, 0, 77]).expect_err("id").to_string(),
        "unknown schema id 77"
    );
    let err = decode(&[0, 0, 0, 0, 5]).expect_err("empty body");
    assert!(
        err.to_string()
            .starts_with("avro decode failed for schema id 5: "),
        "{err}"
    );
    let mut bytes = encode(&common::samples()[0]).expect("encode");
    bytes.extend([1, 2, 3]);
    assert_eq!(
        decode(&bytes).expect_err("trailing").to_string(),
        "3 trailing bytes after the datum of schema id 1"
    );
}

fn zigzag_varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[test]
fn hostile_length_prefixes_are_refused_without_allocating() {
    init_avro_limits();
    assert_eq!(allocation_limit(), 16 * 1024 * 1024);
    // The first field on the wire is meta.event_id, a string: claim absurd lengths for it.
    for claimed in [1_i64 << 40, 64 * 1024 * 1024] {
        let mut bytes = frame_header(5).to_vec();
        bytes.extend(zigzag_varint(claimed));
        bytes.extend(b"0123456789");
        let err = decode(&bytes).expect_err("hostile length");
        let text = err.to_string();
        assert!(
            text.starts_with("avro decode failed for schema id 5: "),
            "{text}"
        );
        assert!(text.contains("maximum allowed: 16777216"), "{text}");
    }
    // Also for a map (UploadInitiated.metadata): block count of 2^40 entries.
    let event = &common::sparse_samples()[0];
    let good = encode(event).expect("encode");
    // sparse sample: metadata is empty, encoded as a single 0 byte just before expires_at.
    let expires = zigzag_varint(match &event.payload {
        EventPayload::UploadInitiated(p) => p.expires_at,
        _ => unreachable!(),
    });
    let cut = good.len() - expires.len() - 1;
    assert_eq!(good[cut], 0);
    let mut bytes = good[..cut].to_vec();
    bytes.extend(zigzag_varint(1 << 40));
    bytes.extend(b"k");
    let err = decode(&bytes).expect_err("hostile map");
    assert!(err.to_string().contains("maximum allowed"), "{err}");
}
