//! Typed configuration: defaults that match the local stack (`./devstack up`), overridden by an
//! optional TOML file (`TRIBUTARY_CONFIG`) and then by environment variables.
//!
//! Environment variables use the `TRIBUTARY_` prefix and `__` between levels, e.g.
//! `TRIBUTARY_KAFKA__BROKERS=10.0.0.1:9092`, `TRIBUTARY_S3__ENDPOINT=https://s3.example.com`.
//! `SCHEMA_REGISTRY_URL` is also honoured, as the design brief names it.

use std::net::SocketAddr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source (file or environment) could not be parsed into the typed config. Kept as
    /// text: figment's error repeats itself when printed as a cause chain.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A value parsed but makes no sense (e.g. an empty broker list).
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// Dotted name of the offending setting, as in the TOML file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Everything a Tributary binary needs to reach the engines.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    /// Kafka and schema settings.
    pub kafka: KafkaConfig,
    /// ScyllaDB / Cassandra settings.
    pub cql: CqlConfig,
    /// S3-compatible storage settings.
    pub s3: S3Config,
    /// The binary's own HTTP listener (API, SSE, or `/metrics` + health for consumers).
    pub http: HttpConfig,
    /// Logging and tracing.
    pub telemetry: TelemetryConfig,
}

/// Kafka connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` bootstrap list.
    pub brokers: String,
    /// Confluent-compatible schema registry; `None` uses the ids of `schemas/registry.json`.
    pub schema_registry_url: Option<String>,
    /// How long a produce may take before the caller gets an error (librdkafka's
    /// `message.timeout.ms`): a request handler must answer 503 in bounded time.
    pub delivery_timeout_ms: u64,
    /// How long start-up waits for the cluster's metadata before giving up.
    pub connect_timeout_ms: u64,
    /// Encryption and authentication towards the brokers (plaintext locally; TLS with IAM or
    /// SCRAM on MSK).
    #[serde(default)]
    pub security: KafkaSecurity,
}

/// How clients connect to the brokers: librdkafka's `security.protocol`, `sasl.mechanism`
/// and friends, typed and checked at start-up.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KafkaSecurity {
    /// Transport and authentication layer.
    pub protocol: KafkaProtocol,
    /// SASL mechanism; required with the `sasl_*` protocols.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (`plain`, `scram-sha-256`, `scram-sha-512`).
    pub username: Option<String>,
    /// SASL password (same mechanisms). Comes from a secret, never from a committed file.
    pub password: Option<String>,
    /// PEM file of the CA that signed the brokers' certificates; the system's CA store when
    /// unset (MSK's certificates are publicly trusted).
    pub ca_location: Option<String>,
    /// Signing region of `aws-msk-iam` (the cluster's region).
    pub aws_region: Option<String>,
    /// Any further librdkafka properties, passed verbatim (e.g. `ssl.endpoint.identification.algorithm`).
    /// Applied last, so they win over the settings above.
    pub properties: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_location", &self.ca_location)
            .field("aws_region", &self.aws_region)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// librdkafka's `security.protocol`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaProtocol {
    /// No encryption, no authentication (the local stack).
    #[default]
    Plaintext,
    /// TLS without SASL.
    Ssl,
    /// SASL without TLS (tests only: credentials cross the network in the clear with `plain`).
    SaslPlaintext,
    /// SASL over TLS (MSK with IAM or SCRAM).
    SaslSsl,
}

/// SASL mechanism.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SaslMechanism {
    /// User name and password in the clear (inside TLS).
    Plain,
    /// SCRAM with SHA-256.
    #[serde(rename = "scram-sha-256")]
    ScramSha256,
    /// SCRAM with SHA-512 (MSK's SCRAM).
    #[serde(rename = "scram-sha-512")]
    ScramSha512,
    /// MSK IAM: an OAUTHBEARER token that is a SigV4-presigned `kafka-cluster:Connect`
    /// request, signed with the default AWS credential chain (the ECS task role).
    AwsMskIam,
}

