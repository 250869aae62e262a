//! AWS credentials for signing: fixed keys from the config (Garage locally, or a dedicated
//! access key), or AWS's default credential chain — environment, ECS task role, EC2
//! instance profile, web identity — kept fresh in the background.
//!
//! Signing is synchronous and hot (the presigner signs dozens of part URLs per initiation,
//! librdkafka asks for an MSK IAM token from inside its poll loop), so readers take the
//! current keys from memory and never wait on the network. A refresher thread with its own
//! small runtime fetches new keys before the old ones expire: it must not depend on the
//! caller's runtime, because librdkafka calls in on threads that are not tokio's.

use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, future};

/// Fetch new keys once the current ones have less than this left. Presigned URLs live as
/// long as the keys that signed them, so this is also the longest a URL signed just before
/// a refresh stays valid: keep it above the API's part-URL lifetime.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(60 * 60);

/// Pause between attempts while the chain fails, and the cadence of re-fetches once keys are
/// within [`REFRESH_BEFORE_EXPIRY`] (the source may not have rotated them yet).
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// One set of keys.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsKeys {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials (role credentials always have one).
    pub session_token: Option<String>,
    /// When temporary credentials stop working.
    pub expires_at: Option<SystemTime>,
}

impl AwsKeys {
    /// No keys: what a signer uses before any were fetched, so that storage refuses the
    /// request with a clear error instead of the signer failing.
    pub(crate) fn none() -> Self {
        Self {
            access_key_id: String::new(),
            secret_access_key: String::new(),
            session_token: None,
            expires_at: None,
        }
    }
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKeys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why no keys are available.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no aws credentials yet: {0}")]
pub struct CredentialsError(String);

/// Where keys come from; cheap to clone, shared by everything that signs.
#[derive(Debug, Clone)]
pub struct CredentialSource(Arc<Inner>);

#[derive(Debug)]
enum Inner {
    Fixed(Arc<AwsKeys>),
    Refreshed(Refreshed),
}

#[derive(Debug, Default)]
struct Refreshed {
    state: Mutex<RefreshState>,
    loaded: Condvar,
}

#[derive(Debug, Default)]
struct RefreshState {
    keys: Option<Arc<AwsKeys>>,
    last_error: Option<String>,
}

impl CredentialSource {
    /// Fixed keys that never expire.
    pub fn fixed(access_key_id: &str, secret_access_key: &str) -> Self {
        Self(Arc::new(Inner::Fixed(Arc::new(AwsKeys {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: None,
            expires_at: None,
        }))))
    }

    /// AWS's default credential chain for `region`, refreshed by a background thread that
    /// ends when the last clone of the source is dropped.
    pub fn default_chain(region: &str) -> Self {
        let source = Self(Arc::new(Inner::Refreshed(Refreshed::default())));
        let weak = Arc::downgrade(&source.0);
        let region = region.to_string();
        let spawned = std::thread::Builder::new()
            .name("aws-credentials".into())
            .spawn(move || refresh_forever(weak, region));
        if let Err(error) = spawned
            && let Inner::Refreshed(refreshed) = source.0.as_ref()
        {
            refreshed.lock().last_error = Some(format!("could not start the refresher: {error}"));
        }
        source
    }

    /// The current keys. Before the first successful fetch this waits up to `wait` (start-up
    /// uses a few seconds; hot paths pass zero), then reports the chain's last error.
    pub fn current(&self, wait: Duration) -> Result<Arc<AwsKeys>, CredentialsError> {
        let refreshed = match self.0.as_ref() {
            Inner::Fixed(keys) => return Ok(keys.clone()),
            Inner::Refreshed(refreshed) => refreshed,
        };
        let state = refreshed.lock();
        let (state, _) = refreshed
            .loaded
            .wait_timeout_while(state, wait, |s| s.keys.is_none())
            .unwrap_or_else(PoisonError::into_inner);
        match &state.keys {
            Some(keys) => Ok(keys.clone()),
            None => Err(CredentialsError(
                state
                    .last_error
                    .clone()
                    .unwrap_or_else(|| "still fetching".into()),
            )),
        }
    }

    /// [`Self::current`] without blocking the runtime: waits up to `timeout` for the first
    /// keys.
    pub async fn ready(&self, timeout: Duration) -> Result<Arc<AwsKeys>, CredentialsError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || source.current(timeout))
            .await
            .map_err(|e| CredentialsError(format!("credential wait failed: {e}")))?
    }
}

