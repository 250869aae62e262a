//! `tributary`: uploads files straight to storage through Tributary's API — parts in
//! parallel, retried with backoff, resumable after Ctrl-C or a dropped network — and shows
//! uploads' state.
//!
//! Exit codes: 0 done; 1 local error (file unreadable, state not writable); 2 bad usage;
//! 3 refused by the API (bad input, quota, authentication, unknown upload); 4 API or storage
//! unavailable after retries; 5 the upload ended rejected, failed or expired; 130
//! interrupted (run the same command again to resume).

mod client;
mod state;
mod upload;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use client::{ApiError, Client};
use upload::{Options, UploadError};

/// Tributary from the command line.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
struct Cli {
    /// Base URL of the ingest-api.
    #[arg(
        long,
        env = "TRIBUTARY_API_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    api: String,
    /// API key (or tenant token) to authenticate with.
    #[arg(long, env = "TRIBUTARY_API_KEY", hide_env_values = true, global = true)]
    key: Option<String>,
    /// One JSON document per line instead of human output (for scripts).
    #[arg(long, global = true)]
    json: bool,
    /// Tries per request before giving up (backoff from 250 ms to 30 s between them).
    #[arg(long, default_value_t = 8, global = true)]
    retries: u32,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Uploads files (resuming an interrupted upload of the same file).
    Upload {
        /// Files to upload.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Parts in flight at once per file.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Content type to declare (default: guessed from the extension).
        #[arg(long)]
        content_type: Option<String>,
        /// Directory of the resumable state (default: $XDG_STATE_HOME/tributary).
        #[arg(long, env = "TRIBUTARY_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Average bytes per second to stay under, e.g. 10M (k, M, G: powers of 1024).
        #[arg(long, value_parser = parse_rate)]
        limit_rate: Option<u64>,
        /// After completion, follow each upload until it is ready (or rejected).
        #[arg(long)]
        wait: bool,
    },
    /// Shows an upload's state.
    Status {
        /// Upload id.
        id: String,
    },
    /// Lists the tenant's uploads, newest first.
    List {
        /// Uploads per page.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Cursor of the page to show (printed with the previous page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Prints an upload's state changes until it is ready, rejected or failed.
    Watch {
        /// Upload id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    },
}

/// The outcome classes behind the exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Exit {
    Ok = 0,
    Local = 1,
    Refused = 3,
    Unavailable = 4,
    Unsuccessful = 5,
    Interrupted = 130,
}

impl From<&ApiError> for Exit {
    fn from(error: &ApiError) -> Self {
        match error {
            ApiError::Refused { .. } => Exit::Refused,
            ApiError::Unavailable(_) => Exit::Unavailable,
        }
    }
}

impl From<&UploadError> for Exit {
    fn from(error: &UploadError) -> Self {
        match error {
            UploadError::Api(api) => api.into(),
            UploadError::Local { .. } | UploadError::Changed(_) => Exit::Local,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tributary: error: cannot start: {error}");
            return ExitCode::from(Exit::Local as u8);
        }
    };
    let exit = runtime.block_on(async {
        tokio::select! {
            exit = run(cli) => exit,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("tributary: interrupted; run the same command again to resume");
                Exit::Interrupted
            }
        }
    });
    ExitCode::from(exit as u8)
}

async fn run(cli: Cli) -> Exit {
    let Some(key) = cli.key.clone() else {
        eprintln!("tributary: error: an API key is required (--key or TRIBUTARY_API_KEY)");
        return Exit::Refused;
    };
    let client = match Client::new(&cli.api, &key, cli.retries) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("tributary: error: {error}");
            return Exit::Local;
        }
    };
    match cli.command {
        Command::Upload {
            files,
            parallel,
            content_type,
            state_dir,
            limit_rate,
            wait,
        } => {
            let options = Options {
                parallel,
                content_type,
                state_dir: state_dir.unwrap_or_else(state::default_dir),
                limit_rate,
            };
            upload_all(&client, &cli.api, &files, &options, wait, cli.json).await
        }
        Command::Status { id } => match client.status(&id).await {
            Ok(status) => {
                watch::print_status(&status, cli.json);
                Exit::Ok
            }
            Err(error) => fail(&error),
        },
        Command::List { limit, cursor } => match client.list(limit, cursor.as_deref()).await {
            Ok(page) => {
                watch::print_list(&page, cli.json);
                Exit::Ok
            }
            Err(error) => fail(&error),
        },
        Command::Watch { id, timeout } => watch_one(&client, &id, timeout, cli.json).await,
    }
}

async fn upload_all(
    client: &Client,
    api: &str,
    files: &[PathBuf],
    options: &Options,
    wait: bool,
    json: bool,
) -> Exit {
    let bars = MultiProgress::with_draw_target(if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template(
        "{prefix:20!} {bar:30} {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut worst = Exit::Ok;
    // Files one after another (each with its parts in parallel): the bars stay readable and
    // a failure names one file.
    for file in files {
        let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_prefix(file.display().to_string());
        match upload::upload(client, api, file, options, &bar).await {
            Ok(report) => {
                bar.finish_with_message(format!("done ({})", report.upload_id));
                if json {
                    println!("{}", serde_json::to_string(&report).unwrap_or_default());
                } else {
                    bars.suspend(|| {
                        println!("{}  {}", report.upload_id, report.file.display());
                    });
                }
                if wait {
                    worst = worst.max(watch_one(client, &report.upload_id, 3600, json).await);
                }
            }
            Err(error) => {
                bar.abandon_with_message("failed");
                bars.suspend(|| eprintln!("tributary: error: {error}"));
                worst = worst.max(Exit::from(&error));
            }
        }
    }
    worst
}

async fn watch_one(client: &Client, id: &str, timeout: u64, json: bool) -> Exit {
    match watch::watch(client, id, std::time::Duration::from_secs(timeout), json).await {
        Ok(true) => Exit::Ok,
        Ok(false) => Exit::Unsuccessful,
        Err(error) => fail(&error),
    }
}

fn fail(error: &ApiError) -> Exit {
    eprintln!("tributary: error: {error}");
    Exit::from(error)
}

/// `10M` -> 10 MiB/s; plain numbers are bytes per second.
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let number: u64 = number
        .parse()
        .map_err(|_| format!("not a rate: {text:?}"))?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown unit in {text:?} (k, M, G)")),
    };
    number
        .checked_mul(factor)
        .filter(|r| *r > 0)
        .ok_or_else(|| format!("rate out of range: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("10M"), Ok(10 << 20));
        assert_eq!(parse_rate("512k"), Ok(512 << 10));
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("5T").is_err());
    }

    #[test]
    fn the_worst_outcome_decides_the_exit_code() {
        assert!(Exit::Unavailable > Exit::Refused);
        assert_eq!(Exit::Ok.max(Exit::Refused), Exit::Refused);
    }
}
