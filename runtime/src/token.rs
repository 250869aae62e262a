//! Short-lived, tenant-scoped tokens for browsers: `trt_<payload>.<signature>`, where the
//! payload is base64url JSON and the signature HMAC-SHA256 over it with the API's secret.
//! Verifying one needs no database read.
//!
//! Shared by the ingest-api (which issues and checks them) and the realtime bridge (which
//! checks them), so both verify with the same code and the same `api.token_secret` setting.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Prefix that marks a token.
pub const PREFIX: &str = "trt_";

/// Development default of `api.token_secret`; production must set its own (the binaries warn).
pub const DEV_SECRET: &str = "dev-only-token-secret-change-me-in-production!";

/// Shortest accepted secret, bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Create and drive uploads.
    Upload,
    /// Subscribe to event streams (realtime bridge).
    Subscribe,
}

/// The signed claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Tenant the token acts for.
    pub tid: String,
    /// Capabilities granted.
    pub cap: Vec<Capability>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: i64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not shaped like a token, or not decodable.
    #[error("malformed token")]
    Malformed,
    /// Signature does not match (tampered or signed with another secret).
    #[error("invalid token signature")]
    BadSignature,
    /// Past its expiry.
    #[error("token expired")]
    Expired,
}

/// Signs and verifies tokens with one secret.
#[derive(Clone)]
pub struct TokenSigner {
    /// HMAC key.
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner(..)")
    }
}

impl TokenSigner {
    /// A signer with `secret` (at least 32 bytes, checked by the settings).
    pub fn new(secret: &[u8]) -> Self {
        Self {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret)
            .expect("hmac accepts keys of any length");
        mac.update(b"trt1.");
        mac.update(payload.as_bytes());
        mac
    }

    /// Issues a token for `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&payload).finalize().into_bytes());
        format!("{PREFIX}{payload}.{signature}")
    }

    /// Checks signature and expiry (`now` in seconds since the epoch) and returns the claims.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, signature) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| TokenError::Malformed)?;
        self.mac(payload)
            .verify_slice(&signature)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            tid: "t1".into(),
            cap: vec![Capability::Upload],
            exp,
            iat: 0,
        }
    }

    #[test]
    fn round_trip_and_expiry() {
        let signer = TokenSigner::new(&[7; 32]);
        let token = signer.sign(&claims(100));
        assert_eq!(signer.verify(&token, 99), Ok(claims(100)));
        assert_eq!(signer.verify(&token, 100), Err(TokenError::Expired));
    }

    #[test]
    fn tampering_and_foreign_secrets_are_refused() {
        let signer = TokenSigner::new(&[7; 32]);
        let token = signer.sign(&claims(100));
        let forged_claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                tid: "t2".into(),
                ..claims(100)
            })
            .expect("json"),
        );
        let signature = token.split_once('.').expect("dot").1;
        let forged = format!("{PREFIX}{forged_claims}.{signature}");
        assert_eq!(signer.verify(&forged, 0), Err(TokenError::BadSignature));
        assert_eq!(
            TokenSigner::new(&[8; 32]).verify(&token, 0),
            Err(TokenError::BadSignature)
        );
        for bad in ["", "trt_", "trt_abc", "trt_abc.def", "xyz.abc", "trt_!!.!!"] {
            assert!(signer.verify(bad, 0).is_err(), "{bad}");
        }
    }
}
