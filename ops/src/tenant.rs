//! Tenant administration through the ingest-api's admin routes: tenants are event-sourced by
//! the API (`TenantCreated`, `ApiKeyIssued`, `ApiKeyRevoked`, `QuotaChanged`), so operators
//! go through it rather than writing events themselves.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::OpsError;

/// Limits and allowed types; `None` fields are left to the API (its defaults on creation,
/// the current value on update).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Policy {
    /// The tenant's display name (required on creation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Largest file, bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<i64>,
    /// Allowed content types (`image/*` patterns allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_content_types: Option<Vec<String>>,
    /// Bytes the tenant may hold (reserved and stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte_quota: Option<i64>,
    /// Unfinished uploads at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_uploads: Option<i32>,
}

/// A client of the admin routes.
pub struct AdminClient {
    /// Base URL of the ingest-api.
    base: String,
    /// The admin bearer token.
    token: String,
    /// HTTP client.
    http: reqwest::Client,
}

impl AdminClient {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`) using `token`.
    pub fn new(base: &str, token: &str) -> Result<Self, OpsError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| OpsError::ApiUnreachable {
                url: base.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// `POST /v1/admin/tenants`: the tenant id, its first key (shown once) and its policy.
    pub async fn create(&self, policy: &Policy) -> Result<Value, OpsError> {
        if policy.name.as_deref().is_none_or(|n| n.trim().is_empty()) {
            return Err(OpsError::Invalid("a tenant needs a name (--name)".into()));
        }
        self.call(reqwest::Method::POST, "/v1/admin/tenants", Some(policy))
            .await
    }

    /// `GET /v1/admin/tenants/{id}`: policy and usage.
    pub async fn show(&self, tenant_id: &str) -> Result<Value, OpsError> {
        self.call::<()>(
            reqwest::Method::GET,
            &format!("/v1/admin/tenants/{}", segment(tenant_id)?),
            None,
        )
        .await
    }

    /// `POST /v1/admin/tenants/{id}/keys`: a new key (the old ones stay valid until revoked).
    pub async fn issue_key(&self, tenant_id: &str) -> Result<Value, OpsError> {
        self.call::<()>(
            reqwest::Method::POST,
            &format!("/v1/admin/tenants/{}/keys", segment(tenant_id)?),
            None,
        )
        .await
    }

    /// `DELETE /v1/admin/tenants/{id}/keys/{key_id}`.
    pub async fn revoke_key(&self, tenant_id: &str, key_id: &str) -> Result<(), OpsError> {
        self.call::<()>(
            reqwest::Method::DELETE,
            &format!(
                "/v1/admin/tenants/{}/keys/{}",
                segment(tenant_id)?,
                segment(key_id)?
            ),
            None,
        )
        .await
        .map(|_| ())
    }

    /// `PUT /v1/admin/tenants/{id}/policy`: the policy after the change.
    pub async fn set_policy(&self, tenant_id: &str, policy: &Policy) -> Result<Value, OpsError> {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/admin/tenants/{}/policy", segment(tenant_id)?),
            Some(policy),
        )
        .await
    }

    async fn call<B: Serialize>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Value, OpsError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| OpsError::ApiUnreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| OpsError::ApiUnreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(value);
        }
        let field = |name: &str| {
            value["error"][name]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| "-".into())
        };
        Err(OpsError::ApiRefused {
            status: status.as_u16(),
            code: field("code"),
            message: field("message"),
        })
    }
}

/// Refuses ids that would change the route (`/`, `?`, `#`, `..`).
fn segment(id: &str) -> Result<&str, OpsError> {
    let safe = !id.is_empty()
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if safe {
        Ok(id)
    } else {
        Err(OpsError::Invalid(format!("'{id}' is not a valid id")))
    }
}

/// Parses a byte count: digits with an optional `K`, `M`, `G` or `T` suffix (powers of 1024).
pub fn parse_bytes(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 10),
        Some((i, 'm' | 'M')) => (&text[..i], 20),
        Some((i, 'g' | 'G')) => (&text[..i], 30),
        Some((i, 't' | 'T')) => (&text[..i], 40),
        _ => (text, 0),
    };
    digits
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("'{text}' is not a byte count (e.g. 500M, 10G)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_parse() {
        assert_eq!(parse_bytes("123"), Ok(123));
        assert_eq!(parse_bytes("2K"), Ok(2048));
        assert_eq!(parse_bytes("10G"), Ok(10 << 30));
        assert!(parse_bytes("-1").is_err());
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("99999999999T").is_err());
    }

    #[test]
    fn ids_cannot_change_the_route() {
        assert!(segment("0196c3b1-aaaa-7bbb-8ccc-dddddddddddd").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a#b", "a b"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }
}
