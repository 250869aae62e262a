//! The projector's consumer: lifecycle, tenant-admin and progress events applied to the read
//! models, at least once, in consumer batches ([`Writer::apply_batch`]).
//!
//! [`run`] is the live projector: it projects into the active read-model version and follows
//! a switch to a new one. [`rebuild`] replays the log from offset 0 into a fresh version,
//! reports progress, and switches readers over once it has caught up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scylla::client::session::Session;
use tokio_util::sync::CancellationToken;
use tributary_runtime::events::load_catalog;
use tributary_runtime::kafka::{
    BatchHandler, BatchSettings, ConsumerSettings, EVENT_TYPE_HEADER, HandleError, Message,
    Producer, base_client_config, run_batch_consumer,
};
use tributary_runtime::{Config, cql, topics};
use tributary_schemas::{EventType, SchemaCatalog};

use crate::ProjectionError;
use crate::fold::{LogPosition, Writer};
use crate::versions;

/// Consumer group of the live projector (of version 1; version N uses `<group>-vN`).
pub const GROUP: &str = "tributary-projector";

/// How often the live projector checks which version is active.
const POINTER_POLL: Duration = Duration::from_secs(3);

/// The topics projected (of the progress topic, only each upload's latest report).
const TOPICS: &[&str] = &[topics::LIFECYCLE, topics::TENANT_ADMIN, topics::PROGRESS];

/// Batches of CQL writes in flight at once.
const WRITE_CONCURRENCY: usize = 64;

/// Connects and projects into the active version until `stop` is cancelled; when a rebuild
/// activates another version, continues there with that version's consumer group.
pub async fn run(
    config: &Config,
    group: &str,
    stop: CancellationToken,
) -> Result<(), ProjectionError> {
    let session = Arc::new(cql::connect(&config.cql).await?);
    let base = config.cql.keyspace.clone();
    let (dead_letters, catalog) = kafka(config).await?;
    while !stop.is_cancelled() {
        let version = versions::active(&session, &base).await.unwrap_or(1);
        versions::ensure(&session, &base, config.cql.replication_factor, version).await?;
        let keyspace = versions::keyspace_of(&base, version);
        let writer = Writer::prepare(&session, &keyspace).await?;
        let switched = stop.child_token();
        let watcher = tokio::spawn(watch_pointer(
            session.clone(),
            base.clone(),
            version,
            switched.clone(),
        ));
        let handler = Projector {
            session: session.clone(),
            writer,
            catalog: catalog.clone(),
            applied: None,
        };
        let group = versions::group_of(group, version);
        tracing::info!(%group, %keyspace, version, "projector running");
        let outcome = consume(config, &group, &dead_letters, handler, switched.clone()).await;
        watcher.abort();
        outcome?;
        if !stop.is_cancelled() {
            tracing::info!(
                from = version,
                "the active read-model version changed; following it"
            );
        }
    }
    dead_letters.flush(Duration::from_secs(5));
    Ok(())
}

async fn watch_pointer(
    session: Arc<Session>,
    base: String,
    version: i32,
    switched: CancellationToken,
) {
    loop {
        tokio::time::sleep(POINTER_POLL).await;
        if let Ok(active) = versions::active(&session, &base).await
            && active != version
        {
            switched.cancel();
            return;
        }
    }
}

async fn kafka(config: &Config) -> Result<(Producer, Arc<SchemaCatalog>), ProjectionError> {
    let dead_letters = Producer::new(&config.kafka, "projector").map_err(ProjectionError::kafka)?;
    dead_letters
        .check_cluster(
            &config.kafka.brokers,
            TOPICS,
            Duration::from_millis(config.kafka.connect_timeout_ms),
        )
        .await
        .map_err(ProjectionError::kafka)?;
    let catalog = load_catalog(&config.kafka)
        .await
        .map_err(ProjectionError::kafka)?;
    Ok((dead_letters, catalog))
}

