//! `/healthz` (the process runs) and `/readyz` (Kafka, CQL and storage answer).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use tributary_runtime::{cql, s3, topics};

use crate::state::AppState;

/// How long each readiness check may take; probes must answer quickly.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Liveness: answers as long as the server loop runs.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when every engine answers, else 503 naming the failing ones.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (kafka, cql, storage) = tokio::join!(
        state.events.producer().check_cluster(
            &state.config.kafka.brokers,
            &[topics::LIFECYCLE],
            CHECK_TIMEOUT
        ),
        within(cql::ping(&state.cql)),
        within(s3::check_bucket(&state.s3, &state.config.s3)),
    );
    let checks = json!({
        "kafka": outcome(kafka),
        "cql": outcome(cql),
        "storage": outcome(storage),
    });
    let ready = checks
        .as_object()
        .is_some_and(|c| c.values().all(|v| v == "ok"));
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = if ready { "ready" } else { "unavailable" };
    (status, Json(json!({"status": word, "checks": checks})))
}

async fn within<T, E: std::fmt::Display>(
    check: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

fn outcome<T, E: std::fmt::Display>(result: Result<T, E>) -> Value {
    match result {
        Ok(_) => Value::from("ok"),
        Err(error) => Value::from(error.to_string()),
    }
}