/// CQL (ScyllaDB, or Cassandra locally) connection settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CqlConfig {
    /// `host:port` contact points.
    pub contact_points: Vec<String>,
    /// Keyspace of the read models.
    pub keyspace: String,
    /// Replication factor used when the keyspace is created (1 locally, 3 in production).
    pub replication_factor: u8,
    /// How long start-up waits for a connection before giving up.
    pub connect_timeout_ms: u64,
}

/// S3-compatible storage settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct S3Config {
    /// Endpoint URL; `None` means AWS's regional endpoint.
    pub endpoint: Option<String>,
    /// Signing region (Garage's default is `garage`).
    pub region: String,
    /// Bucket that holds originals and variants under `uploads/<tenant>/`.
    pub bucket: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Path-style addressing (`endpoint/bucket/key`), needed by local servers without
    /// wildcard DNS.
    pub force_path_style: bool,
    /// Where signing keys come from: `static` uses the two keys above; `aws` uses AWS's
    /// default credential chain (environment, ECS task role, instance profile, web identity)
    /// and ignores them.
    #[serde(default)]
    pub credentials: S3Credentials,
}

/// Source of the S3 signing keys.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum S3Credentials {
    /// `s3.access_key_id` and `s3.secret_access_key`.
    #[default]
    Static,
    /// AWS's default credential chain, refreshed before expiry.
    Aws,
}

impl S3Config {
    /// The credential source these settings name (starts a refresher for `aws`).
    pub fn credential_source(&self) -> crate::aws_credentials::CredentialSource {
        match self.credentials {
            S3Credentials::Static => crate::aws_credentials::CredentialSource::fixed(
                &self.access_key_id,
                &self.secret_access_key,
            ),
            S3Credentials::Aws => {
                crate::aws_credentials::CredentialSource::default_chain(&self.region)
            }
        }
    }
}

/// The binary's HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HttpConfig {
    /// Address to bind.
    pub listen: SocketAddr,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Pretty,
    /// One JSON object per line for log shippers.
    Json,
}

/// Logging and tracing settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TelemetryConfig {
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directive used when `RUST_LOG` is unset.
    pub log_filter: String,
    /// OTLP/HTTP collector to export traces to, e.g. `http://127.0.0.1:4318` (spans are
    /// posted to `<endpoint>/v1/traces`, JSON-encoded); `None` exports nothing, and trace
    /// context still flows through Kafka headers.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
}

impl Config {
    /// Defaults that reach the engines started by `./devstack up`; `listen` is the binary's
    /// own default address.
    pub fn local(listen: SocketAddr) -> Self {
        Self {
            kafka: KafkaConfig {
                brokers: "127.0.0.1:9092".into(),
                schema_registry_url: None,
                delivery_timeout_ms: 10_000,
                connect_timeout_ms: 10_000,
                security: KafkaSecurity::default(),
            },
            cql: CqlConfig {
                contact_points: vec!["127.0.0.1:9042".into()],
                keyspace: "tributary".into(),
                replication_factor: 1,
                connect_timeout_ms: 10_000,
            },
            s3: S3Config {
                endpoint: Some("http://127.0.0.1:3900".into()),
                region: "garage".into(),
                bucket: "tributary".into(),
                access_key_id: "GK747269627574617279646576".into(),
                secret_access_key:
                    "6465762d6f6e6c792d7365637265742d666f722d6c6f63616c2d737461636b21".into(),
                force_path_style: true,
                credentials: S3Credentials::Static,
            },
            http: HttpConfig { listen },
            telemetry: TelemetryConfig {
                log_format: LogFormat::Pretty,
                log_filter: "info".into(),
                otlp_endpoint: None,
            },
        }
    }

    /// Loads defaults, then `TRIBUTARY_CONFIG` (a TOML file) if set, then the environment,
    /// and validates the result.
    pub fn load(default_listen: SocketAddr) -> Result<Self, ConfigError> {
        Self::from_figment(Self::figment(default_listen))
    }

