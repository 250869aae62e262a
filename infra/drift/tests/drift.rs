//! The drift test: `infra/terraform` against the code, with the rules written as tables.
//!
//! Runs in `cargo test --workspace` (so in `./devstack test` and CI), needs no engine, no
//! provider and no credentials. When it fails, the message names the topic, binary, service
//! or action and the file to fix.

use std::path::PathBuf;
use std::process::Command;

use tributary_infra_drift::iam::{self, ObjectGrant, S3Rule};
use tributary_infra_drift::services::{self, NotAService};
use tributary_infra_drift::topics::{self, TopicSpec};
use tributary_infra_drift::{Drift, Terraform, report};

// ---------------------------------------------------------------------------------------------
// The rules.
// ---------------------------------------------------------------------------------------------

/// Binaries of the workspace that are deliberately not deployed as services.
const NOT_SERVICES: &[NotAService] = &[
    NotAService {
        binary: "tributary",
        why: "the command-line client (cli/): run by users and operators, not a long-running service",
    },
    NotAService {
        binary: "tributary-ops",
        why: "the operations command (ops/): run by operators against Kafka and the read models, not a long-running service",
    },
];

/// Upload objects: `uploads/<tenant>/<upload>/original`.
const ORIGINALS: &str = "uploads/*/original";
/// Transformer output: `uploads/<tenant>/<upload>/variants/<name>`.
const VARIANTS: &str = "uploads/*/variants/*";
/// Everything of every upload (the janitor's deletions).
const ALL_UPLOADS: &str = "uploads/*";

/// What each service may do in S3; a grant outside its row fails the test. Key patterns are
/// relative to the bucket and compared as written.
const S3_RULES: &[S3Rule] = &[
    S3Rule {
        service: "ingest-api",
        objects: &[
            ObjectGrant {
                keys: ORIGINALS,
                // CreateMultipartUpload and presigned UploadPart are s3:PutObject in IAM.
                actions: &[
                    "s3:PutObject",
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",
                ],
            },
            ObjectGrant {
                keys: VARIANTS,
                // Only so its presigned variant URLs (GET /v1/uploads/{id}) are valid: a
                // presigned URL carries its signer's permissions. Never on originals.
                actions: &["s3:GetObject"],
            },
        ],
        // ListBucket authorizes HeadBucket (start-up, /readyz).
        bucket: &["s3:ListBucket", "s3:ListBucketMultipartUploads"],
        why: "presigns and manages multipart uploads; never reads an upload",
    },
    S3Rule {
        service: "assembler",
        objects: &[ObjectGrant {
            keys: ORIGINALS,
            // CompleteMultipartUpload is s3:PutObject; HeadObject + sha256 read are s3:GetObject.
            actions: &["s3:PutObject", "s3:GetObject"],
        }],
        bucket: &["s3:ListBucket"],
        why: "completes the multipart upload and verifies size and sha256",
    },
    S3Rule {
        service: "validator",
        objects: &[ObjectGrant {
            keys: ORIGINALS,
            actions: &["s3:GetObject"],
        }],
        bucket: &["s3:ListBucket"],
        why: "reads the original to sniff (and scan) it",
    },
    S3Rule {
        service: "transformer",
        objects: &[
            ObjectGrant {
                keys: ORIGINALS,
                actions: &["s3:GetObject"],
            },
            ObjectGrant {
                keys: VARIANTS,
                actions: &["s3:PutObject"],
            },
        ],
        bucket: &["s3:ListBucket"],
        why: "reads originals, writes variants, nothing else",
    },
    S3Rule {
        service: "janitor",
        objects: &[ObjectGrant {
            keys: ALL_UPLOADS,
            actions: &["s3:DeleteObject", "s3:AbortMultipartUpload"],
        }],
        bucket: &["s3:ListBucket"],
        why: "aborts expired sessions, deletes rejected and deleted uploads",
    },
    S3Rule {
        service: "projector",
        objects: &[],
        bucket: &[],
        why: "event log to read models: no storage access",
    },
    S3Rule {
        service: "realtime-bridge",
        objects: &[],
        bucket: &[],
        why: "event log to browsers: no storage access",
    },
];

