//! A JSON body extractor whose rejections are the API's JSON errors (axum's own answer in
//! plain text).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `Json<T>` with JSON errors: 400 for malformed or mistyped JSON, 415 without a JSON
/// content type, 413 over the body limit.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "expected Content-Type: application/json",
                ),
                _ if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "request body too large",
                ),
                JsonRejection::JsonDataError(error) => {
                    ApiError::bad_request("invalid_request", error.body_text())
                }
                _ => ApiError::bad_request("invalid_json", rejection.body_text()),
            }),
        }
    }
}