    /// The layered sources, exposed so tests can inject values.
    pub fn figment(default_listen: SocketAddr) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Self::local(default_listen)));
        if let Ok(path) = std::env::var("TRIBUTARY_CONFIG") {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("TRIBUTARY_").split("__"));
        if let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL") {
            figment = figment.merge(("kafka.schema_registry_url", url));
        }
        figment
    }

    /// Extracts and validates a config from any figment.
    pub fn from_figment(figment: Figment) -> Result<Self, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(e.to_string().to_lowercase()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_string(),
        };
        if self.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers", "must name at least one host:port"));
        }
        for broker in self.kafka.brokers.split(',') {
            if !is_host_port(broker.trim()) {
                return Err(ConfigError::Invalid {
                    field: "kafka.brokers",
                    reason: format!("'{broker}' is not host:port"),
                });
            }
        }
        if let Some(url) = &self.kafka.schema_registry_url
            && !is_http_url(url)
        {
            return Err(invalid(
                "kafka.schema_registry_url",
                "must be an http(s) URL",
            ));
        }
        self.kafka.security.validate()?;
        if self.cql.contact_points.is_empty() {
            return Err(invalid(
                "cql.contact_points",
                "must name at least one host:port",
            ));
        }
        if let Some(bad) = self.cql.contact_points.iter().find(|p| !is_host_port(p)) {
            return Err(ConfigError::Invalid {
                field: "cql.contact_points",
                reason: format!("'{bad}' is not host:port"),
            });
        }
        if !is_cql_identifier(&self.cql.keyspace) {
            return Err(invalid(
                "cql.keyspace",
                "must be 1-48 letters, digits or underscores, starting with a letter",
            ));
        }
        if self.cql.replication_factor == 0 {
            return Err(invalid("cql.replication_factor", "must be at least 1"));
        }
        match &self.s3.endpoint {
            Some(url) if !is_http_url(url) => {
                return Err(invalid("s3.endpoint", "must be an http(s) URL"));
            }
            _ => {}
        }
        if let Some(url) = &self.telemetry.otlp_endpoint
            && !is_http_url(url)
        {
            return Err(invalid("telemetry.otlp_endpoint", "must be an http(s) URL"));
        }
        if self.s3.bucket.is_empty() {
            return Err(invalid("s3.bucket", "must not be empty"));
        }
        if self.s3.region.is_empty() {
            return Err(invalid("s3.region", "must not be empty"));
        }
        Ok(())
    }
}

impl KafkaSecurity {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_string(),
        };
        let sasl = matches!(
            self.protocol,
            KafkaProtocol::SaslPlaintext | KafkaProtocol::SaslSsl
        );
        match (sasl, self.sasl_mechanism) {
            (true, None) => {
                return Err(invalid(
                    "kafka.security.sasl_mechanism",
                    "is required with a sasl_* protocol",
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "kafka.security.sasl_mechanism",
                    "needs protocol sasl_ssl (or sasl_plaintext)",
                ));
            }
            _ => {}
        }
        let needs_password = matches!(
            self.sasl_mechanism,
            Some(SaslMechanism::Plain | SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512)
        );
        if needs_password
            && (self.username.as_deref().unwrap_or("").is_empty()
                || self.password.as_deref().unwrap_or("").is_empty())
        {
            return Err(invalid(
                "kafka.security.username",
                "username and password are required by this sasl mechanism",
            ));
        }
        if self.sasl_mechanism == Some(SaslMechanism::AwsMskIam) {
            if self.protocol != KafkaProtocol::SaslSsl {
                return Err(invalid(
                    "kafka.security.protocol",
                    "aws-msk-iam needs sasl_ssl: the token must not cross the network in the clear",
                ));
            }
            if self.aws_region.as_deref().unwrap_or("").is_empty() {
                return Err(invalid(
                    "kafka.security.aws_region",
                    "is required by aws-msk-iam",
                ));
            }
        }
        Ok(())
    }
}

fn is_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

