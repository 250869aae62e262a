//! The engines the API talks to, connected and checked once at start-up.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use scylla::client::session::Session;
use tributary_projections::read::ReadModels;
use tributary_runtime::events::{EventPublisher, load_catalog};
use tributary_runtime::kafka::Producer;
use tributary_runtime::presign::Presigner;
use tributary_runtime::telemetry::Telemetry;
use tributary_runtime::{Config, cql, s3, topics};
use tributary_schemas::Event;

use crate::auth::token::TokenSigner;
use crate::cache::TtlCache;
use crate::error::ApiError;
use crate::multipart::MultipartCreator;
use crate::rate_limit::RateLimiter;
use crate::settings::ApiSettings;
use crate::store::{Store, StoredKey, TenantPolicy};

/// How long cached keys and policies are trusted before they are read again.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// How long start-up waits for the first storage credentials (role credentials are fetched
/// from the ECS or instance endpoint).
const CREDENTIALS_WAIT: Duration = Duration::from_secs(15);

/// Shared by all request handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Loaded configuration.
    pub config: Arc<Config>,
    /// API-specific settings.
    pub settings: Arc<ApiSettings>,
    /// Publishes events; a 2xx is only returned once the broker acknowledged them.
    pub events: EventPublisher,
    /// CQL session (readiness checks).
    pub cql: Arc<Session>,
    /// The API's command-side tables.
    pub store: Arc<Store>,
    /// The projector's read models (status, listing).
    pub read: Arc<ReadModels>,
    /// S3 client for presigning and multipart management (never for object bytes).
    pub s3: aws_sdk_s3::Client,
    /// Signs part and object URLs (one HMAC per URL).
    pub presigner: Arc<Presigner>,
    /// Creates the multipart upload of each initiation (a presigned request, not the SDK).
    pub multipart: MultipartCreator,
    /// Signs and verifies browser tokens.
    pub signer: TokenSigner,
    /// Recently used API keys; a key revoked on another instance works here for at most
    /// `CACHE_TTL`.
    pub keys: Arc<TtlCache<String, Option<StoredKey>>>,
    /// Recently used tenant policies; likewise for policy changes.
    pub policies: Arc<TtlCache<String, Option<TenantPolicy>>>,
    /// Per-tenant request rate limits.
    pub limiter: Arc<RateLimiter>,
    /// Metrics exposition.
    pub telemetry: Telemetry,
}

impl AppState {
    /// Connects to Kafka, CQL and S3, failing with a clear message if any is unreachable.
    pub async fn connect(
        config: &Config,
        settings: ApiSettings,
        telemetry: Telemetry,
    ) -> anyhow::Result<Self> {
        let producer = Producer::new(&config.kafka, "ingest-api")?;
        producer
            .check_cluster(
                &config.kafka.brokers,
                &[topics::LIFECYCLE, topics::TENANT_ADMIN],
                Duration::from_millis(config.kafka.connect_timeout_ms),
            )
            .await?;
        let catalog = load_catalog(&config.kafka).await?;
        let cql = Arc::new(cql::connect(&config.cql).await?);
        let store = Store::open(
            cql.clone(),
            &config.cql.keyspace,
            config.cql.replication_factor,
        )
        .await
        .context("preparing the api's tables")?;
        tributary_projections::versions::ensure(
            &cql,
            &config.cql.keyspace,
            config.cql.replication_factor,
            1,
        )
        .await
        .context("preparing the read models")?;
        let read = ReadModels::prepare(&cql, &config.cql.keyspace)
            .await
            .context("preparing read-model queries")?;
        // One source for the SDK client and the presigner: one refresher of role credentials.
        let credentials = config.s3.credential_source();
        credentials
            .ready(CREDENTIALS_WAIT)
            .await
            .context("loading storage credentials")?;
        let s3 = s3::client_with(&config.s3, credentials.clone());
        s3::check_bucket(&s3, &config.s3)
            .await
            .context("checking storage")?;
        if settings.manage_bucket_cors
            && let Err(error) =
                s3::ensure_bucket_cors(&s3, &config.s3, &settings.cors_origins).await
        {
            // Browsers then cannot upload directly, but server-side clients still can.
            tracing::warn!(%error, "could not set the bucket's CORS rule");
        }
        let settings_rate = (settings.rate_limit_per_second, settings.rate_limit_burst);
        let presigner = Arc::new(Presigner::new(&config.s3, credentials)?);
        let multipart =
            MultipartCreator::new(presigner.clone()).context("creating the storage client")?;
        Ok(Self {
            presigner,
            multipart,
            config: Arc::new(config.clone()),
            signer: TokenSigner::new(settings.token_secret.as_bytes()),
            settings: Arc::new(settings),
            events: EventPublisher::new(producer, catalog),
            cql,
            store: Arc::new(store),
            read: Arc::new(read),
            s3,
            keys: Arc::new(TtlCache::new(CACHE_TTL)),
            policies: Arc::new(TtlCache::new(CACHE_TTL)),
            limiter: Arc::new(RateLimiter::new(settings_rate.0, settings_rate.1)),
            telemetry,
        })
    }

    /// Publishes `event` and waits for the broker's ack; an unavailable broker is a 503.
    /// Returns the event's time, which the API's own rows are written with.
    pub async fn publish(&self, event: &Event) -> Result<i64, ApiError> {
        self.events
            .publish(event)
            .await
            .map_err(|e| ApiError::unavailable("kafka", e))?;
        Ok(event.meta.occurred_at)
    }

    /// Flushes what is still queued for Kafka.
    pub fn close(&self) {
        self.events.producer().flush(Duration::from_secs(5));
    }

    /// `service@version`, the `producer` of every event the API emits.
    pub fn producer_name() -> &'static str {
        concat!("ingest-api@", env!("CARGO_PKG_VERSION"))
    }
}