/// The only Kafka actions a service's role may name (the module scopes them to the service's
/// own topics and groups). Creating, altering or deleting topics is terraform's job.
const KAFKA_ACTIONS: &[&str] = &[
    "kafka-cluster:Connect",
    "kafka-cluster:DescribeCluster",
    "kafka-cluster:WriteDataIdempotently",
    "kafka-cluster:DescribeTopic",
    "kafka-cluster:ReadData",
    "kafka-cluster:WriteData",
    "kafka-cluster:DescribeGroup",
    "kafka-cluster:AlterGroup",
];

/// Where a service could receive IAM actions other than through its checked grants.
const IAM_SCOPES: &[&str] = &["modules/service/", "environments/"];

// ---------------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------------

/// This crate's directory, read when the test runs (cargo sets it): a path baked in at compile
/// time would go stale when a shared target directory serves another checkout.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn repo() -> PathBuf {
    manifest_dir()
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn code_topics() -> Vec<TopicSpec> {
    topics::load_tsv(&repo().join("stack/topics.tsv")).expect("stack/topics.tsv")
}

fn terraform() -> Terraform {
    Terraform::load(&repo().join("infra/terraform")).expect("infra/terraform parses")
}

fn fixture(name: &str) -> Terraform {
    let path = manifest_dir().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    Terraform::parse(format!("infra/drift/tests/fixtures/{name}"), &text).expect("fixture parses")
}

fn assert_no_drift(what: &str, drifts: &[Drift]) {
    assert!(
        drifts.is_empty(),
        "{what}: infra/terraform drifted from the code:\n{}",
        report(drifts)
    );
}

// ---------------------------------------------------------------------------------------------
// The checks against the real tree.
// ---------------------------------------------------------------------------------------------

#[test]
fn terraform_creates_exactly_the_topics_the_code_declares() {
    let code = code_topics();
    assert_eq!(code.len(), 5, "stack/topics.tsv changed: {code:?}");
    assert_no_drift("topics", &topics::check_topics(&code, &terraform()));
}

#[test]
fn every_binary_has_exactly_one_service() {
    let binaries = services::workspace_binaries(&repo()).expect("workspace manifests");
    // Discovery must see the services, or an empty list would pass vacuously.
    for expected in [
        "ingest-api",
        "projector",
        "assembler",
        "validator",
        "transformer",
        "janitor",
        "realtime-bridge",
    ] {
        assert!(
            binaries.iter().any(|b| b.name == expected),
            "{expected} not found among the workspace's binaries {binaries:?}"
        );
    }
    assert_no_drift(
        "services",
        &services::check_services(&binaries, NOT_SERVICES, &terraform()),
    );
}

#[test]
fn every_service_is_granted_only_what_its_rule_allows() {
    let tf = terraform();
    // A renamed grant attribute would be silently absent: services that need S3 must have one.
    let (instances, _) = services::service_instances(&tf);
    for rule in S3_RULES.iter().filter(|rule| !rule.objects.is_empty()) {
        let instance = instances.iter().find(|i| i.name == rule.service);
        assert!(
            instance.is_some_and(|i| i
                .body
                .attributes()
                .any(|a| a.key.as_str() == iam::OBJECT_GRANTS)),
            "service {} has no {} attribute",
            rule.service,
            iam::OBJECT_GRANTS
        );
    }
    assert_no_drift("iam", &iam::check_s3(S3_RULES, &tf));
}

#[test]
fn no_iam_action_reaches_a_service_around_the_rules() {
    assert_no_drift(
        "iam",
        &iam::check_stray_actions(&terraform(), IAM_SCOPES, KAFKA_ACTIONS),
    );
}

#[test]
fn every_rule_belongs_to_a_deployed_service() {
    let tf = terraform();
    let (instances, _) = services::service_instances(&tf);
    for rule in S3_RULES {
        assert!(
            instances.iter().any(|i| i.name == rule.service),
            "S3_RULES has a row for {} ({}), but no service deploys it",
            rule.service,
            rule.why
        );
    }
}