/// Keyspace names are interpolated into CQL, so only plain identifiers are accepted.
pub(crate) fn is_cql_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && s.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }

    fn with(key: &str, value: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Serialized::defaults(Config::local(listen()))).merge((key, value)),
        )
    }

    #[test]
    fn defaults_match_the_local_stack_and_validate() {
        let config =
            Config::from_figment(Figment::from(Serialized::defaults(Config::local(listen()))))
                .expect("defaults are valid");
        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            config.cql.contact_points,
            vec!["127.0.0.1:9042".to_string()]
        );
        assert_eq!(config.s3.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
    }

    #[test]
    fn overrides_replace_defaults() {
        let config = with("kafka.brokers", "10.1.2.3:9094").expect("valid");
        assert_eq!(config.kafka.brokers, "10.1.2.3:9094");
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (key, value, field) in [
            ("kafka.brokers", "", "kafka.brokers"),
            ("kafka.brokers", "localhost", "kafka.brokers"),
            ("kafka.brokers", "a:1,b:notaport", "kafka.brokers"),
            ("s3.endpoint", "ftp://x", "s3.endpoint"),
            ("s3.endpoint", "", "s3.endpoint"),
            ("cql.keyspace", "drop table;", "cql.keyspace"),
            (
                "kafka.schema_registry_url",
                "registry",
                "kafka.schema_registry_url",
            ),
            (
                "telemetry.otlp_endpoint",
                "collector:4318",
                "telemetry.otlp_endpoint",
            ),
        ] {
            let err = with(key, value).expect_err(value);
            let msg = err.to_string();
            assert!(msg.contains(field), "{key}={value}: {msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }

    #[test]
    fn kafka_security_combinations_are_checked() {
        let load = |pairs: &[(&str, &str)]| {
            let mut figment = Figment::from(Serialized::defaults(Config::local(listen())));
            for (key, value) in pairs {
                figment = figment.merge((*key, *value));
            }
            Config::from_figment(figment)
        };
        for (pairs, field) in [
            (
                &[("kafka.security.protocol", "sasl_ssl")][..],
                "kafka.security.sasl_mechanism",
            ),
            (
                &[("kafka.security.sasl_mechanism", "scram-sha-512")][..],
                "kafka.security.sasl_mechanism",
            ),
            (
                &[
                    ("kafka.security.protocol", "sasl_ssl"),
                    ("kafka.security.sasl_mechanism", "scram-sha-512"),
                    ("kafka.security.username", "svc"),
                ][..],
                "kafka.security.username",
            ),
            (
                &[
                    ("kafka.security.protocol", "sasl_plaintext"),
                    ("kafka.security.sasl_mechanism", "aws-msk-iam"),
                    ("kafka.security.aws_region", "eu-west-1"),
                ][..],
                "kafka.security.protocol",
            ),
            (
                &[
                    ("kafka.security.protocol", "sasl_ssl"),
                    ("kafka.security.sasl_mechanism", "aws-msk-iam"),
                ][..],
                "kafka.security.aws_region",
            ),
        ] {
            let err = load(pairs).expect_err(field).to_string();
            assert!(err.contains(field), "{pairs:?}: {err}");
            assert!(!err.contains("unknown variant"), "{pairs:?}: {err}");
        }
        let msk = load(&[
            ("kafka.security.protocol", "sasl_ssl"),
            ("kafka.security.sasl_mechanism", "aws-msk-iam"),
            ("kafka.security.aws_region", "eu-west-1"),
            ("s3.credentials", "aws"),
        ])
        .expect("the production settings are valid");
        assert_eq!(msk.s3.credentials, S3Credentials::Aws);
        assert!(
            !format!(
                "{:?}",
                load(&[
                    ("kafka.security.protocol", "sasl_ssl"),
                    ("kafka.security.sasl_mechanism", "scram-sha-512"),
                    ("kafka.security.username", "svc"),
                    ("kafka.security.password", "hunter2-secret"),
                ])
                .expect("scram")
            )
            .contains("hunter2-secret"),
            "passwords are not printed"
        );
    }

    #[test]
    fn type_errors_are_reported_not_panicked() {
        let err = with("cql.replication_factor", "many").expect_err("not a number");
        assert!(err.to_string().contains("replication_factor"), "{err}");
    }
}
