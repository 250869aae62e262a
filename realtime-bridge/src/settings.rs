//! Settings of the bridge beyond the shared runtime config: the `[bridge]` table of the config
//! file (or `TRIBUTARY_BRIDGE__*` variables), plus the token secret, read from the same
//! `[api] token_secret` key as the ingest-api so both verify tokens with one secret.

use figment::Figment;
use serde::Deserialize;
use tributary_runtime::{token, topics};

/// Tunables of the SSE fan-out.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct BridgeSettings {
    /// Seconds between heartbeat comments; proxies close idle connections after 30-60 s.
    pub heartbeat_secs: u64,
    /// How long before a token's expiry the stream sends `event: reauth`, seconds, so the
    /// page can fetch a fresh token and reconnect before the stream is closed.
    pub reauth_lead_secs: u64,
    /// Base of the `retry:` reconnect delay sent at connection start, milliseconds.
    pub retry_base_ms: u64,
    /// Random extra added to `retry_base_ms` per connection, so a restart of the bridge does
    /// not bring every browser back in the same millisecond.
    pub retry_jitter_ms: u64,
    /// Lifecycle frames buffered per tenant (shared by its subscribers); a subscriber further
    /// behind gets `event: reset` and resumes from the log. Each slot costs about 33 bytes per
    /// tenant with subscribers, allocated up front: with one browser per tenant, the rings are
    /// most of a connection's memory, so they are small; a reset loses nothing, and its
    /// catch-up is usually served from the resume window without a Kafka read. 16 (with
    /// `progress_buffer` 4) keeps 10,000 one-tenant connections at about 8,100 bytes each.
    pub lifecycle_buffer: usize,
    /// Progress frames buffered per tenant; a subscriber further behind loses the oldest, and
    /// gets each upload's latest progress instead (coalesced), so a few slots are enough.
    pub progress_buffer: usize,
    /// Catch-ups (reads of the log for a resume) running at once; each holds a Kafka
    /// consumer, so a reconnect storm is queued instead of opening thousands of them.
    pub max_concurrent_catchups: usize,
    /// Catch-ups one tenant may run at once (within `max_concurrent_catchups`): a tenant
    /// resuming many streams from far back queues behind itself, not in front of others.
    pub max_catchups_per_tenant: usize,
    /// Frames one catch-up step reads before handing them to the socket (from the log or
    /// the resume window).
    pub catchup_batch: usize,
    /// Bytes of recent lifecycle records kept in memory for resumes, for the whole process
    /// (split evenly over the lifecycle partitions; see [`crate::window`]). A resume,
    /// `reset` or history replay that starts inside a partition's window is served from it
    /// without a Kafka read. Counted per record: its encoded frame or Avro payload, its
    /// tenant id and about 120 bytes of bookkeeping, so the process never holds more than
    /// this (plus allocator slack). The default, 16 MiB, keeps the last 1,600 (as frames) to
    /// 3,300 (as payloads) `PartConfirmed` events of each of 12 partitions; 0 keeps nothing
    /// (every resume outside the window's tip reads the log).
    pub resume_window_bytes: usize,
    /// Longest wait for the log during a catch-up, seconds; the stream is closed after it
    /// (the browser reconnects with its `Last-Event-ID`, nothing is lost).
    pub catchup_timeout_secs: u64,
    /// Oldest history `/v1/uploads/{id}/events` replays, seconds: the history is found by the
    /// time in the upload's UUIDv7 id, and a forged old id must not make the bridge scan the
    /// whole (forever-retained) partition.
    pub history_max_age_secs: u64,
    /// Bind the listener with `SO_REUSEPORT`, so several bridge processes on one host share
    /// the port and the kernel spreads connections over them (each process holds at most
    /// its open-file limit of connections). Off by default: two bridges started on the same
    /// port by mistake would otherwise silently share it.
    pub reuse_port: bool,
    /// Kernel send buffer of each connection, bytes (`SO_SNDBUF`; Linux doubles it). Left to
    /// autotuning, a client that stops reading lets the kernel buffer up to `tcp_wmem`'s
    /// maximum (4 MiB by default) of stale frames per connection, and the bridge never sees
    /// it fall behind; bounded, the bridge notices within a few dozen frames and coalesces
    /// its progress or resets it. 64 KiB holds about a hundred lifecycle frames. 0 leaves it
    /// to the kernel.
    pub socket_send_buffer: usize,
    /// Serve HTTP/1.1 stream requests on the lean path (see [`crate::h1`]) instead of hyper:
    /// a fraction of the memory per idle connection. Off sends everything through axum.
    pub lean_http1: bool,
    /// Writer threads of the direct fan-out (see [`crate::fanout`]): each writes live frames
    /// to its share of a tenant's idle lean HTTP/1.1 streams. 0 (the default) means one per
    /// core, as many as the async runtime's workers.
    pub fanout_writers: usize,
    /// The lifecycle topic read. Only ever changed to point a bridge at a copy of the
    /// declared topic (the tests use dedicated topics to exercise retention).
    pub lifecycle_topic: String,
    /// The progress topic read (see `lifecycle_topic`).
    pub progress_topic: String,
}

