//! The S3 client, configured for the local Garage server or any S3-compatible endpoint.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider, timeout::TimeoutConfig,
};

use crate::aws_credentials::CredentialSource;
use crate::config::S3Config;

/// Why a storage check failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The bucket could not be reached or is not ours.
    #[error("s3 bucket {bucket} at {endpoint} is unreachable: {reason}")]
    Unreachable {
        /// Bucket name.
        bucket: String,
        /// Endpoint URL (or "aws").
        endpoint: String,
        /// The SDK's explanation.
        reason: String,
    },
}

/// Builds an S3 client from the config, with the credentials it names (see
/// [`S3Config::credential_source`]).
pub fn client(config: &S3Config) -> aws_sdk_s3::Client {
    client_with(config, config.credential_source())
}

/// Builds an S3 client that signs with `credentials` (shared with the presigner, so a
/// process holds one refresher). Checksums are only computed when an operation requires
/// them: presigned part URLs must not carry a checksum the browser cannot match.
pub fn client_with(config: &S3Config, credentials: CredentialSource) -> aws_sdk_s3::Client {
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .force_path_style(config.force_path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Checks that the bucket exists and the credentials may use it.
pub async fn check_bucket(client: &aws_sdk_s3::Client, config: &S3Config) -> Result<(), S3Error> {
    client
        .head_bucket()
        .bucket(&config.bucket)
        .send()
        .await
        .map(|_| ())
        .map_err(|error| S3Error::Unreachable {
            bucket: config.bucket.clone(),
            endpoint: config.endpoint.clone().unwrap_or_else(|| "aws".into()),
            reason: aws_sdk_s3::error::DisplayErrorContext(&error).to_string(),
        })
}

/// Lets browsers of `origins` PUT parts and GET variants directly: the bucket's CORS rule
/// allows those methods and exposes `ETag`, which clients need to confirm parts (Uppy fails
/// with "Missing ETag" otherwise). Idempotent; replaces the bucket's CORS configuration.
pub async fn ensure_bucket_cors(
    client: &aws_sdk_s3::Client,
    config: &S3Config,
    origins: &[String],
) -> Result<(), S3Error> {
    use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
    let unreachable = |reason: String| S3Error::Unreachable {
        bucket: config.bucket.clone(),
        endpoint: config.endpoint.clone().unwrap_or_else(|| "aws".into()),
        reason,
    };
    let rule = CorsRule::builder()
        .set_allowed_origins(Some(origins.to_vec()))
        .allowed_methods("PUT")
        .allowed_methods("GET")
        .allowed_methods("HEAD")
        .allowed_headers("*")
        .expose_headers("ETag")
        .max_age_seconds(3000)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let cors = CorsConfiguration::builder()
        .cors_rules(rule)
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    client
        .put_bucket_cors()
        .bucket(&config.bucket)
        .cors_configuration(cors)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| unreachable(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))
}