impl Refreshed {
    fn lock(&self) -> std::sync::MutexGuard<'_, RefreshState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The AWS SDK reads the same keys, so a process holds one refresher per source.
impl ProvideCredentials for CredentialSource {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        if let Ok(keys) = self.current(Duration::ZERO) {
            return future::ProvideCredentials::ready(Ok(sdk_credentials(&keys)));
        }
        // Only before the first fetch (a request at start-up): wait for it off the runtime.
        let source = self.clone();
        future::ProvideCredentials::new(async move {
            source
                .ready(FIRST_FETCH_WAIT)
                .await
                .map(|keys| sdk_credentials(&keys))
                .map_err(|e| {
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        e.to_string(),
                    )
                })
        })
    }
}

fn sdk_credentials(keys: &AwsKeys) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(
        &keys.access_key_id,
        &keys.secret_access_key,
        keys.session_token.clone(),
        keys.expires_at,
        "tributary",
    )
}

/// How long a request made before the first fetch waits for it.
const FIRST_FETCH_WAIT: Duration = Duration::from_secs(10);

/// The refresher thread: fetch, publish, sleep until the keys near expiry, repeat; exits
/// once the source is gone.
fn refresh_forever(source: Weak<Inner>, region: String) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            publish(&source, Err(format!("could not start a runtime: {error}")));
            return;
        }
    };
    runtime.block_on(async move {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(region))
            .load()
            .await;
        let Some(provider) = config.credentials_provider() else {
            publish(&source, Err("the default chain has no provider".into()));
            return;
        };
        loop {
            let fetched = provider
                .provide_credentials()
                .await
                .map(|c| AwsKeys {
                    access_key_id: c.access_key_id().to_string(),
                    secret_access_key: c.secret_access_key().to_string(),
                    session_token: c.session_token().map(str::to_string),
                    expires_at: c.expiry(),
                })
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string());
            let pause = match &fetched {
                Ok(keys) => next_refresh(keys.expires_at, SystemTime::now()),
                Err(error) => {
                    tracing::warn!(%error, "fetching aws credentials failed; retrying");
                    RETRY_EVERY
                }
            };
            if !publish(&source, fetched) {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    });
}

/// Stores a fetch's outcome; false once the source is gone. A failed refresh keeps the old
/// keys: they may still have minutes left, and signing with them beats not signing.
fn publish(source: &Weak<Inner>, fetched: Result<AwsKeys, String>) -> bool {
    let Some(inner) = source.upgrade() else {
        return false;
    };
    let Inner::Refreshed(refreshed) = inner.as_ref() else {
        return false;
    };
    let mut state = refreshed.lock();
    match fetched {
        Ok(keys) => {
            let changed = state.keys.as_deref() != Some(&keys);
            if changed {
                tracing::info!(access_key_id = %keys.access_key_id, expires_at = ?keys.expires_at,
                    "aws credentials loaded");
                state.keys = Some(Arc::new(keys));
            }
            state.last_error = None;
        }
        Err(error) => state.last_error = Some(error),
    }
    refreshed.loaded.notify_all();
    true
}

/// How long to sleep before the next fetch of keys expiring at `expires_at`.
fn next_refresh(expires_at: Option<SystemTime>, now: SystemTime) -> Duration {
    let Some(expires_at) = expires_at else {
        // Keys without expiry (environment variables, a profile) only change on restart,
        // but re-reading hourly is cheap and catches a rotated profile.
        return REFRESH_BEFORE_EXPIRY;
    };
    let left = expires_at.duration_since(now).unwrap_or_default();
    left.checked_sub(REFRESH_BEFORE_EXPIRY)
        .unwrap_or(RETRY_EVERY)
        .max(RETRY_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refreshes_an_hour_before_expiry_and_retries_when_close() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let in_6h = now + Duration::from_secs(6 * 3600);
        assert_eq!(
            next_refresh(Some(in_6h), now),
            Duration::from_secs(5 * 3600)
        );
        let in_30min = now + Duration::from_secs(1800);
        assert_eq!(next_refresh(Some(in_30min), now), RETRY_EVERY);
        assert_eq!(
            next_refresh(Some(now - Duration::from_secs(5)), now),
            RETRY_EVERY
        );
        assert_eq!(next_refresh(None, now), REFRESH_BEFORE_EXPIRY);
    }

    #[test]
    fn fixed_keys_are_there_at_once_and_never_printed() {
        let source = CredentialSource::fixed("AKID", "very-secret");
        let keys = source.current(Duration::ZERO).expect("fixed keys");
        assert_eq!(keys.access_key_id, "AKID");
        assert!(!format!("{keys:?}").contains("very-secret"));
    }
}
