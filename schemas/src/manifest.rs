//! The embedded schema manifest (`schemas/registry.json` plus every `.avsc` it names) and the
//! read-only registry view served by the ingest-api when no external registry is configured.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// `(path relative to schemas/, contents)` of an embedded schema file.
macro_rules! embed {
    ($path:literal) => {
        ($path, include_str!(concat!("../", $path)))
    };
}

/// Every schema file under `schemas/avro/`, embedded. Keep in sync with `registry.json`
/// (the `manifest_and_files_agree` test checks the directory, this table and the manifest).
pub(crate) const EMBEDDED_FILES: &[(&str, &str)] = &[
    embed!("avro/upload_initiated.v1.avsc"),
    embed!("avro/part_confirmed.v1.avsc"),
    embed!("avro/upload_completion_requested.v1.avsc"),
    embed!("avro/upload_assembled.v1.avsc"),
    embed!("avro/upload_validated.v1.avsc"),
    embed!("avro/upload_rejected.v1.avsc"),
    embed!("avro/variant_produced.v1.avsc"),
    embed!("avro/processing_failed.v1.avsc"),
    embed!("avro/upload_ready.v1.avsc"),
    embed!("avro/upload_aborted.v1.avsc"),
    embed!("avro/upload_expired.v1.avsc"),
    embed!("avro/upload_deleted.v1.avsc"),
    embed!("avro/tenant_created.v1.avsc"),
    embed!("avro/api_key_issued.v1.avsc"),
    embed!("avro/api_key_revoked.v1.avsc"),
    embed!("avro/quota_changed.v1.avsc"),
    embed!("avro/upload_progress.v1.avsc"),
    embed!("avro/media_job_requested.v1.avsc"),
];

/// The manifest file, embedded.
pub(crate) const MANIFEST_JSON: &str = include_str!("../registry.json");

/// An error in the embedded manifest or schema files (a build defect: the tests catch it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// `registry.json` is not valid.
    #[error("invalid schema manifest: {0}")]
    Manifest(String),
    /// The manifest names a file that is not embedded.
    #[error("manifest entry {id} names {file}, which is not embedded")]
    MissingFile {
        /// Schema id of the entry.
        id: u32,
        /// File it names.
        file: String,
    },
    /// Two entries share an id, or a subject+version.
    #[error("duplicate manifest entry: {0}")]
    Duplicate(String),
    /// A schema file does not parse as Avro.
    #[error("schema {file} is invalid: {reason}")]
    InvalidSchema {
        /// File of the schema.
        file: String,
        /// Parser's message.
        reason: String,
    },
    /// A schema's record full name differs from its subject, or names no known event type.
    #[error("schema {file} defines {found}, expected subject {subject}")]
    SubjectMismatch {
        /// File of the schema.
        file: String,
        /// Subject in the manifest.
        subject: String,
        /// Record full name found in the file.
        found: String,
    },
    /// An event type has no schema in the manifest.
    #[error("no schema for event type {0}")]
    MissingEventType(String),
}

#[derive(Debug, Deserialize)]
struct ManifestFile {
    schemas: Vec<ManifestFileEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFileEntry {
    id: u32,
    subject: String,
    version: u32,
    file: String,
}

/// One schema version of the manifest, with its schema text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SchemaVersion {
    /// Registry subject (the record full name).
    pub subject: String,
    /// Version within the subject, from 1.
    pub version: u32,
    /// Schema id, stable forever, used in the wire format.
    pub id: u32,
    /// The schema as compact JSON (the `.avsc` with insignificant whitespace removed; unlike
    /// Avro's Parsing Canonical Form it keeps docs, defaults and logical types, which readers
    /// need).
    pub schema: String,
    /// Path of the `.avsc` relative to `schemas/`.
    #[serde(skip)]
    pub file: String,
}