impl BridgeSettings {
    /// `fanout_writers`, with 0 resolved to the number of cores.
    pub fn fanout_writers(&self) -> usize {
        match self.fanout_writers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

impl Default for BridgeSettings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 15,
            reauth_lead_secs: 30,
            retry_base_ms: 2_000,
            retry_jitter_ms: 3_000,
            lifecycle_buffer: 16,
            progress_buffer: 4,
            max_concurrent_catchups: 16,
            max_catchups_per_tenant: 4,
            catchup_batch: 256,
            catchup_timeout_secs: 10,
            history_max_age_secs: 7 * 24 * 3600,
            reuse_port: false,
            socket_send_buffer: 64 << 10,
            lean_http1: true,
            fanout_writers: 0,
            resume_window_bytes: 16 << 20,
            lifecycle_topic: topics::LIFECYCLE.to_string(),
            progress_topic: topics::PROGRESS.to_string(),
        }
    }
}

/// Everything the bridge reads beyond [`tributary_runtime::Config`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// Fan-out tunables.
    pub bridge: BridgeSettings,
    /// Secret that verifies browser tokens (`api.token_secret`, shared with the ingest-api).
    pub token_secret: String,
    /// Browser origins allowed by CORS (`api.cors_origins`, shared with the ingest-api: the
    /// pages that call the API subscribe here, from the same origins); `*` allows any.
    pub cors_origins: Vec<String>,
}

/// The ingest-api's default `api.cors_origins`: pages served by the local API.
fn default_cors_origins() -> Vec<String> {
    vec![
        "http://127.0.0.1:8080".into(),
        "http://localhost:8080".into(),
    ]
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value could not be parsed.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value parsed but makes no sense.
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// Dotted name of the setting.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Settings {
    /// Settings with defaults and `token_secret`.
    pub fn with_secret(token_secret: impl Into<String>) -> Self {
        Self {
            bridge: BridgeSettings::default(),
            token_secret: token_secret.into(),
            cors_origins: default_cors_origins(),
        }
    }

    /// Extracts `[bridge]` and `api.token_secret` from the layered configuration.
    pub fn load(figment: &Figment) -> Result<Self, SettingsError> {
        let parse = |e: figment::Error| SettingsError::Parse(e.to_string().to_lowercase());
        let bridge = match figment.find_value("bridge") {
            Ok(_) => figment.extract_inner("bridge").map_err(parse)?,
            Err(_) => BridgeSettings::default(),
        };
        let token_secret = match figment.find_value("api.token_secret") {
            Ok(_) => figment.extract_inner("api.token_secret").map_err(parse)?,
            Err(_) => token::DEV_SECRET.to_string(),
        };
        let cors_origins = match figment.find_value("api.cors_origins") {
            Ok(_) => figment.extract_inner("api.cors_origins").map_err(parse)?,
            Err(_) => default_cors_origins(),
        };
        let settings = Self {
            bridge,
            token_secret,
            cors_origins,
        };
        settings.validate()?;
        if settings.token_secret == token::DEV_SECRET {
            tracing::warn!(
                "using the development token secret; set TRIBUTARY_API__TOKEN_SECRET in production"
            );
        }
        Ok(settings)
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, reason| Err(SettingsError::Invalid { field, reason });
        if self.token_secret.len() < token::MIN_SECRET_LEN {
            return invalid("api.token_secret", "must be at least 32 bytes");
        }
        let b = &self.bridge;
        if b.heartbeat_secs == 0 {
            return invalid("bridge.heartbeat_secs", "must be at least 1");
        }
        if b.lifecycle_buffer == 0 || b.progress_buffer == 0 {
            return invalid(
                "bridge.lifecycle_buffer",
                "buffers must hold at least 1 frame",
            );
        }
        if b.max_concurrent_catchups == 0 || b.max_catchups_per_tenant == 0 || b.catchup_batch == 0
        {
            return invalid("bridge.max_concurrent_catchups", "must be at least 1");
        }
        if b.catchup_timeout_secs == 0 {
            return invalid("bridge.catchup_timeout_secs", "must be at least 1");
        }
        if b.lifecycle_topic.is_empty() || b.progress_topic.is_empty() {
            return invalid("bridge.lifecycle_topic", "topic names must not be empty");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::Serialized;

    #[test]
    fn reads_the_api_token_secret_and_bridge_table() {
        let figment = Figment::new()
            .merge(Serialized::default("api.token_secret", "x".repeat(40)))
            .merge(Serialized::default("bridge.heartbeat_secs", 5));
        let settings = Settings::load(&figment).expect("valid");
        assert_eq!(settings.token_secret, "x".repeat(40));
        assert_eq!(settings.bridge.heartbeat_secs, 5);
        assert_eq!(settings.bridge.lifecycle_buffer, 16);
        assert_eq!(settings.bridge.resume_window_bytes, 16 << 20);
        assert_eq!(settings.bridge.lifecycle_topic, topics::LIFECYCLE);
    }

    #[test]
    fn short_secrets_are_refused() {
        let figment = Figment::new().merge(Serialized::default("api.token_secret", "short"));
        let error = Settings::load(&figment).expect_err("short secret");
        assert!(error.to_string().contains("api.token_secret"), "{error}");
    }

    #[test]
    fn defaults_are_the_ingest_api_defaults() {
        let settings = Settings::load(&Figment::new()).expect("defaults");
        assert_eq!(settings.token_secret, token::DEV_SECRET);
    }
}
