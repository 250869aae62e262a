//! `tributary-ops`: the operators' command. Reads the event log decoded, re-drives dead
//! letters, reports consumer lag, rebuilds the read models and administers tenants.
//!
//! Kafka, Cassandra and the schema registry are found through the same configuration as the
//! services (`TRIBUTARY_CONFIG`, `TRIBUTARY_KAFKA__BROKERS`, `SCHEMA_REGISTRY_URL`, ...);
//! the ingest-api through `--api` / `TRIBUTARY_API_URL` and its admin token through
//! `--admin-token` / `TRIBUTARY_API__ADMIN_TOKEN`.
//!
//! Exit codes: 0 done; 1 failed (cluster unreachable, refused, not found); 2 bad usage.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tributary_ops::dlq::{self, Fix, ListFilter, Position, RedriveOptions};
use tributary_ops::lag::{self, LagOptions};
use tributary_ops::log::{Filter, Start};
use tributary_ops::replay::{self, ReplayOptions};
use tributary_ops::tail::{self, TailOptions};
use tributary_ops::tenant::{AdminClient, Policy, parse_bytes};
use tributary_ops::topic_name;
use tributary_runtime::Config;

/// Operating Tributary: the event log, dead letters, lag, read models and tenants.
#[derive(Debug, Parser)]
#[command(name = "tributary-ops", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Prints a topic's records as JSON lines, events decoded (follows new records).
    Tail {
        /// Topic: lifecycle, admin, progress, media-jobs, dlq, or a full topic name.
        topic: String,
        /// Only this tenant's records (reads only its partition on tenant-keyed topics).
        #[arg(long)]
        tenant: Option<String>,
        /// Only events about this upload.
        #[arg(long)]
        upload: Option<String>,
        /// Only events of this type, e.g. UploadReady.
        #[arg(long)]
        event_type: Option<String>,
        /// Start at the oldest retained record instead of the end.
        #[arg(long, conflicts_with = "offset")]
        from_beginning: bool,
        /// Start at this offset in every partition read.
        #[arg(long)]
        offset: Option<i64>,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        timeout: Option<u64>,
        /// Stop at the end the log had when tailing started.
        #[arg(long)]
        to_end: bool,
    },
    /// Prints a tenant's whole history (administration and uploads) in log order, as JSON
    /// lines.
    Replay {
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Only this upload's events.
        #[arg(long)]
        upload: Option<String>,
        /// Include the transient progress reports.
        #[arg(long)]
        progress: bool,
    },
    /// The dead-letter topic: list, show, re-drive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Consumer lag per group: committed offsets against the end of each partition.
    Lag {
        /// Only these groups (repeatable); default: every group.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Only these topics (repeatable); default: every declared topic.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// One JSON object per partition instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Rebuilds the read models from offset 0 into a new version, then switches readers to it.
    Rebuild {
        /// Build the new version but leave the current one active.
        #[arg(long)]
        no_switch: bool,
    },
    /// Tenant administration through the ingest-api.
    Tenant {
        /// Base URL of the ingest-api.
        #[arg(
            long,
            env = "TRIBUTARY_API_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        api: String,
        /// The API's admin token.
        #[arg(
            long,
            env = "TRIBUTARY_API__ADMIN_TOKEN",
            default_value = "dev-admin-token",
            hide_env_values = true,
            hide_default_value = true
        )]
        admin_token: String,
        #[command(subcommand)]
        command: TenantCommand,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Lists dead letters: where each came from, which group gave up, why.
    List {
        /// Only what this consumer group dead-lettered.
        #[arg(long)]
        group: Option<String>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Only those that came from this topic.
        #[arg(long)]
        topic: Option<String>,
        /// One JSON object per dead letter instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shows one dead letter in full (JSON), its event decoded when possible.
    Show {
        /// partition:offset in the dead-letter topic (a bare offset if unambiguous).
        position: Position,
    },
    /// Re-publishes a dead letter to the topic it came from, as it was or fixed.
    Redrive {
        /// partition:offset in the dead-letter topic (a bare offset if unambiguous).
        position: Position,
        /// A fixed event: JSON as `dlq show` prints under "event".
        #[arg(long, conflicts_with = "payload")]
        event: Option<PathBuf>,
        /// A fixed value: raw bytes (Confluent-framed Avro).
        #[arg(long)]
        payload: Option<PathBuf>,
        /// Publish to this topic instead of the original one.
        #[arg(long)]
        topic: Option<String>,
        /// Publish even if the value does not decode.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Creates a tenant; prints its id and first API key (shown once).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// Issues a new API key; `--revoke` revokes old ones once the new key is issued.
    RotateKey {
        /// The tenant id.
        tenant: String,
        /// Key ids to revoke after issuing the new key.
        #[arg(long = "revoke")]
        revoke: Vec<String>,
    },
    /// Changes a tenant's limits (quota, file size, types, concurrent uploads).
    SetQuota {
        /// The tenant id.
        tenant: String,
        #[command(flatten)]
        limits: Limits,
    },
    /// Shows a tenant's policy and usage.
    Show {
        /// The tenant id.
        tenant: String,
    },
}

#[derive(Debug, clap::Args)]
struct Limits {
    /// Largest file, e.g. 5G.
    #[arg(long, value_parser = parse_bytes)]
    max_file_size: Option<i64>,
    /// Bytes the tenant may hold, e.g. 100G.
    #[arg(long, value_parser = parse_bytes)]
    byte_quota: Option<i64>,
    /// Allowed content types, comma-separated (image/* patterns allowed).
    #[arg(long, value_delimiter = ',')]
    allowed_types: Option<Vec<String>>,
    /// Unfinished uploads at once.
    #[arg(long)]
    max_concurrent_uploads: Option<i32>,
}

impl Limits {
    fn policy(self, name: Option<String>) -> Policy {
        Policy {
            name,
            max_file_size: self.max_file_size,
            allowed_content_types: self.allowed_types,
            byte_quota: self.byte_quota,
            max_concurrent_uploads: self.max_concurrent_uploads,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tributary-ops: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tributary-ops: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The table of contents: one function per command.
async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Tail {
            topic,
            tenant,
            upload,
            event_type,
            from_beginning,
            offset,
            max,
            timeout,
            to_end,
        } => {
            let start = match (from_beginning, offset) {
                (true, _) => Start::Beginning,
                (false, Some(offset)) => Start::Offset(offset),
                (false, None) => Start::End,
            };
            let options = TailOptions {
                topic: topic_name(&topic).to_string(),
                filter: Filter {
                    tenant,
                    upload,
                    event_type,
                },
                start,
                max,
                timeout: timeout.map(Duration::from_secs),
                to_end,
            };
            run_tail(&options).await
        }
        Command::Replay {
            tenant,
            upload,
            progress,
        } => {
            run_replay(&ReplayOptions {
                tenant,
                upload,
                progress,
            })
            .await
        }
        Command::Dlq { command } => run_dlq(command).await,
        Command::Lag {
            groups,
            topics,
            json,
        } => {
            let topics = topics.iter().map(|t| topic_name(t).to_string()).collect();
            run_lag(&LagOptions { groups, topics }, json).await
        }
        Command::Rebuild { no_switch } => run_rebuild(!no_switch).await,
        Command::Tenant {
            api,
            admin_token,
            command,
        } => run_tenant(&AdminClient::new(&api, &admin_token)?, command).await,
    }
}

/// The services' configuration (engines, schema registry).
fn config() -> anyhow::Result<Config> {
    Ok(Config::load(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        0,
    )))?)
}

