//! Topics: `stack/topics.tsv` against the `kafka_topic` resources.
//!
//! `stack/topics.tsv` is the declaration `tributary_runtime::topics::all()` embeds at compile
//! time (and the local stack creates); it is parsed here with the same rules so this crate
//! does not need the runtime's engines (librdkafka, the CQL driver, the S3 SDK) to build.

use std::collections::BTreeMap;
use std::path::Path;

use crate::terraform::{self, Terraform, display_path};
use crate::{Drift, LoadError};

/// One topic as the code declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
    /// `retention.ms`; `None` means kept forever (`-1`).
    pub retention_ms: Option<i64>,
}

/// Reads and parses the declaration file.
pub fn load_tsv(path: &Path) -> Result<Vec<TopicSpec>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_tsv(&text)
}

/// Parses `name<TAB>partitions<TAB>retention_ms<TAB>purpose` lines; `#` starts a comment line.
/// Same rules as `tributary_runtime::topics::parse`.
pub fn parse_tsv(text: &str) -> Result<Vec<TopicSpec>, LoadError> {
    let mut topics = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| LoadError::Tsv {
            line: index + 1,
            message,
        };
        let fields: Vec<&str> = line.split('\t').collect();
        let [name, partitions, retention, ..] = fields.as_slice() else {
            return Err(bad("expected 4 tab-separated fields".into()));
        };
        let partitions: i32 = partitions
            .parse()
            .map_err(|_| bad(format!("bad partition count '{partitions}'")))?;
        let retention: i64 = retention
            .parse()
            .map_err(|_| bad(format!("bad retention '{retention}'")))?;
        topics.push(TopicSpec {
            name: (*name).to_string(),
            partitions,
            retention_ms: (retention >= 0).then_some(retention),
        });
    }
    Ok(topics)
}

/// One `kafka_topic` resource as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerraformTopic {
    /// Where it is declared.
    pub file: String,
    /// `name`.
    pub name: String,
    /// `partitions`.
    pub partitions: i64,
    /// `config["retention.ms"]`, `-1` for forever.
    pub retention_ms: i64,
    /// `config["cleanup.policy"]`.
    pub cleanup_policy: Option<String>,
}

/// Reads every `resource "kafka_topic"`; values that are not literals become drifts.
pub fn terraform_topics(tf: &Terraform) -> (Vec<TerraformTopic>, Vec<Drift>) {
    let mut topics = Vec::new();
    let mut drifts = Vec::new();
    for (path, block) in tf.blocks("resource") {
        if terraform::label(block, 0) != Some("kafka_topic") {
            continue;
        }
        let file = display_path(path);
        let address = format!(
            "kafka_topic.{}",
            terraform::label(block, 1).unwrap_or("<unnamed>")
        );
        let not_literal = |what: &str| Drift::NotLiteral {
            file: file.clone(),
            what: format!("{address}.{what}"),
        };
        let Some(name) = terraform::attr(&block.body, "name").and_then(terraform::as_str) else {
            drifts.push(not_literal("name"));
            continue;
        };
        let Some(partitions) =
            terraform::attr(&block.body, "partitions").and_then(terraform::as_i64)
        else {
            drifts.push(not_literal("partitions"));
            continue;
        };
        let config = terraform::attr(&block.body, "config");
        let Some(retention_ms) = config
            .and_then(|config| terraform::object_get(config, "retention.ms"))
            .and_then(terraform::as_i64)
        else {
            drifts.push(not_literal("config[\"retention.ms\"]"));
            continue;
        };
        let cleanup_policy = config
            .and_then(|config| terraform::object_get(config, "cleanup.policy"))
            .and_then(terraform::as_str)
            .map(str::to_string);
        topics.push(TerraformTopic {
            file,
            name: name.to_string(),
            partitions,
            retention_ms,
            cleanup_policy,
        });
    }
    (topics, drifts)
}

