//! Tenant API keys: `trk_<key id>_<secret>`. Only `sha256(secret)` is stored; the key id
//! finds the stored hash without scanning, and the secret's 256 random bits make a plain
//! SHA-256 (rather than a slow password hash) sufficient.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Prefix that marks an API key (and lets secret scanners find leaked ones).
pub const PREFIX: &str = "trk_";

/// A freshly generated key: the full key is shown to the caller once, never stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// Public identifier (16 hex digits).
    pub key_id: String,
    /// The whole key to hand out.
    pub key: String,
    /// What is stored: `sha256:<hex>` of the secret.
    pub hash: String,
}

/// Generates a key from the operating system's random source.
pub fn generate() -> Result<NewApiKey, getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let key_id = hex::encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    Ok(NewApiKey {
        key: format!("{PREFIX}{key_id}_{secret}"),
        hash: hash_secret(&secret),
        key_id,
    })
}

/// Splits a presented key into key id and secret; `None` if it is not shaped like a key.
pub fn parse(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(PREFIX)?;
    let (key_id, secret) = rest.split_once('_')?;
    let id_ok = key_id.len() == 16 && key_id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = (20..=128).contains(&secret.len());
    (id_ok && secret_ok).then_some((key_id, secret))
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

/// Compares a presented secret with a stored hash in constant time.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    use subtle::ConstantTimeEq;
    hash_secret(secret)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_verify() {
        let key = generate().expect("random");
        let (id, secret) = parse(&key.key).expect("well-formed");
        assert_eq!(id, key.key_id);
        assert!(verify(secret, &key.hash));
        assert!(!verify("something-else-entirely-123", &key.hash));
        assert!(!key.hash.contains(secret), "only the hash is stored");
        assert_ne!(generate().expect("random").key, key.key);
    }

    #[test]
    fn malformed_keys_are_not_keys() {
        for bad in [
            "",
            "trk_",
            "trk_abc_def",
            "sk_0123456789abcdef_aaaaaaaaaaaaaaaaaaaaaaaa",
            "trk_0123456789abcdeg_aaaaaaaaaaaaaaaaaaaaaaaa",
            "trk_0123456789abcdef_short",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
