//! Consumer lag: for each consumer group, the committed offset of every partition it has
//! committed on, against the partition's end (high watermark).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tributary_runtime::config::KafkaConfig;
use tributary_runtime::kafka::{BaseConsumer, base_client_config, create};

use crate::OpsError;

/// How long one request to the cluster may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One partition of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LagRow {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The group's committed offset (the next record it will read).
    pub committed: i64,
    /// The partition's end (offset of the next record produced).
    pub end: i64,
    /// Records not yet consumed: `end - committed`.
    pub lag: i64,
}

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct LagOptions {
    /// These groups; empty means every group the cluster knows.
    pub groups: Vec<String>,
    /// These topics; empty means every declared topic (`stack/topics.tsv`).
    pub topics: Vec<String>,
}

/// The lag of every (group, topic, partition) with a committed offset, sorted.
pub async fn lag(config: &KafkaConfig, options: &LagOptions) -> Result<Vec<LagRow>, OpsError> {
    let config = config.clone();
    let options = options.clone();
    tokio::task::spawn_blocking(move || lag_blocking(&config, &options))
        .await
        .map_err(OpsError::kafka)?
}

fn lag_blocking(config: &KafkaConfig, options: &LagOptions) -> Result<Vec<LagRow>, OpsError> {
    let admin: BaseConsumer =
        create(&base_client_config(config, "tributary-ops"), config).map_err(OpsError::kafka)?;
    let groups = if options.groups.is_empty() {
        let list = admin
            .fetch_group_list(None, REQUEST_TIMEOUT)
            .map_err(OpsError::kafka)?;
        let mut names: Vec<String> = list.groups().iter().map(|g| g.name().to_string()).collect();
        names.sort();
        names
    } else {
        options.groups.clone()
    };
    let topics: Vec<String> = if options.topics.is_empty() {
        tributary_runtime::topics::all()
            .iter()
            .map(|t| t.name.clone())
            .collect()
    } else {
        options.topics.clone()
    };
    // Every partition of the topics, with its end.
    let mut ends: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut all = TopicPartitionList::new();
    for topic in &topics {
        let metadata = admin
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(OpsError::kafka)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(OpsError::NoSuchTopic(topic.clone()));
        }
        for partition in partitions {
            let (_, high) = admin
                .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                .map_err(OpsError::kafka)?;
            ends.insert((topic.clone(), partition), high);
            all.add_partition(topic, partition);
        }
    }
    let mut rows = Vec::new();
    for group in groups {
        // A client of the group that never joins it: OffsetFetch only.
        let mut member = base_client_config(config, "tributary-ops");
        member
            .set("group.id", &group)
            .set("enable.auto.commit", "false");
        let member: BaseConsumer = create(&member, config).map_err(OpsError::kafka)?;
        let committed = member
            .committed_offsets(all.clone(), REQUEST_TIMEOUT)
            .map_err(|e| OpsError::Kafka(format!("committed offsets of group {group}: {e}")))?;
        for element in committed.elements() {
            let Offset::Offset(offset) = element.offset() else {
                continue;
            };
            let end = ends
                .get(&(element.topic().to_string(), element.partition()))
                .copied()
                .unwrap_or(offset);
            rows.push(LagRow {
                group: group.clone(),
                topic: element.topic().to_string(),
                partition: element.partition(),
                committed: offset,
                end,
                lag: (end - offset).max(0),
            });
        }
    }
    rows.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    Ok(rows)
}

/// The rows as an aligned table, each group followed by its total.
pub fn table(rows: &[LagRow]) -> String {
    let headings = ["GROUP", "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"];
    let mut lines: Vec<[String; 6]> = vec![headings.map(str::to_string)];
    let mut index = 0;
    while index < rows.len() {
        let group = &rows[index].group;
        let mut total = 0;
        while index < rows.len() && &rows[index].group == group {
            let row = &rows[index];
            total += row.lag;
            lines.push([
                row.group.clone(),
                row.topic.clone(),
                row.partition.to_string(),
                row.committed.to_string(),
                row.end.to_string(),
                row.lag.to_string(),
            ]);
            index += 1;
        }
        lines.push([
            group.clone(),
            "(total)".into(),
            String::new(),
            String::new(),
            String::new(),
            total.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, width))| {
                if c >= 2 {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_columns_and_totals_each_group() {
        let row = |group: &str, partition, committed, end| LagRow {
            group: group.into(),
            topic: "t".into(),
            partition,
            committed,
            end,
            lag: end - committed,
        };
        let text = table(&[row("a", 0, 5, 8), row("a", 1, 2, 2), row("bb", 0, 0, 10)]);
        assert_eq!(
            text,
            "GROUP  TOPIC    PARTITION  COMMITTED  END  LAG\n\
             a      t                0          5    8    3\n\
             a      t                1          2    2    0\n\
             a      (total)                               3\n\
             bb     t                0          0   10   10\n\
             bb     (total)                              10\n"
        );
    }
}