/// The issue's two hard rules, stated on the table itself so loosening a row is visible.
#[test]
fn the_rule_table_keeps_the_issues_invariants() {
    let rule = |service: &str| {
        S3_RULES
            .iter()
            .find(|rule| rule.service == service)
            .expect("row")
    };
    // The ingest-api never reads an upload.
    for grant in rule("ingest-api").objects {
        if grant.actions.contains(&"s3:GetObject") {
            assert_eq!(grant.keys, VARIANTS, "ingest-api may read variants only");
        }
    }
    // The transformer reads originals and writes variants only.
    for grant in rule("transformer").objects {
        let expected: &[&str] = match grant.keys {
            ORIGINALS => &["s3:GetObject"],
            VARIANTS => &["s3:PutObject"],
            other => panic!("transformer has a grant on {other}"),
        };
        assert_eq!(grant.actions, expected, "transformer on {}", grant.keys);
    }
    assert!(
        rule("transformer")
            .bucket
            .iter()
            .all(|a| *a == "s3:ListBucket")
    );
}

// ---------------------------------------------------------------------------------------------
// Proof that the checks can fail.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_changed_partition_count_is_rejected_naming_the_topic() {
    let drifts = topics::check_topics(&code_topics(), &fixture("topics_partitions_changed.tf"));
    assert_eq!(
        drifts,
        vec![Drift::TopicPartitions {
            name: "tributary.media.jobs.v1".into(),
            file: "infra/drift/tests/fixtures/topics_partitions_changed.tf".into(),
            code: 12,
            terraform: 6,
        }],
        "{}",
        report(&drifts)
    );
    let message = drifts[0].to_string();
    assert!(message.contains("tributary.media.jobs.v1"), "{message}");
    assert!(message.contains("6 partitions"), "{message}");
}

#[test]
fn an_ingest_api_that_reads_originals_is_rejected() {
    let drifts = iam::check_s3(S3_RULES, &fixture("ingest_api_reads_originals.tf"));
    assert_eq!(
        drifts,
        vec![Drift::IamObjectAction {
            service: "ingest-api".into(),
            file: "infra/drift/tests/fixtures/ingest_api_reads_originals.tf".into(),
            action: "s3:GetObject".into(),
            resource: ORIGINALS.into(),
        }],
        "{}",
        report(&drifts)
    );
}

#[test]
fn a_binary_without_a_service_is_rejected() {
    let binaries = services::workspace_binaries(&repo()).expect("workspace manifests");
    let tf = terraform();
    let mut without_janitor = tf.clone();
    for file in &mut without_janitor.files {
        file.body.0.retain(|structure| {
            structure.as_block().is_none_or(|block| {
                !(block.identifier.as_str() == "module"
                    && block.labels.first().map(|l| l.as_str()) == Some("janitor"))
            })
        });
    }
    let drifts = services::check_services(&binaries, NOT_SERVICES, &without_janitor);
    assert!(
        matches!(drifts.as_slice(), [Drift::ServiceMissing { binary, .. }] if binary == "janitor"),
        "{}",
        report(&drifts)
    );
}

// ---------------------------------------------------------------------------------------------
// Formatting, where a terraform binary exists.
// ---------------------------------------------------------------------------------------------

/// `terraform fmt -check` (or `tofu fmt -check`) over the tree and the fixtures, when one of
/// them is installed; says so and passes when neither is (formatting needs no provider, so it
/// runs offline; `validate` does not: it needs `init` to download providers).
#[test]
fn terraform_is_fmt_clean() {
    let Some(tool) = ["terraform", "tofu"].into_iter().find(|tool| {
        Command::new(tool)
            .arg("version")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .is_ok_and(|out| out.status.success())
    }) else {
        eprintln!("neither terraform nor tofu is installed: fmt check skipped");
        return;
    };
    for dir in ["infra/terraform", "infra/drift/tests/fixtures"] {
        let output = Command::new(tool)
            .args(["fmt", "-check", "-recursive", "-diff", "-no-color"])
            .arg(repo().join(dir))
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .expect("run fmt");
        assert!(
            output.status.success(),
            "`{tool} fmt -check` fails on {dir}:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
    }
}
