//! The services and the ops command over the local broker's `SASL_SSL` listener (TLS with
//! the stack's own CA, SCRAM-SHA-512), configured only through `TRIBUTARY_KAFKA__*`
//! variables, as a deployment on MSK configures them: the ingest-api publishes a tenant's
//! and an upload's events through it, and `tributary-ops tail` reads them back through it.

mod common;

use std::path::PathBuf;

use common::{ADMIN, Children, json_lines, ops_ok_with_env, start_api};
use tributary_runtime::testing;

/// The `TRIBUTARY_KAFKA__*` variables of the secured listener.
fn secured_env() -> Vec<(&'static str, String)> {
    let state = std::env::var_os("TRIBUTARY_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack"));
    let port = std::env::var("KAFKA_SASL_PORT").unwrap_or_else(|_| "9094".into());
    vec![
        ("TRIBUTARY_KAFKA__BROKERS", format!("127.0.0.1:{port}")),
        ("TRIBUTARY_KAFKA__SECURITY__PROTOCOL", "sasl_ssl".into()),
        (
            "TRIBUTARY_KAFKA__SECURITY__SASL_MECHANISM",
            "scram-sha-512".into(),
        ),
        ("TRIBUTARY_KAFKA__SECURITY__USERNAME", "tributary".into()),
        (
            "TRIBUTARY_KAFKA__SECURITY__PASSWORD",
            "tributary-dev-scram-password".into(),
        ),
        (
            "TRIBUTARY_KAFKA__SECURITY__CA_LOCATION",
            state
                .join("kafka/tls/ca.pem")
                .to_string_lossy()
                .into_owned(),
        ),
    ]
}

#[tokio::test]
async fn api_and_ops_work_over_tls_and_scram() {
    let env = secured_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut children = Children::default();
    let api = start_api(&mut children, &env).await;

    let name = testing::unique("secured tenant");
    let created = &json_lines(&ops_ok_with_env(
        &[
            "tenant",
            "--api",
            &api,
            "--admin-token",
            ADMIN,
            "create",
            "--name",
            &name,
        ],
        &secured_env(),
    ))[0];
    let tenant = created["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_string();
    let key = created["api_key"].as_str().expect("api_key").to_string();

    // Initiation answers only after the broker acknowledged UploadInitiated over SASL_SSL.
    let initiated: serde_json::Value = reqwest::Client::new()
        .post(format!("{api}/v1/uploads"))
        .bearer_auth(&key)
        .json(&serde_json::json!({"filename": "a.txt", "size": 10, "content_type": "text/plain"}))
        .send()
        .await
        .expect("POST /v1/uploads")
        .error_for_status()
        .expect("initiated")
        .json()
        .await
        .expect("json");
    let upload = initiated["upload_id"].as_str().expect("upload_id");

    let lines = json_lines(&ops_ok_with_env(
        &[
            "tail",
            "lifecycle",
            "--tenant",
            &tenant,
            "--from-beginning",
            "--max",
            "1",
            "--timeout",
            "30",
        ],
        &secured_env(),
    ));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["event_type"], "UploadInitiated");
    assert_eq!(lines[0]["event"]["meta"]["upload_id"], upload);
}