/// The embedded manifest: every schema version ever released, by id and by subject.
#[derive(Debug, Clone)]
pub struct Manifest {
    by_id: BTreeMap<u32, SchemaVersion>,
    /// subject -> version -> id
    subjects: BTreeMap<String, BTreeMap<u32, u32>>,
}

static EMBEDDED: LazyLock<Result<Manifest, CatalogError>> =
    LazyLock::new(|| Manifest::parse(MANIFEST_JSON, EMBEDDED_FILES));

impl Manifest {
    /// The manifest compiled into this binary.
    pub fn embedded() -> Result<&'static Manifest, CatalogError> {
        EMBEDDED.as_ref().map_err(Clone::clone)
    }

    /// Parses a manifest and the schema files it names (`files`: path relative to `schemas/`
    /// and contents). Checks ids and subject+versions are unique and every file parses with a
    /// record full name equal to its subject.
    pub fn parse(manifest_json: &str, files: &[(&str, &str)]) -> Result<Self, CatalogError> {
        let parsed: ManifestFile = serde_json::from_str(manifest_json)
            .map_err(|e| CatalogError::Manifest(e.to_string()))?;
        let mut by_id = BTreeMap::new();
        let mut subjects: BTreeMap<String, BTreeMap<u32, u32>> = BTreeMap::new();
        for entry in parsed.schemas {
            let text = files
                .iter()
                .find(|(path, _)| *path == entry.file)
                .map(|(_, text)| *text)
                .ok_or_else(|| CatalogError::MissingFile {
                    id: entry.id,
                    file: entry.file.clone(),
                })?;
            let schema =
                apache_avro::Schema::parse_str(text).map_err(|e| CatalogError::InvalidSchema {
                    file: entry.file.clone(),
                    reason: e.to_string(),
                })?;
            let found = record_full_name(&schema).unwrap_or_default();
            if found != entry.subject {
                return Err(CatalogError::SubjectMismatch {
                    file: entry.file,
                    subject: entry.subject,
                    found,
                });
            }
            if entry.id == 0 || entry.version == 0 {
                return Err(CatalogError::Manifest(format!(
                    "ids and versions start at 1 ({})",
                    entry.file
                )));
            }
            let versions = subjects.entry(entry.subject.clone()).or_default();
            if versions.insert(entry.version, entry.id).is_some() {
                return Err(CatalogError::Duplicate(format!(
                    "{} version {}",
                    entry.subject, entry.version
                )));
            }
            let version = SchemaVersion {
                subject: entry.subject,
                version: entry.version,
                id: entry.id,
                schema: minify_json(text),
                file: entry.file,
            };
            if by_id.insert(entry.id, version).is_some() {
                return Err(CatalogError::Duplicate(format!("id {}", entry.id)));
            }
        }
        Ok(Self { by_id, subjects })
    }

    /// Every schema version, by ascending id.
    pub fn entries(&self) -> impl Iterator<Item = &SchemaVersion> {
        self.by_id.values()
    }

    /// All subjects, sorted (`GET /subjects`).
    pub fn subjects(&self) -> Vec<&str> {
        self.subjects.keys().map(String::as_str).collect()
    }

    /// Versions of a subject, ascending (`GET /subjects/{s}/versions`); `None` if unknown.
    pub fn versions(&self, subject: &str) -> Option<Vec<u32>> {
        self.subjects
            .get(subject)
            .map(|versions| versions.keys().copied().collect())
    }

    /// Schema version by id (`GET /schemas/ids/{id}` serves its `schema`).
    pub fn by_id(&self, id: u32) -> Option<&SchemaVersion> {
        self.by_id.get(&id)
    }

    /// Schema version by subject and version (`GET /subjects/{s}/versions/{v}`).
    pub fn by_subject_version(&self, subject: &str, version: u32) -> Option<&SchemaVersion> {
        let id = self.subjects.get(subject)?.get(&version)?;
        self.by_id.get(id)
    }

    /// Latest version of a subject (`GET /subjects/{s}/versions/latest`).
    pub fn latest(&self, subject: &str) -> Option<&SchemaVersion> {
        let (_, id) = self.subjects.get(subject)?.last_key_value()?;
        self.by_id.get(id)
    }

    /// Resolves the `{v}` path segment of `/subjects/{s}/versions/{v}`: a positive version
    /// number, `latest` or `-1` (Confluent's alias for latest).
    pub fn by_subject_version_str(&self, subject: &str, version: &str) -> Option<&SchemaVersion> {
        match version {
            "latest" | "-1" => self.latest(subject),
            v => self.by_subject_version(subject, v.parse().ok()?),
        }
    }
}

