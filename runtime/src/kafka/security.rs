//! Encryption and authentication towards the brokers: the librdkafka properties of
//! [`KafkaSecurity`], and the client context that answers librdkafka's OAUTHBEARER token
//! requests with MSK IAM tokens.
//!
//! An MSK IAM token is the base64url form of a SigV4-presigned
//! `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster:Connect` (service
//! `kafka-cluster`, 900 s), the same bytes AWS's `aws-msk-iam-sasl-signer` libraries produce;
//! MSK checks the signature against the caller's IAM policy. librdkafka asks for a new one
//! at 80 % of the lifetime, so a connection outlives any one token.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::ClientConfig;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::consumer::ConsumerContext;

use crate::aws_credentials::CredentialSource;
use crate::config::{KafkaConfig, KafkaProtocol, KafkaSecurity, SaslMechanism};
use crate::sigv4;

/// Lifetime of one MSK IAM token, as AWS's signers use.
const MSK_TOKEN_TTL: Duration = Duration::from_secs(900);

/// How long a token request waits for the first role credentials of the process: it runs
/// inside librdkafka's poll, so only start-up may ever wait this long.
const FIRST_CREDENTIALS_WAIT: Duration = Duration::from_secs(10);

/// Sets the properties of `security` on `client`.
pub(super) fn apply(client: &mut ClientConfig, security: &KafkaSecurity) {
    let protocol = match security.protocol {
        KafkaProtocol::Plaintext => "plaintext",
        KafkaProtocol::Ssl => "ssl",
        KafkaProtocol::SaslPlaintext => "sasl_plaintext",
        KafkaProtocol::SaslSsl => "sasl_ssl",
    };
    client.set("security.protocol", protocol);
    if let Some(mechanism) = security.sasl_mechanism {
        let name = match mechanism {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            // The token comes from [`KafkaContext`], not from librdkafka's own OIDC client.
            SaslMechanism::AwsMskIam => "OAUTHBEARER",
        };
        client.set("sasl.mechanism", name);
    }
    if let Some(username) = &security.username {
        client.set("sasl.username", username);
    }
    if let Some(password) = &security.password {
        client.set("sasl.password", password);
    }
    if let Some(ca) = &security.ca_location {
        client.set("ssl.ca.location", ca);
    }
    for (key, value) in &security.properties {
        client.set(key, value);
    }
}

/// A source of OAUTHBEARER tokens; MSK IAM in production, anything else in tests.
pub trait OAuthTokenSource: Send + Sync {
    /// A fresh token, or why there is none (librdkafka retries and logs it).
    fn token(&self) -> Result<OAuthToken, String>;
}

/// The context every Tributary Kafka client is created with: it answers librdkafka's token
/// requests when the mechanism is OAUTHBEARER and is inert otherwise (librdkafka only asks
/// with that mechanism).
#[derive(Clone, Default)]
pub struct KafkaContext {
    tokens: Option<Arc<dyn OAuthTokenSource>>,
}

impl KafkaContext {
    /// The context `config` needs: MSK IAM tokens for `aws-msk-iam`, nothing otherwise.
    pub fn for_config(config: &KafkaConfig) -> Self {
        match (
            config.security.sasl_mechanism,
            config.security.aws_region.as_deref(),
        ) {
            (Some(SaslMechanism::AwsMskIam), Some(region)) => Self {
                tokens: Some(shared_msk_tokens(region)),
            },
            _ => Self::default(),
        }
    }

    /// A context whose OAUTHBEARER tokens come from `tokens`.
    pub fn with_token_source(tokens: Arc<dyn OAuthTokenSource>) -> Self {
        Self {
            tokens: Some(tokens),
        }
    }
}

/// One MSK IAM token source (and credential refresher) per process and region, however
/// many clients the process creates.
fn shared_msk_tokens(region: &str) -> Arc<dyn OAuthTokenSource> {
    static SHARED: Mutex<Vec<(String, Arc<MskIamTokens>)>> = Mutex::new(Vec::new());
    let mut shared = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, tokens)) = shared.iter().find(|(r, _)| r == region) {
        return tokens.clone();
    }
    let tokens = Arc::new(MskIamTokens::new(
        region,
        CredentialSource::default_chain(region),
    ));
    shared.push((region.to_string(), tokens.clone()));
    tokens
}

