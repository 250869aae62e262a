//! Registry mode ([`SchemaCatalog::from_registry`]) against a real Confluent-compatible Schema
//! Registry: Apicurio Registry 2.4 (in-memory storage), its Confluent API at
//! `http://127.0.0.1:8085/apis/ccompat/v7`, started by `./devstack test` (stack/registry.sh).
//! Without it running these tests fail; they do not skip.
//!
//! The registry keeps its schemas for as long as it runs, so every test here is repeatable
//! against the same process: registering an already registered schema returns its id.

mod common;

use std::path::PathBuf;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use serde_json::{Value as Json, json};
use tributary_schemas::registry::CONTENT_TYPE;
use tributary_schemas::*;

/// The Confluent-compatible API of the local registry.
const REGISTRY: &str = "http://127.0.0.1:8085/apis/ccompat/v7";

/// A subject outside RecordNameStrategy, holding a newer (compatible) PartConfirmed schema
/// that no catalog registers itself, so its id has to be fetched by id.
const FOREIGN_SUBJECT: &str = "tributary-test.part-confirmed-v2-compatible";

fn read(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn registry_catalog() -> SchemaCatalog {
    SchemaCatalog::from_registry(REGISTRY)
        .await
        .unwrap_or_else(|e| {
            panic!("schema registry at {REGISTRY} (start it with ./devstack engines): {e}")
        })
}

/// One registry call; returns HTTP status and JSON body.
async fn call(method: reqwest::Method, path: &str, body: Option<Json>) -> (u16, Json) {
    let url = format!("{REGISTRY}{path}");
    let mut request = reqwest::Client::new()
        .request(method.clone(), &url)
        .header(reqwest::header::ACCEPT, CONTENT_TYPE);
    if let Some(body) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.to_string());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}: {text}"));
    (status, json)
}

async fn get(path: &str) -> Json {
    let (status, body) = call(reqwest::Method::GET, path, None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

fn schema_body(path: &str) -> Json {
    json!({ "schema": read(path) })
}

/// `POST /compatibility/subjects/{subject}/versions/latest` with a schema file: the registry's
/// verdict, without registering anything.
async fn is_compatible(subject: &str, path: &str) -> bool {
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("/compatibility/subjects/{subject}/versions/latest"),
        Some(schema_body(path)),
    )
    .await;
    assert_eq!(status, 200, "{path}: {body}");
    body["is_compatible"].as_bool().expect("is_compatible")
}

#[tokio::test]
async fn frames_carry_registry_ids_and_a_second_catalog_decodes_them() {
    let producer = registry_catalog().await;
    let consumer = registry_catalog().await;
    assert!(producer.registry().is_some());
    for event in common::samples()
        .into_iter()
        .chain(common::sparse_samples())
    {
        let subject = event.kind().subject();
        let latest = get(&format!("/subjects/{subject}/versions/latest")).await;
        let registry_id = u32::try_from(latest["id"].as_u64().expect("id")).expect("u32");
        assert_eq!(latest["subject"], subject.as_str());

        let bytes = producer.encode(&event).expect("encode");
        let (id, _) = split_frame(&bytes).expect("frame");
        assert_eq!(id, registry_id, "{subject}: frame id is the registry's id");
        assert_eq!(producer.current_id(event.kind()), Some(registry_id));
        // Two catalogs built from the same registry agree on every id.
        assert_eq!(consumer.current_id(event.kind()), Some(registry_id));
        assert_eq!(consumer.decode_async(&bytes).await.expect("decode"), event);
    }
    // Ids are the registry's, not the manifest's: each event type has its own.
    let mut ids: Vec<u32> = EventType::ALL
        .iter()
        .map(|&t| producer.current_id(t).expect("id"))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), EventType::ALL.len());
}

#[tokio::test]
async fn the_registry_serves_each_writer_schema_by_id() {
    let catalog = registry_catalog().await;
    let client = catalog.registry().expect("registry-backed");
    for &event_type in EventType::ALL {
        let id = catalog.current_id(event_type).expect("id");
        let served = client
            .schema_by_id(id)
            .await
            .expect("GET /schemas/ids/{id}");
        let entry = Manifest::embedded()
            .expect("manifest")
            .latest(&event_type.subject())
            .expect("subject");
        assert_eq!(
            Schema::parse_str(&served).expect("served schema"),
            Schema::parse_str(&entry.schema).expect("manifest schema"),
            "{}",
            event_type.name()
        );
    }
    // An id nobody registered is the registry's 404, which decoding reports as unknown.
    let unknown = 999_999;
    assert_eq!(
        catalog
            .ensure_id(unknown)
            .await
            .expect_err("unknown")
            .to_string(),
        format!("unknown schema id {unknown}")
    );
}

