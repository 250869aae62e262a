//! Keeps `infra/terraform` and the code from drifting apart.
//!
//! The code declares what the deployment must provide; terraform is hand-written HCL. This crate
//! parses both and reports every difference as a [`Drift`]:
//!
//! - [`topics`]: every topic of `stack/topics.tsv` (the file `tributary_runtime::topics` embeds)
//!   is a `kafka_topic` resource with the same partitions, retention and `cleanup.policy=delete`,
//!   and terraform declares no other topic;
//! - [`services`]: every binary of the workspace has exactly one instance of
//!   `modules/service`, and every instance runs a binary that exists;
//! - [`iam`]: the S3 actions each service is granted stay within an allow-list, and no IAM
//!   action reaches a service by another path.
//!
//! The rules themselves (which binary is not a service, which service may do what on which
//! keys) are data in the test that calls these checks (`tests/drift.rs`), so they read as a
//! table. HCL is read with `hcl-rs`, without evaluating it: the values the checks need must be
//! literals in the HCL, and a non-literal one is reported rather than guessed.

pub mod iam;
pub mod services;
pub mod terraform;
pub mod topics;

use std::path::PathBuf;

pub use terraform::Terraform;

/// Why an input could not be read at all (as opposed to a [`Drift`], which is a finding).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A `.tf` file is not valid HCL.
    #[error("{path} is not valid HCL: {source}")]
    Hcl {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: hcl::Error,
    },
    /// A Cargo manifest is not valid TOML.
    #[error("{path} is not valid TOML: {source}")]
    Toml {
        /// The manifest.
        path: PathBuf,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// The topic declaration has a malformed line.
    #[error("topic declaration line {line}: {message}")]
    Tsv {
        /// One-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// A Cargo manifest lacks something the binary discovery needs.
    #[error("{path}: {message}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is missing or unsupported.
        message: String,
    },
}

/// One difference between the code and terraform. The message names the topic, service or
/// action and the file, so a failing test says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Drift {
    /// A topic the code declares is not created by terraform.
    #[error("topic {name} is declared in stack/topics.tsv but no kafka_topic resource creates it")]
    TopicMissing {
        /// Topic name.
        name: String,
    },
    /// Terraform creates a topic the code does not declare.
    #[error("topic {name} ({file}) is not declared in stack/topics.tsv")]
    TopicExtra {
        /// Topic name.
        name: String,
        /// Where terraform declares it.
        file: String,
    },
    /// The same topic is created twice.
    #[error("topic {name} is created by more than one kafka_topic resource ({file})")]
    TopicDuplicate {
        /// Topic name.
        name: String,
        /// Where the second declaration is.
        file: String,
    },
    /// Partition counts differ.
    #[error(
        "topic {name}: terraform ({file}) creates {terraform} partitions, the code expects {code}"
    )]
    TopicPartitions {
        /// Topic name.
        name: String,
        /// Where terraform declares it.
        file: String,
        /// `stack/topics.tsv`.
        code: i32,
        /// Terraform.
        terraform: i64,
    },
    /// Retention differs (`None` is forever, `retention.ms = -1`).
    #[error(
        "topic {name}: terraform ({file}) sets retention.ms {terraform}, the code expects {code}"
    )]
    TopicRetention {
        /// Topic name.
        name: String,
        /// Where terraform declares it.
        file: String,
        /// `stack/topics.tsv`, as `retention.ms`.
        code: i64,
        /// Terraform's `retention.ms`.
        terraform: i64,
    },
    /// `cleanup.policy` is not `delete` (the lifecycle log is never compacted).
    #[error("topic {name}: terraform ({file}) sets cleanup.policy {found:?}, expected \"delete\"")]
    TopicCleanupPolicy {
        /// Topic name.
        name: String,
        /// Where terraform declares it.
        file: String,
        /// What terraform sets (`None`: not set, the broker default would apply).
        found: Option<String>,
    },
    /// A value a check needs is not a literal.
    #[error("{file}: {what} must be a literal so the drift test can read it")]
    NotLiteral {
        /// The file.
        file: String,
        /// Which block and attribute.
        what: String,
    },
    /// A binary of the workspace has no service module instance.
    #[error(
        "binary {binary} (package {package}) has no `module` using modules/service with name = \"{binary}\""
    )]
    ServiceMissing {
        /// Binary name.
        binary: String,
        /// Its package.
        package: String,
    },
    /// A service module instance runs a binary the workspace does not build.
    #[error("module {module} ({file}) deploys {name}, which is not a binary of the workspace")]
    ServiceUnknown {
        /// The module block's label.
        module: String,
        /// Its file.
        file: String,
        /// Its `name`.
        name: String,
    },
    /// Two service module instances run the same binary.
    #[error("binary {name} is deployed by more than one service module ({file})")]
    ServiceDuplicate {
        /// Binary name.
        name: String,
        /// Where the second one is.
        file: String,
    },
    /// A service has no IAM rule in the test's table.
    #[error(
        "service {service} has no row in the IAM rule table; add one before granting it anything"
    )]
    IamNoRule {
        /// The service.
        service: String,
    },
    /// A service is granted an S3 action on objects outside its allow-list.
    #[error(
        "service {service} ({file}) is granted {action} on {resource}, which its rule does not allow"
    )]
    IamObjectAction {
        /// The service.
        service: String,
        /// Its file.
        file: String,
        /// The action.
        action: String,
        /// The key pattern, relative to the bucket.
        resource: String,
    },
    /// A service is granted a bucket-level S3 action outside its allow-list.
    #[error(
        "service {service} ({file}) is granted {action} on the bucket, which its rule does not allow"
    )]
    IamBucketAction {
        /// The service.
        service: String,
        /// Its file.
        file: String,
        /// The action.
        action: String,
    },
    /// An IAM action appears where services could receive it without the allow-list seeing it.
    #[error(
        "{file}: IAM action {action} outside a service's s3_object_grants/s3_bucket_actions ({why})"
    )]
    IamStrayAction {
        /// The file.
        file: String,
        /// The action.
        action: String,
        /// Why it is not allowed there.
        why: String,
    },
}

/// Formats findings one per line, for assertion messages.
pub fn report(drifts: &[Drift]) -> String {
    drifts
        .iter()
        .map(|drift| format!("- {drift}"))
        .collect::<Vec<_>>()
        .join("\n")
}