async fn consume(
    config: &Config,
    group: &str,
    dead_letters: &Producer,
    handler: Projector,
    stop: CancellationToken,
) -> Result<(), ProjectionError> {
    let settings = ConsumerSettings::new(group, TOPICS);
    run_batch_consumer(
        &config.kafka,
        &settings,
        BatchSettings::default(),
        dead_letters,
        handler,
        stop,
    )
    .await
    .map_err(ProjectionError::kafka)
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The version built.
    pub version: i32,
    /// Its keyspace.
    pub keyspace: String,
    /// Events applied (at least: a redelivery after a restart counts again).
    pub events: u64,
    /// Whether readers were switched to it.
    pub activated: bool,
}

/// Options of [`rebuild`].
#[derive(Debug, Clone)]
pub struct RebuildOptions {
    /// Base consumer group (the version's group is derived from it).
    pub group: String,
    /// Switch readers and the live projector once caught up.
    pub activate: bool,
    /// How long to keep projecting after the switch, so live projectors (which join this
    /// version's consumer group) take over without a gap.
    pub handover: Duration,
}

impl Default for RebuildOptions {
    fn default() -> Self {
        Self {
            group: GROUP.to_string(),
            activate: true,
            handover: Duration::from_secs(10),
        }
    }
}

/// [`rebuild`] as the command-line tools run it (`projector rebuild`, `tributary-ops
/// rebuild`): progress lines on stderr, one summary line on stdout.
pub async fn rebuild_on_terminal(
    config: &Config,
    activate: bool,
) -> Result<RebuildReport, ProjectionError> {
    let options = RebuildOptions {
        activate,
        ..RebuildOptions::default()
    };
    let started = std::time::Instant::now();
    let report = rebuild(config, &options, |done, total| {
        eprintln!(
            "rebuild: {done} / {total} events ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    })
    .await?;
    println!(
        "rebuilt version {} in keyspace {} from {} events in {:.1} s; {}",
        report.version,
        report.keyspace,
        report.events,
        started.elapsed().as_secs_f64(),
        if report.activated {
            "readers switched to it"
        } else {
            "not activated"
        }
    );
    Ok(report)
}

/// Replays the projected topics from offset 0 into a new version, reporting progress through
/// `progress(applied, end)`; once every partition is caught up, activates it (optionally).
pub async fn rebuild(
    config: &Config,
    options: &RebuildOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<RebuildReport, ProjectionError> {
    let session = Arc::new(cql::connect(&config.cql).await?);
    let base = config.cql.keyspace.clone();
    let previous = versions::active(&session, &base).await?;
    let version = versions::existing(&session, &base)
        .await?
        .last()
        .copied()
        .unwrap_or(1)
        .max(previous)
        + 1;
    versions::ensure(&session, &base, config.cql.replication_factor, version).await?;
    let keyspace = versions::keyspace_of(&base, version);
    let (dead_letters, catalog) = kafka(config).await?;
    let applied: Arc<Mutex<HashMap<Partition, i64>>> = Arc::default();
    let handler = Projector {
        session: session.clone(),
        writer: Writer::prepare(&session, &keyspace).await?,
        catalog,
        applied: Some(applied.clone()),
    };
    let group = versions::group_of(&options.group, version);
    tracing::info!(%group, %keyspace, version, "rebuilding the read models from offset 0");
    let stop = CancellationToken::new();
    let consumer = tokio::spawn({
        let config = config.clone();
        let stop = stop.clone();
        async move { consume(&config, &group, &dead_letters, handler, stop).await }
    });
    let ends_reader = EndsReader::new(config)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if consumer.is_finished() {
            return Err(ProjectionError::Kafka(
                "the rebuild's consumer stopped early".into(),
            ));
        }
        let ends = ends_reader.ends().await?;
        let positions = applied.lock().map(|a| a.clone()).unwrap_or_default();
        let done: u64 = ends
            .iter()
            .map(|(p, (low, _))| positions.get(p).map_or(0, |o| (o + 1 - low).max(0) as u64))
            .sum();
        let total: u64 = ends
            .iter()
            .map(|(_, (low, high))| (high - low).max(0) as u64)
            .sum();
        progress(done, total);
        let caught_up = ends.iter().all(|(p, (low, high))| {
            high <= low || positions.get(p).is_some_and(|o| o + 1 >= *high)
        });
        if caught_up {
            break;
        }
    }
    let mut activated = false;
    if options.activate {
        activated = versions::activate(&session, &base, previous, version).await?;
        if activated {
            tracing::info!(version, "read models switched");
            tokio::time::sleep(options.handover).await;
        }
    }
    stop.cancel();
    consumer
        .await
        .map_err(|e| ProjectionError::Kafka(e.to_string()))??;
    let total_events = ends_reader
        .ends()
        .await?
        .values()
        .map(|(low, high)| (high - low).max(0) as u64)
        .sum();
    Ok(RebuildReport {
        version,
        keyspace,
        events: total_events,
        activated,
    })
}

/// A partition of a projected topic.
type Partition = (&'static str, i32);

/// Reads the low and high watermarks of the projected topics' partitions.
struct EndsReader {
    consumer: Arc<tributary_runtime::kafka::BaseConsumer>,
}

impl EndsReader {
    fn new(config: &Config) -> Result<Self, ProjectionError> {
        let consumer = tributary_runtime::kafka::create(
            &base_client_config(&config.kafka, "projector-rebuild-ends"),
            &config.kafka,
        )
        .map_err(ProjectionError::kafka)?;
        Ok(Self {
            consumer: Arc::new(consumer),
        })
    }

    async fn ends(&self) -> Result<HashMap<Partition, (i64, i64)>, ProjectionError> {
        use rdkafka::consumer::Consumer as _;
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            let mut ends = HashMap::new();
            for &topic in TOPICS {
                let metadata = consumer
                    .fetch_metadata(Some(topic), Duration::from_secs(10))
                    .map_err(ProjectionError::kafka)?;
                for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                    let marks = consumer
                        .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                        .map_err(ProjectionError::kafka)?;
                    ends.insert((topic, partition.id()), marks);
                }
            }
            Ok(ends)
        })
        .await
        .map_err(|e| ProjectionError::Kafka(e.to_string()))?
    }
}

/// Applies events to the read models, a consumer batch at a time.
struct Projector {
    session: Arc<Session>,
    writer: Writer,
    catalog: Arc<SchemaCatalog>,
    /// Highest offset applied per partition (rebuilds report progress from it).
    applied: Option<Arc<Mutex<HashMap<Partition, i64>>>>,
}

impl BatchHandler for Projector {
    async fn handle_batch(
        &mut self,
        messages: &[Message],
    ) -> Result<Vec<(usize, String)>, HandleError> {
        let mut events = Vec::with_capacity(messages.len());
        let mut poisoned = Vec::new();
        for (index, message) in messages.iter().enumerate() {
            // Forward compatibility: a type this build does not know (a newer producer's) is
            // skipped and counted, not treated as poison.
            let named = message
                .header(EVENT_TYPE_HEADER)
                .and_then(|v| std::str::from_utf8(v).ok());
            if let Some(name) = named.filter(|n| EventType::from_name(n).is_none()) {
                metrics::counter!("tributary_projector_unknown_events_total", "event_type" => name.to_string())
                    .increment(1);
                continue;
            }
            match tributary_runtime::events::decode(&self.catalog, message).await {
                Ok(event) => events.push((
                    event,
                    LogPosition {
                        partition: message.partition,
                        offset: message.offset,
                    },
                )),
                // Undecodable events go to the dead-letter topic; the log moves on.
                Err(error) => poisoned.push((index, error.to_string())),
            }
        }
        self.writer
            .apply_batch(&self.session, &events, WRITE_CONCURRENCY)
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        for (event, _) in &events {
            metrics::counter!("tributary_projector_events_total", "event_type" => event.event_type())
                .increment(1);
        }
        if let Some(applied) = &self.applied
            && let Ok(mut applied) = applied.lock()
        {
            for message in messages {
                let Some(&topic) = TOPICS.iter().find(|t| **t == message.topic) else {
                    continue;
                };
                let entry = applied.entry((topic, message.partition)).or_insert(-1);
                *entry = (*entry).max(message.offset);
            }
        }
        Ok(poisoned)
    }
}
