//! The engines the API talks to, connected and checked once at start-up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scylla::client::session::Session;
use tributary_runtime::kafka::Producer;
use tributary_runtime::telemetry::Telemetry;
use tributary_runtime::{Config, cql, s3, topics};

/// Shared by all request handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Loaded configuration.
    pub config: Arc<Config>,
    /// Idempotent producer; a 2xx is only returned once its send was acknowledged.
    pub producer: Producer,
    /// CQL session to the read models.
    pub cql: Arc<Session>,
    /// S3 client for presigning and multipart management (never for object bytes).
    pub s3: aws_sdk_s3::Client,
    /// Metrics exposition.
    pub telemetry: Telemetry,
}

impl AppState {
    /// Connects to Kafka, CQL and S3, failing with a clear message if any is unreachable.
    pub async fn connect(config: &Config, telemetry: Telemetry) -> anyhow::Result<Self> {
        let producer = Producer::new(&config.kafka, "ingest-api")?;
        producer
            .check_cluster(
                &config.kafka.brokers,
                &[topics::LIFECYCLE, topics::TENANT_ADMIN],
                Duration::from_millis(config.kafka.connect_timeout_ms),
            )
            .await?;
        let cql = cql::connect(&config.cql).await?;
        let s3 = s3::client(&config.s3);
        s3::check_bucket(&s3, &config.s3)
            .await
            .context("checking storage")?;
        Ok(Self {
            config: Arc::new(config.clone()),
            producer,
            cql: Arc::new(cql),
            s3,
            telemetry,
        })
    }

    /// Flushes what is still queued for Kafka.
    pub fn close(&self) {
        self.producer.flush(Duration::from_secs(5));
    }
}