async fn catalog(
    config: &Config,
) -> anyhow::Result<std::sync::Arc<tributary_schemas::SchemaCatalog>> {
    Ok(tributary_runtime::events::load_catalog(&config.kafka).await?)
}

async fn run_tail(options: &TailOptions) -> anyhow::Result<()> {
    let config = config()?;
    let catalog = catalog(&config).await?;
    let mut out = std::io::stdout().lock();
    tail::tail(&config.kafka, &catalog, options, &mut out).await?;
    Ok(())
}

async fn run_replay(options: &ReplayOptions) -> anyhow::Result<()> {
    let config = config()?;
    let catalog = catalog(&config).await?;
    let history = replay::replay(&config.kafka, &catalog, options).await?;
    let mut out = std::io::stdout().lock();
    for decoded in &history {
        writeln!(out, "{}", decoded.to_json())?;
    }
    Ok(())
}

async fn run_dlq(command: DlqCommand) -> anyhow::Result<()> {
    let config = config()?;
    let catalog = catalog(&config).await?;
    let mut out = std::io::stdout().lock();
    match command {
        DlqCommand::List {
            group,
            tenant,
            topic,
            json,
        } => {
            let filter = ListFilter {
                group,
                tenant,
                topic: topic.map(|t| topic_name(&t).to_string()),
            };
            let letters = dlq::list(&config.kafka, &catalog, &filter).await?;
            if json {
                for letter in &letters {
                    writeln!(out, "{}", letter.summary())?;
                }
            } else {
                write!(out, "{}", dlq_table(&letters))?;
            }
        }
        DlqCommand::Show { position } => {
            let letter = dlq::get(&config.kafka, &catalog, position).await?;
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&letter.decoded.to_json())?
            )?;
        }
        DlqCommand::Redrive {
            position,
            event,
            payload,
            topic,
            force,
        } => {
            let fix = match (event, payload) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    let event = serde_json::from_str(&text).with_context(|| {
                        format!("{} is not an event as `dlq show` prints it", path.display())
                    })?;
                    Fix::Event(Box::new(event))
                }
                (None, Some(path)) => Fix::Payload(
                    std::fs::read(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?,
                ),
                (None, None) => Fix::None,
            };
            let letter = dlq::get(&config.kafka, &catalog, position).await?;
            let options = RedriveOptions {
                fix,
                topic: topic.map(|t| topic_name(&t).to_string()),
                force,
            };
            let sent = dlq::redrive(&config.kafka, &catalog, &letter, &options).await?;
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "redriven": letter.decoded.record.position(),
                    "topic": sent.topic,
                    "partition": sent.partition,
                    "offset": sent.offset,
                })
            )?;
        }
    }
    Ok(())
}

