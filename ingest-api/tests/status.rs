//! Status and listing read from the projector's read models: the projector runs in-process,
//! consuming the real lifecycle topic into the real Cassandra.

mod common;

use std::time::{Duration, Instant};

use common::{Api, Tenant};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tributary_projections::projector;

async fn get(api: &Api, tenant: &Tenant, path: &str) -> (u16, Value) {
    let response = api
        .http
        .get(api.url(path))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("get");
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

/// Polls the status until `check` holds (the projector is asynchronous).
async fn wait_for(
    api: &Api,
    tenant: &Tenant,
    upload_id: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = get(api, tenant, &format!("/v1/uploads/{upload_id}")).await;
        assert_eq!(status, 200, "{body}");
        if check(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "status never matched: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn status_and_listing_come_from_the_read_models() {
    let config = tributary_runtime::testing::stack_config();
    // A group of its own that starts at the log's current end: the test does not wait for
    // a replay of everything earlier runs and benchmarks left in the shared topic.
    let group = tributary_runtime::testing::unique("projector_test");
    tributary_runtime::testing::start_group_at_end(
        &config,
        &group,
        tributary_runtime::topics::LIFECYCLE,
    )
    .await
    .expect("position the test projector");
    let stop = CancellationToken::new();
    let projector = tokio::spawn({
        let stop = stop.clone();
        async move { projector::run(&config, &group, stop).await }
    });
    let api = Api::start(&[]).await;
    let tenant = api.create_tenant(json!({})).await;
    let other = api.create_tenant(json!({})).await;

    let mut ids = Vec::new();
    for name in ["first.bin", "second.bin", "third.bin"] {
        let (status, session) = api
            .initiate(&tenant, &json!({"filename": name, "size": 1000, "content_type": "application/octet-stream"}))
            .await;
        assert_eq!(status, 201, "{session}");
        ids.push((
            session["upload_id"].as_str().expect("id").to_string(),
            session,
        ));
    }
    // The first one is uploaded and completed.
    let (first, session) = &ids[0];
    let url = session["parts"][0]["url"].as_str().expect("url");
    let put = api
        .http
        .put(url)
        .body(vec![1u8; 1000])
        .send()
        .await
        .expect("put");
    let etag = put
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    let confirmed = api
        .http
        .put(api.url(&format!("/v1/uploads/{first}/parts/1")))
        .bearer_auth(&tenant.key)
        .json(&json!({"etag": etag}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(confirmed.status(), 200);
    let completed = api
        .http
        .post(api.url(&format!("/v1/uploads/{first}/complete")))
        .bearer_auth(&tenant.key)
        .send()
        .await
        .expect("complete");
    assert_eq!(completed.status(), 202);

    let status = wait_for(&api, &tenant, first, |b| b["state"] == "assembling").await;
    assert_eq!(status["parts_confirmed"], 1);
    assert_eq!(status["bytes_confirmed"], 1000);
    assert_eq!(status["filename"], "first.bin");
    assert!(status["error"].is_null());
    let third = &ids[2].0;
    wait_for(&api, &tenant, third, |b| {
        b["state"] == "initiated" && b["created_at"].is_string()
    })
    .await;

    // Wait until the projector has all three (the status above may come from the command
    // side), then page: newest first, two per page, with a cursor that continues exactly
    // where the page ended.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, all) = get(&api, &tenant, "/v1/uploads?limit=10").await;
        assert_eq!(status, 200, "{all}");
        let entries = all["uploads"].as_array().map(Vec::len).unwrap_or(0);
        if entries == 3 && all["uploads"][2]["state"] == "assembling" {
            break;
        }
        assert!(Instant::now() < deadline, "listing never filled: {all}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, page) = get(&api, &tenant, "/v1/uploads?limit=2").await;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> = page["uploads"]
        .as_array()
        .expect("uploads")
        .iter()
        .filter_map(|u| u["upload_id"].as_str())
        .collect();
    assert_eq!(listed, [ids[2].0.as_str(), ids[1].0.as_str()]);
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, rest) = get(
        &api,
        &tenant,
        &format!("/v1/uploads?limit=2&cursor={cursor}"),
    )
    .await;
    let listed: Vec<&str> = rest["uploads"]
        .as_array()
        .expect("uploads")
        .iter()
        .filter_map(|u| u["upload_id"].as_str())
        .collect();
    assert_eq!(listed, [first.as_str()]);
    assert!(rest["next_cursor"].is_null());
    assert_eq!(rest["uploads"][0]["state"], "assembling");

    // Another tenant sees none of it.
    assert_eq!(
        get(&api, &other, &format!("/v1/uploads/{first}")).await.0,
        404
    );
    let (_, others) = get(&api, &other, "/v1/uploads").await;
    assert_eq!(others["uploads"].as_array().map(Vec::len), Some(0));
    assert_eq!(
        get(&api, &tenant, "/v1/uploads?cursor=garbage").await.0,
        400
    );
    assert_eq!(get(&api, &tenant, "/v1/uploads?limit=0").await.0, 400);

    stop.cancel();
    projector
        .await
        .expect("projector task")
        .expect("projector stopped cleanly");
}
