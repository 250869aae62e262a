//! AWS Signature Version 4 by query string ("presigned URLs"), written out once for the two
//! things Tributary presigns: S3 requests (part, object and create-multipart URLs) and the
//! MSK IAM authentication token, which is a presigned `kafka-cluster:Connect` URL.
//!
//! Follows "Authenticating Requests: Using Query Parameters": only the `host` header is
//! signed; temporary credentials add `X-Amz-Security-Token`, which is signed too.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::aws_credentials::AwsKeys;

type HmacSha256 = Hmac<Sha256>;

/// Payload hash of S3 presigned URLs: the body is whatever the client sends.
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// Payload hash of a request without a body (SHA-256 of nothing), as other services expect.
pub(crate) const EMPTY_PAYLOAD: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One request to presign.
pub(crate) struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Host header value.
    pub host: &'a str,
    /// Path, already URI-encoded.
    pub path: &'a str,
    /// Query parameters besides the signature's own, unencoded.
    pub extra: &'a [(&'a str, String)],
    /// Signing name of the service (`s3`, `kafka-cluster`).
    pub service: &'a str,
    /// Signing region.
    pub region: &'a str,
    /// [`UNSIGNED_PAYLOAD`] or [`EMPTY_PAYLOAD`].
    pub payload_hash: &'a str,
    /// `X-Amz-Expires`.
    pub expires_secs: u64,
    /// Signing time, Unix seconds.
    pub now_secs: i64,
}

/// The presigned URL of `request`, signed with `keys` whose day's signing key (see
/// [`signing_key`]) is `signing_key`.
pub(crate) fn presign(request: &Request<'_>, keys: &AwsKeys, signing_key: &[u8; 32]) -> String {
    let (date, amz_date) = timestamps(request.now_secs);
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let mut query: Vec<(String, String)> = vec![
        ("X-Amz-Algorithm".into(), "AWS4-HMAC-SHA256".into()),
        (
            "X-Amz-Credential".into(),
            format!("{}/{scope}", keys.access_key_id),
        ),
        ("X-Amz-Date".into(), amz_date.clone()),
        ("X-Amz-Expires".into(), request.expires_secs.to_string()),
        ("X-Amz-SignedHeaders".into(), "host".into()),
    ];
    if let Some(token) = &keys.session_token {
        query.push(("X-Amz-Security-Token".into(), token.clone()));
    }
    query.extend(
        request
            .extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone())),
    );
    let mut encoded: Vec<(String, String)> = query
        .into_iter()
        .map(|(k, v)| (encode(&k, true), encode(&v, true)))
        .collect();
    encoded.sort();
    let canonical_query = encoded
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "{}\n{}\n{canonical_query}\nhost:{}\n\nhost\n{}",
        request.method, request.path, request.host, request.payload_hash
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let signature = hex::encode(hmac(signing_key, string_to_sign.as_bytes()));
    format!(
        "{}://{}{}?{canonical_query}&X-Amz-Signature={signature}",
        request.scheme, request.host, request.path
    )
}

/// The signing key of `secret` for `date` (`yyyymmdd`), `region` and `service`.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("hmac takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// SigV4 URI encoding: everything but unreserved characters; `/` kept in paths.
pub(crate) fn encode(value: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// (`yyyymmdd`, `yyyymmddThhmmssZ`) of a Unix time, UTC.
pub(crate) fn timestamps(now_secs: i64) -> (String, String) {
    let secs = now_secs.rem_euclid(86_400);
    let (year, month, day) = tributary_schemas::civil_date(now_secs.div_euclid(86_400));
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!("{:02}{:02}{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
    (date.clone(), format!("{date}T{time}Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        assert_eq!(
            timestamps(0),
            ("19700101".into(), "19700101T000000Z".into())
        );
        assert_eq!(
            timestamps(951_782_399),
            ("20000228".into(), "20000228T235959Z".into())
        );
        assert_eq!(
            timestamps(951_782_400),
            ("20000229".into(), "20000229T000000Z".into())
        );
    }

    #[test]
    fn keys_are_encoded_but_slashes_kept_in_paths() {
        assert_eq!(
            encode("uploads/t 1/ä.txt", false),
            "uploads/t%201/%C3%A4.txt"
        );
        assert_eq!(encode("a/b", true), "a%2Fb");
    }

    /// Temporary credentials: the session token is part of the signed query. Checked against
    /// the AWS SDK's own signer (`aws-sigv4`), for both payload hashes we use.
    #[test]
    fn session_tokens_are_signed_like_the_aws_sdk_signs_them() {
        use std::time::{Duration, UNIX_EPOCH};

        use aws_sigv4::http_request::{
            SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
        };
        use aws_sigv4::sign::v4;

        let keys = AwsKeys {
            access_key_id: "ASIAEXAMPLEKEYID".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            session_token: Some("FwoGZXIvYXdzE+token/with=odd&chars".into()),
            expires_at: None,
        };
        let now = 1_765_152_000_i64;
        for (service, payload_hash, body) in [
            ("kafka-cluster", EMPTY_PAYLOAD, SignableBody::Bytes(&[])),
            ("s3", UNSIGNED_PAYLOAD, SignableBody::UnsignedPayload),
        ] {
            let extra = [("Action", "kafka-cluster:Connect".to_string())];
            let ours = presign(
                &Request {
                    method: "GET",
                    scheme: "https",
                    host: "kafka.eu-west-1.amazonaws.com",
                    path: "/",
                    extra: &extra,
                    service,
                    region: "eu-west-1",
                    payload_hash,
                    expires_secs: 900,
                    now_secs: now,
                },
                &keys,
                &signing_key(&keys.secret_access_key, "20251208", "eu-west-1", service),
            );

            let identity = aws_credential_types::Credentials::new(
                &keys.access_key_id,
                &keys.secret_access_key,
                keys.session_token.clone(),
                None,
                "test",
            )
            .into();
            let mut settings = SigningSettings::default();
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(900));
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region("eu-west-1")
                .name(service)
                .time(UNIX_EPOCH + Duration::from_secs(now as u64))
                .settings(settings)
                .build()
                .expect("params")
                .into();
            let url = "https://kafka.eu-west-1.amazonaws.com/?Action=kafka-cluster%3AConnect";
            let signable =
                SignableRequest::new("GET", url, std::iter::empty(), body).expect("signable");
            let (_, signature) = sign(signable, &params).expect("signed").into_parts();
            assert!(
                ours.ends_with(&format!("&X-Amz-Signature={signature}")),
                "{service}: {ours} vs {signature}"
            );
            assert!(
                ours.contains("X-Amz-Security-Token=FwoGZXIvYXdzE%2Btoken%2Fwith%3Dodd%26chars")
            );
        }
    }
}