/// `dlq list` for a terminal: one line per dead letter.
fn dlq_table(letters: &[dlq::DeadLetter]) -> String {
    let mut out = String::new();
    for letter in letters {
        let summary = letter.summary();
        let text = |key: &str| summary[key].as_str().unwrap_or("-").to_string();
        out.push_str(&format!(
            "{}\t{}\t{}:{}:{}\t{}\t{}\t{}\n",
            text("dlq"),
            text("group"),
            text("topic"),
            summary["partition"],
            summary["offset"],
            text("event_type"),
            text("tenant_id"),
            text("error"),
        ));
    }
    if letters.is_empty() {
        out.push_str("no dead letters\n");
    }
    out
}

async fn run_lag(options: &LagOptions, json: bool) -> anyhow::Result<()> {
    let config = config()?;
    let rows = lag::lag(&config.kafka, options).await?;
    let mut out = std::io::stdout().lock();
    if json {
        for row in &rows {
            writeln!(out, "{}", serde_json::to_string(row)?)?;
        }
    } else {
        write!(out, "{}", lag::table(&rows))?;
    }
    Ok(())
}

async fn run_rebuild(activate: bool) -> anyhow::Result<()> {
    tributary_projections::projector::rebuild_on_terminal(&config()?, activate).await?;
    Ok(())
}

async fn run_tenant(client: &AdminClient, command: TenantCommand) -> anyhow::Result<()> {
    let answer = match command {
        TenantCommand::Create { name, limits } => client.create(&limits.policy(Some(name))).await?,
        TenantCommand::RotateKey { tenant, revoke } => {
            let issued = client.issue_key(&tenant).await?;
            for key_id in &revoke {
                client
                    .revoke_key(&tenant, key_id)
                    .await
                    .with_context(|| format!("new key issued, but revoking {key_id} failed"))?;
            }
            let mut answer = issued;
            answer["revoked"] = serde_json::json!(revoke);
            answer
        }
        TenantCommand::SetQuota { tenant, limits } => {
            client.set_policy(&tenant, &limits.policy(None)).await?
        }
        TenantCommand::Show { tenant } => client.show(&tenant).await?,
    };
    println!("{answer}");
    Ok(())
}
