//! Runtime plumbing shared by Tributary's binaries.
//!
//! - [`config`]: typed configuration with defaults matching the local stack.
//! - [`topics`]: the Kafka topics, as declared in `stack/topics.tsv`.
//! - [`kafka`]: idempotent producer and at-least-once consumer loop.
//! - [`events`]: publishing and decoding Avro events (Confluent wire format) on Kafka.
//! - [`cql`]: ScyllaDB/Cassandra session and versioned migrations.
//! - [`s3`]: the S3 client for Garage or any S3-compatible store.
//! - [`presign`]: fast SigV4 presigning of part and object URLs.
//! - [`aws_credentials`]: fixed keys, or AWS's default chain (ECS task role) kept fresh.
//! - [`telemetry`]: logs, Prometheus metrics, W3C trace context.
//! - [`shutdown`]: graceful shutdown on SIGTERM.
//! - [`testing`]: helpers for integration tests against the local stack.
//! - [`token`]: signed, tenant-scoped browser tokens (issued by the API, checked by the bridge).

pub mod aws_credentials;
pub mod config;
pub mod cql;
pub mod events;
pub mod kafka;
pub mod presign;
pub mod s3;
pub mod shutdown;
mod sigv4;
pub mod telemetry;
pub mod testing;
pub mod token;
pub mod topics;

pub use config::Config;