/// Every difference between the declared topics and terraform's `kafka_topic` resources.
pub fn check_topics(code: &[TopicSpec], tf: &Terraform) -> Vec<Drift> {
    let (found, mut drifts) = terraform_topics(tf);
    let mut by_name: BTreeMap<&str, &TerraformTopic> = BTreeMap::new();
    for topic in &found {
        if by_name.insert(&topic.name, topic).is_some() {
            drifts.push(Drift::TopicDuplicate {
                name: topic.name.clone(),
                file: topic.file.clone(),
            });
        }
    }
    for spec in code {
        let Some(topic) = by_name.remove(spec.name.as_str()) else {
            drifts.push(Drift::TopicMissing {
                name: spec.name.clone(),
            });
            continue;
        };
        if i64::from(spec.partitions) != topic.partitions {
            drifts.push(Drift::TopicPartitions {
                name: spec.name.clone(),
                file: topic.file.clone(),
                code: spec.partitions,
                terraform: topic.partitions,
            });
        }
        let expected_retention = spec.retention_ms.unwrap_or(-1);
        if expected_retention != topic.retention_ms {
            drifts.push(Drift::TopicRetention {
                name: spec.name.clone(),
                file: topic.file.clone(),
                code: expected_retention,
                terraform: topic.retention_ms,
            });
        }
        if topic.cleanup_policy.as_deref() != Some("delete") {
            drifts.push(Drift::TopicCleanupPolicy {
                name: spec.name.clone(),
                file: topic.file.clone(),
                found: topic.cleanup_policy.clone(),
            });
        }
    }
    for (name, topic) in by_name {
        drifts.push(Drift::TopicExtra {
            name: name.to_string(),
            file: topic.file.clone(),
        });
    }
    drifts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, partitions: i32, retention_ms: Option<i64>) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            partitions,
            retention_ms,
        }
    }

    fn topic(name: &str, partitions: &str, retention: &str, cleanup: &str) -> String {
        format!(
            "resource \"kafka_topic\" \"t\" {{\n  name = \"{name}\"\n  partitions = {partitions}\n  \
             config = {{\n    \"retention.ms\" = \"{retention}\"\n    \"cleanup.policy\" = \"{cleanup}\"\n  }}\n}}\n"
        )
    }

    #[test]
    fn tsv_parses_like_the_runtime() {
        let topics = parse_tsv("# c\n\na\t12\t-1\tp\nb\t3\t86400000\tq\n").expect("valid");
        assert_eq!(
            topics,
            vec![spec("a", 12, None), spec("b", 3, Some(86_400_000))]
        );
        assert!(parse_tsv("a\t1\n").is_err());
        let error = parse_tsv("a\tx\t-1\tp\n").expect_err("bad count");
        assert!(error.to_string().contains("line 1"), "{error}");
    }

    #[test]
    fn matching_topics_have_no_drift() {
        let tf = Terraform::parse("t.tf", &topic("a", "12", "-1", "delete")).expect("hcl");
        assert_eq!(check_topics(&[spec("a", 12, None)], &tf), vec![]);
    }

    #[test]
    fn every_kind_of_difference_is_reported() {
        let text = [
            topic("a", "6", "-1", "delete"),
            topic("b", "3", "1000", "compact"),
            topic("extra", "1", "1", "delete"),
        ]
        .concat();
        let tf = Terraform::parse("t.tf", &text).expect("hcl");
        let drifts = check_topics(
            &[
                spec("a", 12, None),
                spec("b", 3, Some(2000)),
                spec("missing", 1, None),
            ],
            &tf,
        );
        let messages = crate::report(&drifts);
        assert_eq!(drifts.len(), 5, "{messages}");
        assert!(
            messages
                .contains("topic a: terraform (t.tf) creates 6 partitions, the code expects 12")
        );
        assert!(
            messages.contains(
                "topic b: terraform (t.tf) sets retention.ms 1000, the code expects 2000"
            )
        );
        assert!(
            messages.contains("topic b: terraform (t.tf) sets cleanup.policy Some(\"compact\")")
        );
        assert!(messages.contains("topic missing is declared"));
        assert!(messages.contains("topic extra (t.tf) is not declared"));
    }

    #[test]
    fn computed_partitions_are_reported_not_guessed() {
        let tf = Terraform::parse(
            "t.tf",
            "resource \"kafka_topic\" \"t\" {\n  name = \"a\"\n  partitions = var.p\n}\n",
        )
        .expect("hcl");
        let drifts = check_topics(&[spec("a", 12, None)], &tf);
        assert!(
            drifts.iter().any(|d| matches!(d, Drift::NotLiteral { what, .. } if what == "kafka_topic.t.partitions")),
            "{drifts:?}"
        );
    }
}
