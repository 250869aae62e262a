//! Who is subscribing: a browser token (`trt_...`, issued by the ingest-api's `POST
//! /v1/tokens`) with the `subscribe` capability, as `Authorization: Bearer` or `?token=`
//! (EventSource cannot set headers). API keys are not accepted: they are backend secrets
//! and checking them would need a database read per connection.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use tributary_runtime::token::{Capability, Claims, TokenSigner};

use crate::error::HttpError;

/// The credential presented: the bearer header wins over the query parameter.
pub fn presented<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
    let from_header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim());
    from_header.or(query_token).filter(|t| !t.is_empty())
}

/// Verifies the presented token at `now` (seconds since the epoch) and checks it may
/// subscribe: 401 when missing, malformed, forged or expired; 403 without `subscribe`.
pub fn authorize(
    signer: &TokenSigner,
    credential: Option<&str>,
    now: i64,
) -> Result<Claims, HttpError> {
    let credential = credential.ok_or_else(|| {
        HttpError::unauthorized("missing token: send Authorization: Bearer or ?token=")
    })?;
    let claims = signer
        .verify(credential, now)
        .map_err(|e| HttpError::unauthorized(e.to_string()))?;
    if !claims.cap.contains(&Capability::Subscribe) {
        return Err(HttpError::forbidden(
            "this token lacks the subscribe capability",
        ));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn token(cap: Vec<Capability>, exp: i64) -> (TokenSigner, String) {
        let signer = TokenSigner::new(&[3; 32]);
        let token = signer.sign(&Claims {
            tid: "t".into(),
            cap,
            exp,
            iat: 0,
        });
        (signer, token)
    }

    #[test]
    fn statuses_follow_the_contract() {
        let (signer, live) = token(vec![Capability::Subscribe], 100);
        assert_eq!(authorize(&signer, Some(&live), 50).expect("ok").tid, "t");
        let status = |r: Result<Claims, HttpError>| r.expect_err("refused").status;
        assert_eq!(
            status(authorize(&signer, None, 50)),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(authorize(&signer, Some(&live), 100)),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(authorize(&signer, Some("trt_x.y"), 50)),
            StatusCode::UNAUTHORIZED
        );
        let (signer, upload_only) = token(vec![Capability::Upload], 100);
        assert_eq!(
            status(authorize(&signer, Some(&upload_only), 50)),
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn header_wins_over_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented(&headers, Some("q")), Some("q"));
        headers.insert(AUTHORIZATION, "Bearer h".parse().expect("header"));
        assert_eq!(presented(&headers, Some("q")), Some("h"));
        assert_eq!(presented(&HeaderMap::new(), Some("")), None);
    }
}