/// Full name (`namespace.name`) of a record schema.
pub(crate) fn record_full_name(schema: &apache_avro::Schema) -> Option<String> {
    match schema {
        apache_avro::Schema::Record(record) => Some(record.name.fullname(None)),
        _ => None,
    }
}

/// Removes whitespace outside JSON strings, keeping key order and everything else as written.
pub(crate) fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minify_keeps_strings_intact() {
        let text = "{ \"a b\" : [ 1, \"x \\\" y\" ],\n \"c\": \"\\\\\" }";
        assert_eq!(
            minify_json(text),
            "{\"a b\":[1,\"x \\\" y\"],\"c\":\"\\\\\"}"
        );
        let reparsed: serde_json::Value =
            serde_json::from_str(&minify_json(text)).expect("valid json");
        let original: serde_json::Value = serde_json::from_str(text).expect("valid json");
        assert_eq!(reparsed, original);
    }

    #[test]
    fn embedded_table_matches_manifest() {
        let manifest = Manifest::embedded().expect("embedded manifest");
        let mut embedded: Vec<&str> = EMBEDDED_FILES.iter().map(|(path, _)| *path).collect();
        let mut listed: Vec<&str> = manifest.entries().map(|e| e.file.as_str()).collect();
        embedded.sort_unstable();
        listed.sort_unstable();
        assert_eq!(embedded, listed, "EMBEDDED_FILES and registry.json differ");
    }

    #[test]
    fn parse_rejects_bad_manifests() {
        let file = (
            "avro/x.avsc",
            "{\"type\":\"record\",\"name\":\"X\",\"namespace\":\"tributary.events\",\"fields\":[]}",
        );
        let ok = r#"{"schemas":[{"id":1,"subject":"tributary.events.X","version":1,"file":"avro/x.avsc"}]}"#;
        assert!(Manifest::parse(ok, &[file]).is_ok());
        let dup_id = r#"{"schemas":[{"id":1,"subject":"tributary.events.X","version":1,"file":"avro/x.avsc"},{"id":1,"subject":"tributary.events.X","version":2,"file":"avro/x.avsc"}]}"#;
        assert!(matches!(
            Manifest::parse(dup_id, &[file]),
            Err(CatalogError::Duplicate(_))
        ));
        let dup_version = r#"{"schemas":[{"id":1,"subject":"tributary.events.X","version":1,"file":"avro/x.avsc"},{"id":2,"subject":"tributary.events.X","version":1,"file":"avro/x.avsc"}]}"#;
        assert!(matches!(
            Manifest::parse(dup_version, &[file]),
            Err(CatalogError::Duplicate(_))
        ));
        let wrong_subject = r#"{"schemas":[{"id":1,"subject":"tributary.events.Y","version":1,"file":"avro/x.avsc"}]}"#;
        assert!(matches!(
            Manifest::parse(wrong_subject, &[file]),
            Err(CatalogError::SubjectMismatch { .. })
        ));
        let missing = r#"{"schemas":[{"id":1,"subject":"tributary.events.X","version":1,"file":"avro/y.avsc"}]}"#;
        assert!(matches!(
            Manifest::parse(missing, &[file]),
            Err(CatalogError::MissingFile { .. })
        ));
    }
}
