//! `tributary-ops tenant` against the real ingest-api: a created tenant's key works, a
//! rotation replaces it, and a quota change shows in the admin view.

mod common;

use common::{ADMIN, Children, json_lines, ops, ops_ok, start_api};
use tributary_runtime::testing;

#[tokio::test]
async fn tenant_create_rotate_key_and_set_quota_through_the_api() {
    let mut children = Children::default();
    let api = start_api(&mut children, &[]).await;
    let http = reqwest::Client::new();
    let policy_status = async |key: &str| {
        http.get(format!("{api}/v1/policy"))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET /v1/policy")
            .status()
            .as_u16()
    };
    let name = testing::unique("ops tenant");

    let created = &json_lines(&ops_ok(&[
        "tenant",
        "--api",
        &api,
        "create",
        "--name",
        &name,
        "--allowed-types",
        "image/*,video/mp4",
        "--byte-quota",
        "1G",
    ]))[0];
    let tenant = created["tenant_id"]
        .as_str()
        .expect("tenant_id")
        .to_string();
    let first_key = created["api_key"].as_str().expect("api_key").to_string();
    let first_key_id = created["key_id"].as_str().expect("key_id").to_string();
    assert_eq!(created["policy"]["byte_quota"], 1i64 << 30);
    assert_eq!(
        created["policy"]["allowed_content_types"],
        serde_json::json!(["image/*", "video/mp4"])
    );
    assert_eq!(policy_status(&first_key).await, 200, "the new key works");

    // Rotation: a new key, the old one revoked.
    let rotated = &json_lines(&ops_ok(&[
        "tenant",
        "--api",
        &api,
        "rotate-key",
        &tenant,
        "--revoke",
        &first_key_id,
    ]))[0];
    let second_key = rotated["api_key"].as_str().expect("api_key");
    assert_ne!(second_key, first_key);
    assert_eq!(rotated["revoked"], serde_json::json!([first_key_id]));
    assert_eq!(
        policy_status(second_key).await,
        200,
        "the rotated key works"
    );
    assert_eq!(
        policy_status(&first_key).await,
        401,
        "the old key is revoked"
    );

    // Quota: visible in the admin view.
    ops_ok(&[
        "tenant",
        "--api",
        &api,
        "set-quota",
        &tenant,
        "--byte-quota",
        "12345",
        "--max-concurrent-uploads",
        "7",
    ]);
    let view: serde_json::Value = http
        .get(format!("{api}/v1/admin/tenants/{tenant}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET tenant")
        .json()
        .await
        .expect("json");
    assert_eq!(view["byte_quota"], 12345);
    assert_eq!(view["max_concurrent_uploads"], 7);
    assert_eq!(
        view["allowed_content_types"],
        created["policy"]["allowed_content_types"]
    );
    let shown = &json_lines(&ops_ok(&["tenant", "--api", &api, "show", &tenant]))[0];
    assert_eq!(shown["byte_quota"], 12345);

    // Refusals are reported with the API's reason, and a non-zero exit.
    let missing = ops(&["tenant", "--api", &api, "show", "no-such-tenant"]);
    assert_eq!(missing.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("refused (404)"), "{stderr}");
    let wrong = ops(&[
        "tenant",
        "--api",
        &api,
        "--admin-token",
        "not-the-token",
        "show",
        &tenant,
    ]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused (401)"));
}
