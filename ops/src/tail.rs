//! `tail`: a topic's records as JSON lines, events decoded, filtered by tenant, upload or
//! event type. With a tenant filter on a tenant-keyed topic only the tenant's partition is
//! read.

use std::io::Write;
use std::time::Duration;

use tributary_runtime::config::KafkaConfig;
use tributary_runtime::kafka::partition_for;
use tributary_schemas::SchemaCatalog;

use crate::log::{Decoded, Filter, ReadSpec, Reader, Start, partition_count};
use crate::{OpsError, keyed_by_tenant};

/// What to tail and when to stop.
#[derive(Debug, Clone)]
pub struct TailOptions {
    /// The topic (full name).
    pub topic: String,
    /// Which records to print.
    pub filter: Filter,
    /// Where to start.
    pub start: Start,
    /// Stop after printing this many records.
    pub max: Option<u64>,
    /// Stop after this long.
    pub timeout: Option<Duration>,
    /// Stop at the end the log had when tailing started.
    pub to_end: bool,
}

/// Why tailing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// `max` records were printed.
    Max,
    /// The end of the log was reached (`to_end`).
    End,
    /// The timeout elapsed.
    Timeout,
}

/// The partitions worth reading for `filter`: the tenant's one on tenant-keyed topics.
pub async fn partitions_for(
    config: &KafkaConfig,
    topic: &str,
    filter: &Filter,
) -> Result<Option<Vec<i32>>, OpsError> {
    match &filter.tenant {
        Some(tenant) if keyed_by_tenant(topic) => {
            let count = partition_count(config, topic).await?;
            Ok(Some(vec![partition_for(tenant.as_bytes(), count)]))
        }
        _ => Ok(None),
    }
}

/// Prints matching records to `out`, one JSON object per line, until a stop condition holds.
pub async fn tail(
    config: &KafkaConfig,
    catalog: &SchemaCatalog,
    options: &TailOptions,
    out: &mut impl Write,
) -> Result<Stopped, OpsError> {
    let spec = ReadSpec {
        topic: options.topic.clone(),
        partitions: partitions_for(config, &options.topic, &options.filter).await?,
        start: options.start,
        stop_at_end: options.to_end,
    };
    let mut reader = Reader::open(config, &spec).await?;
    let deadline = options.timeout.map(|t| tokio::time::Instant::now() + t);
    let mut printed = 0u64;
    loop {
        if options.max.is_some_and(|max| printed >= max) {
            return Ok(Stopped::Max);
        }
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, reader.next()).await {
                Ok(next) => next?,
                Err(_) => return Ok(Stopped::Timeout),
            },
            None => reader.next().await?,
        };
        let Some(record) = next else {
            return Ok(Stopped::End);
        };
        let decoded = Decoded::new(catalog, record).await;
        if !options.filter.matches(&decoded) {
            continue;
        }
        writeln!(out, "{}", decoded.to_json())
            .and_then(|()| out.flush())
            .map_err(|e| OpsError::Invalid(format!("cannot write output: {e}")))?;
        printed += 1;
    }
}
