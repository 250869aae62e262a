//! `replay`: a tenant's whole history — its administration and its uploads' lifecycle — read
//! from offset 0 to the current end of the tenant's partitions, in log order.

use tributary_runtime::config::KafkaConfig;
use tributary_runtime::topics;
use tributary_schemas::SchemaCatalog;

use crate::OpsError;
use crate::log::{Decoded, Filter, ReadSpec, Reader, Start};
use crate::tail::partitions_for;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The tenant.
    pub tenant: String,
    /// Only this upload's events.
    pub upload: Option<String>,
    /// Include the transient progress topic too.
    pub progress: bool,
}

/// The tenant's events, each topic in log order (the order every consumer saw), the topics
/// merged by record timestamp without reordering any topic's own sequence.
pub async fn replay(
    config: &KafkaConfig,
    catalog: &SchemaCatalog,
    options: &ReplayOptions,
) -> Result<Vec<Decoded>, OpsError> {
    let filter = Filter {
        tenant: Some(options.tenant.clone()),
        upload: options.upload.clone(),
        event_type: None,
    };
    let mut sources = vec![topics::TENANT_ADMIN, topics::LIFECYCLE];
    if options.progress {
        sources.push(topics::PROGRESS);
    }
    let mut histories = Vec::new();
    for topic in sources {
        let spec = ReadSpec {
            topic: topic.to_string(),
            partitions: partitions_for(config, topic, &filter).await?,
            start: Start::Beginning,
            stop_at_end: true,
        };
        let mut reader = Reader::open(config, &spec).await?;
        let mut history = Vec::new();
        while let Some(record) = reader.next().await? {
            let decoded = Decoded::new(catalog, record).await;
            if filter.matches(&decoded) {
                history.push(decoded);
            }
        }
        histories.push(history);
    }
    Ok(merge(histories))
}

/// Merges sequences by timestamp, keeping each sequence's own order (a stable k-way merge:
/// the earliest head goes first, ties to the earlier sequence).
pub fn merge(histories: Vec<Vec<Decoded>>) -> Vec<Decoded> {
    let total = histories.iter().map(Vec::len).sum();
    let mut heads: Vec<std::iter::Peekable<std::vec::IntoIter<Decoded>>> = histories
        .into_iter()
        .map(|h| h.into_iter().peekable())
        .collect();
    let mut merged = Vec::with_capacity(total);
    loop {
        let next = heads
            .iter_mut()
            .enumerate()
            .filter_map(|(i, h)| h.peek().map(|d| (d.record.timestamp_ms.unwrap_or(0), i)))
            .min();
        let Some((_, index)) = next else {
            return merged;
        };
        if let Some(item) = heads.get_mut(index).and_then(Iterator::next) {
            merged.push(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Record;

    fn at(topic: &str, offset: i64, ts: i64) -> Decoded {
        Decoded {
            record: Record {
                topic: topic.into(),
                partition: 0,
                offset,
                timestamp_ms: Some(ts),
                key: None,
                payload: None,
                headers: Vec::new(),
            },
            event: Err("test".into()),
        }
    }

    #[test]
    fn merge_keeps_each_topics_order_even_with_skewed_clocks() {
        // Topic b's second record has an older timestamp than its first (another producer's
        // clock): it must still come after it.
        let merged = merge(vec![
            vec![at("a", 0, 10), at("a", 1, 30)],
            vec![at("b", 0, 20), at("b", 1, 5), at("b", 2, 40)],
        ]);
        let order: Vec<String> = merged
            .iter()
            .map(|d| format!("{}{}", d.record.topic, d.record.offset))
            .collect();
        assert_eq!(order, ["a0", "b0", "b1", "a1", "b2"]);
    }
}