#[tokio::test]
async fn subjects_follow_the_record_name_strategy() {
    registry_catalog().await;
    let subjects = get("/subjects").await;
    let subjects: Vec<&str> = subjects
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string"))
        .collect();
    for &event_type in EventType::ALL {
        let subject = event_type.subject();
        assert!(
            subjects.contains(&subject.as_str()),
            "{subject} missing in {subjects:?}"
        );
        let versions = get(&format!("/subjects/{subject}/versions")).await;
        assert!(!versions.as_array().expect("versions").is_empty());
    }
    assert!(
        !subjects.iter().any(|s| s.ends_with("-value")),
        "no TopicNameStrategy subjects: {subjects:?}"
    );
}

#[tokio::test]
async fn unknown_writer_ids_are_fetched_from_the_registry() {
    let catalog = registry_catalog().await;
    // A newer, compatible PartConfirmed (one more nullable field), registered by "someone else".
    let (status, body) = call(
        reqwest::Method::POST,
        &format!("/subjects/{FOREIGN_SUBJECT}/versions"),
        Some(schema_body(
            "tests/fixtures/part_confirmed.v2.compatible.avsc",
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v2_id = u32::try_from(body["id"].as_u64().expect("id")).expect("u32");
    assert!(!catalog.knows_id(v2_id));

    let event = common::samples()[1].clone();
    assert_eq!(event.kind(), EventType::PartConfirmed);
    let v1 = Schema::parse_str(&read("avro/part_confirmed.v1.avsc")).expect("v1");
    let v2 =
        Schema::parse_str(&read("tests/fixtures/part_confirmed.v2.compatible.avsc")).expect("v2");
    let v1_bytes = catalog.encode(&event).expect("encode");
    let (_, body) = split_frame(&v1_bytes).expect("frame");
    let Value::Record(mut fields) = GenericDatumReader::builder(&v1)
        .build()
        .expect("reader")
        .read_value(&mut &body[..])
        .expect("value")
    else {
        panic!("not a record")
    };
    fields.push((
        "checksum_crc32c".into(),
        Value::Union(1, Box::new(Value::String("yZRlqg==".into()))),
    ));
    let mut bytes = frame_header(v2_id).to_vec();
    bytes.extend(
        GenericDatumWriter::builder(&v2)
            .build()
            .expect("writer")
            .write_value_to_vec(Value::Record(fields))
            .expect("datum"),
    );

    assert!(matches!(
        catalog.decode(&bytes),
        Err(DecodeError::UnknownSchemaId(id)) if id == v2_id
    ));
    assert_eq!(catalog.decode_async(&bytes).await.expect("decode"), event);
    assert!(catalog.knows_id(v2_id));
}

#[tokio::test]
async fn the_registry_refuses_an_incompatible_change_under_full_compatibility() {
    let catalog = registry_catalog().await;
    let subject = EventType::PartConfirmed.subject();
    let id = catalog.current_id(EventType::PartConfirmed).expect("id");

    let (status, body) = call(
        reqwest::Method::PUT,
        &format!("/config/{subject}"),
        Some(json!({ "compatibility": "FULL" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        get(&format!("/config/{subject}")).await["compatibilityLevel"],
        "FULL"
    );
    let versions_before = get(&format!("/subjects/{subject}/versions")).await;

    assert!(is_compatible(&subject, "tests/fixtures/part_confirmed.v2.compatible.avsc").await);
    assert!(
        !is_compatible(
            &subject,
            "tests/fixtures/part_confirmed.v2.incompatible_added_required.avsc"
        )
        .await
    );
    assert!(
        !is_compatible(
            &subject,
            "tests/fixtures/part_confirmed.v2.incompatible_removed_required.avsc"
        )
        .await
    );

    for fixture in [
        "tests/fixtures/part_confirmed.v2.incompatible_added_required.avsc",
        "tests/fixtures/part_confirmed.v2.incompatible_removed_required.avsc",
    ] {
        let (status, body) = call(
            reqwest::Method::POST,
            &format!("/subjects/{subject}/versions"),
            Some(schema_body(fixture)),
        )
        .await;
        assert_eq!(status, 409, "{fixture} must be refused: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("ncompatible")),
            "{body}"
        );
    }
    // Nothing was registered; the catalog's schema is still the subject's latest.
    assert_eq!(
        get(&format!("/subjects/{subject}/versions")).await,
        versions_before
    );
    let latest = get(&format!("/subjects/{subject}/versions/latest")).await;
    assert_eq!(latest["id"].as_u64(), Some(u64::from(id)));
    assert_eq!(
        registry_catalog()
            .await
            .current_id(EventType::PartConfirmed),
        Some(id)
    );
}
