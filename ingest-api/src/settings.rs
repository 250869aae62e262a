//! Settings of the API beyond the shared runtime config: the `[api]` table of the config file,
//! or `TRIBUTARY_API__*` variables.

use serde::Deserialize;

/// Development defaults; production must set both secrets (start-up warns otherwise).
const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
const DEV_TOKEN_SECRET: &str = tributary_runtime::token::DEV_SECRET;

/// API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ApiSettings {
    /// Bearer token of the admin routes (`/v1/admin/...`).
    pub admin_token: String,
    /// Secret that signs browser tokens (at least 32 bytes).
    pub token_secret: String,
    /// Lifetime of presigned part URLs, seconds. Short: a leaked URL is useful briefly.
    pub part_url_ttl_secs: u64,
    /// Time an upload may stay unfinished before the janitor expires it, seconds.
    pub session_ttl_secs: u64,
    /// Part URLs returned by initiation; the rest come from `GET .../parts`.
    pub initial_part_urls: u32,
    /// Most part URLs one `GET .../parts` returns.
    pub max_part_urls_per_request: u32,
    /// Longest lifetime a browser token may ask for, seconds.
    pub max_token_ttl_secs: u64,
    /// Base URL of the realtime bridge, for `events_url`.
    pub events_base_url: String,
    /// Default policy of new tenants.
    pub default_max_file_size: i64,
    /// Default byte quota of new tenants.
    pub default_byte_quota: i64,
    /// Default concurrent-upload limit of new tenants.
    pub default_max_concurrent_uploads: i32,
    /// Largest request body, bytes (uploads never go through the API).
    pub max_body_bytes: usize,
    /// Sustained requests per second per tenant (per API instance).
    pub rate_limit_per_second: f64,
    /// Burst of requests a tenant may send at once.
    pub rate_limit_burst: f64,
    /// Browser origins allowed by CORS, e.g. `https://app.example.com`; `*` allows any.
    pub cors_origins: Vec<String>,
    /// Whether the API sets the bucket's CORS rule for `cors_origins` at start-up (handy
    /// locally; in production the deployment owns the bucket's CORS and the API's role may
    /// not be allowed to change it).
    pub manage_bucket_cors: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            admin_token: DEV_ADMIN_TOKEN.into(),
            token_secret: DEV_TOKEN_SECRET.into(),
            part_url_ttl_secs: 15 * 60,
            session_ttl_secs: 24 * 3600,
            initial_part_urls: 32,
            max_part_urls_per_request: 500,
            max_token_ttl_secs: 3600,
            events_base_url: "http://127.0.0.1:8081".into(),
            default_max_file_size: 8 << 30,
            default_byte_quota: 100 << 30,
            default_max_concurrent_uploads: 100,
            max_body_bytes: 64 * 1024,
            rate_limit_per_second: 500.0,
            rate_limit_burst: 1000.0,
            cors_origins: vec![
                "http://127.0.0.1:8080".into(),
                "http://localhost:8080".into(),
            ],
            manage_bucket_cors: true,
        }
    }
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: api.{field}: {reason}")]
pub struct SettingsError {
    field: &'static str,
    reason: &'static str,
}

impl ApiSettings {
    /// Extracts the `api` table from the layered configuration and checks it.
    pub fn load(figment: &figment::Figment) -> Result<Self, anyhow::Error> {
        let settings: Self = match figment.find_value("api") {
            Ok(_) => figment.extract_inner("api").map_err(|e| {
                anyhow::anyhow!("invalid configuration: {}", e.to_string().to_lowercase())
            })?,
            Err(_) => Self::default(),
        };
        settings.validate()?;
        if settings.admin_token == DEV_ADMIN_TOKEN || settings.token_secret == DEV_TOKEN_SECRET {
            tracing::warn!(
                "using development secrets; set TRIBUTARY_API__ADMIN_TOKEN and TRIBUTARY_API__TOKEN_SECRET in production"
            );
        }
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |field, reason| Err(SettingsError { field, reason });
        if self.admin_token.len() < 12 {
            return invalid("admin_token", "must be at least 12 characters");
        }
        if self.token_secret.len() < 32 {
            return invalid("token_secret", "must be at least 32 bytes");
        }
        if !(60..=7 * 24 * 3600).contains(&self.part_url_ttl_secs) {
            return invalid("part_url_ttl_secs", "must be between 60 s and 7 days");
        }
        if !(self.rate_limit_per_second > 0.0 && self.rate_limit_burst >= 1.0) {
            return invalid(
                "rate_limit_per_second",
                "rate must be positive and burst at least 1",
            );
        }
        if self.initial_part_urls == 0 || self.max_part_urls_per_request == 0 {
            return invalid("initial_part_urls", "part url counts must be at least 1");
        }
        Ok(())
    }
}
