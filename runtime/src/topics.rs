//! The Kafka topics of Tributary, read from `stack/topics.tsv` so that the local stack,
//! the code and the deployment share one declaration.

use std::sync::OnceLock;

/// The declaration file, embedded at compile time.
const TOPICS_TSV: &str = include_str!("../../stack/topics.tsv");

pub use tributary_schemas::topics::{LIFECYCLE, MEDIA_JOBS, PROGRESS, TENANT_ADMIN};

/// Poison events with error headers, original key.
pub const DEAD_LETTERS: &str = "tributary.deadletter.v1";

/// One topic as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// `retention.ms`; `None` means kept forever (-1).
    pub retention_ms: Option<i64>,
}

/// All declared topics.
pub fn all() -> &'static [TopicSpec] {
    static TOPICS: OnceLock<Vec<TopicSpec>> = OnceLock::new();
    TOPICS.get_or_init(|| parse(TOPICS_TSV).expect("stack/topics.tsv is checked by a unit test"))
}

/// Looks a declared topic up by name.
pub fn spec(name: &str) -> Option<&'static TopicSpec> {
    all().iter().find(|t| t.name == name)
}

/// Parses the tab-separated declaration: `name partitions retention_ms purpose`.
pub fn parse(text: &str) -> Result<Vec<TopicSpec>, String> {
    let mut topics = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, partitions, retention, ..] = fields.as_slice() else {
            return Err(format!("line {}: expected 4 tab-separated fields", n + 1));
        };
        let partitions: i32 = partitions
            .parse()
            .map_err(|_| format!("line {}: bad partition count '{partitions}'", n + 1))?;
        let retention: i64 = retention
            .parse()
            .map_err(|_| format!("line {}: bad retention '{retention}'", n + 1))?;
        topics.push(TopicSpec {
            name: name.to_string(),
            partitions,
            retention_ms: (retention >= 0).then_some(retention),
        });
    }
    Ok(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declaration_parses_and_names_every_constant() {
        let topics = parse(TOPICS_TSV).expect("valid tsv");
        for name in [LIFECYCLE, TENANT_ADMIN, PROGRESS, MEDIA_JOBS, DEAD_LETTERS] {
            assert!(topics.iter().any(|t| t.name == name), "{name} not declared");
        }
        assert_eq!(topics.len(), 5);
    }

    #[test]
    fn retention_follows_the_design_brief() {
        let day = 86_400_000;
        assert_eq!(spec(LIFECYCLE).and_then(|t| t.retention_ms), None);
        assert_eq!(spec(TENANT_ADMIN).and_then(|t| t.retention_ms), None);
        assert_eq!(spec(PROGRESS).and_then(|t| t.retention_ms), Some(day));
        assert_eq!(spec(MEDIA_JOBS).and_then(|t| t.retention_ms), Some(7 * day));
        assert_eq!(
            spec(DEAD_LETTERS).and_then(|t| t.retention_ms),
            Some(30 * day)
        );
    }

    #[test]
    fn malformed_lines_are_errors() {
        assert!(parse("a\t1\n").is_err());
        assert!(parse("a\tx\t-1\tp\n").is_err());
    }
}