impl ClientContext for KafkaContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn std::error::Error>> {
        let Some(tokens) = &self.tokens else {
            return Err(
                "sasl.mechanism is OAUTHBEARER but no token source is configured \
                        (use kafka.security.sasl_mechanism = \"aws-msk-iam\")"
                    .into(),
            );
        };
        tokens.token().map_err(|error| {
            tracing::warn!(%error, "no kafka oauthbearer token");
            error.into()
        })
    }
}

impl ConsumerContext for KafkaContext {}

/// MSK IAM tokens signed with the current keys of a credential source.
pub struct MskIamTokens {
    region: String,
    credentials: CredentialSource,
}

impl MskIamTokens {
    /// Tokens for the cluster in `region`.
    pub fn new(region: &str, credentials: CredentialSource) -> Self {
        Self {
            region: region.to_string(),
            credentials,
        }
    }

    /// The token signed at `now_secs` and when it expires (Unix milliseconds).
    pub fn token_at(&self, now_secs: i64) -> Result<(String, i64), String> {
        let keys = self
            .credentials
            .current(FIRST_CREDENTIALS_WAIT)
            .map_err(|e| e.to_string())?;
        let host = format!("kafka.{}.amazonaws.com", self.region);
        let (date, _) = sigv4::timestamps(now_secs);
        let signing_key = sigv4::signing_key(
            &keys.secret_access_key,
            &date,
            &self.region,
            "kafka-cluster",
        );
        let extra = [("Action", "kafka-cluster:Connect".to_string())];
        let url = sigv4::presign(
            &sigv4::Request {
                method: "GET",
                scheme: "https",
                host: &host,
                path: "/",
                extra: &extra,
                service: "kafka-cluster",
                region: &self.region,
                payload_hash: sigv4::EMPTY_PAYLOAD,
                expires_secs: MSK_TOKEN_TTL.as_secs(),
                now_secs,
            },
            &keys,
            &signing_key,
        );
        // Unsigned, as AWS's signers add it: tells MSK's logs which client connected.
        let url = format!("{url}&User-Agent=tributary%2F{}", env!("CARGO_PKG_VERSION"));
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url);
        let expires_ms = (now_secs + MSK_TOKEN_TTL.as_secs() as i64) * 1000;
        Ok((token, expires_ms))
    }
}

impl OAuthTokenSource for MskIamTokens {
    fn token(&self) -> Result<OAuthToken, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?;
        let (token, lifetime_ms) = self.token_at(now.as_secs() as i64)?;
        Ok(OAuthToken {
            token,
            // Only shown in librdkafka's logs; MSK derives the principal from the signature.
            principal_name: "tributary".into(),
            lifetime_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msk_iam_tokens_are_presigned_connect_urls() {
        let tokens = MskIamTokens::new(
            "eu-west-1",
            CredentialSource::fixed("AKIAEXAMPLE", "secret/key+with=chars"),
        );
        let (token, expires_ms) = tokens.token_at(1_765_152_000).expect("token");
        assert_eq!(expires_ms, (1_765_152_000 + 900) * 1000);
        assert!(
            !token.contains('=') && !token.contains('+') && !token.contains('/'),
            "base64url without padding: {token}"
        );
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&token)
                .expect("decodes"),
        )
        .expect("utf-8");
        assert!(
            url.starts_with("https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20251208%2Feu-west-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20251208T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="),
            "{url}"
        );
        assert!(url.ends_with(&format!(
            "&User-Agent=tributary%2F{}",
            env!("CARGO_PKG_VERSION")
        )));
    }

    #[test]
    fn security_settings_become_librdkafka_properties() {
        let mut client = ClientConfig::new();
        let mut security = KafkaSecurity {
            protocol: KafkaProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            username: Some("svc".into()),
            password: Some("pw".into()),
            ca_location: Some("/etc/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        security.properties.insert(
            "ssl.endpoint.identification.algorithm".into(),
            "none".into(),
        );
        apply(&mut client, &security);
        for (key, value) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "svc"),
            ("sasl.password", "pw"),
            ("ssl.ca.location", "/etc/ca.pem"),
            ("ssl.endpoint.identification.algorithm", "none"),
        ] {
            assert_eq!(client.get(key), Some(value), "{key}");
        }
        let mut client = ClientConfig::new();
        apply(
            &mut client,
            &KafkaSecurity {
                protocol: KafkaProtocol::SaslSsl,
                sasl_mechanism: Some(SaslMechanism::AwsMskIam),
                aws_region: Some("eu-west-1".into()),
                ..KafkaSecurity::default()
            },
        );
        assert_eq!(client.get("sasl.mechanism"), Some("OAUTHBEARER"));
    }
}
