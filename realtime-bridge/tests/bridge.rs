//! The bridge against the real Kafka: exact resume at every position of a 200-event history,
//! tenant isolation under a randomized workload, token expiry, and a slow reader's reset.
//! Every test starts its own bridge in-process on a loopback port and uses unique tenants.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use tributary_runtime::testing::unique;
use tributary_runtime::token::Capability;

use common::{
    Bridge, RawSse, Rng, initiated, opened, part, partition_of, progress, publisher, start_bridge,
};

const SUBSCRIBE: &[Capability] = &[Capability::Subscribe];

/// Reads named events until `count` lifecycle ids were seen; returns their offsets in order.
async fn lifecycle_ids(sse: &mut common::Sse, count: usize, timeout: Duration) -> Vec<i64> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ids = Vec::new();
    while ids.len() < count {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = sse
            .next_event(left)
            .await
            .unwrap_or_else(|| panic!("only {} of {count} events arrived", ids.len()));
        ids.push(event.offset().expect("lifecycle events carry an id"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_exactly_at_every_position_of_a_200_event_history() {
    let bridge = start_bridge(|_| {}).await;
    let tenant = unique("rb_resume");
    let upload = uuid::Uuid::now_v7().to_string();
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    let path = format!("/v1/uploads/{upload}/events");
    let mut live = bridge.open(&path, &token, None).await;
    opened(&mut live).await;
    assert_eq!(
        live.headers.get("content-type").map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    assert_eq!(
        live.headers.get("x-accel-buffering").map(|v| v.as_bytes()),
        Some(&b"no"[..])
    );
    assert_eq!(
        live.headers.get("cache-control").map(|v| v.as_bytes()),
        Some(&b"no-cache"[..])
    );

    let publisher = publisher(&bridge.config);
    let mut offsets = Vec::new();
    for n in 0..200 {
        let event = if n == 0 {
            initiated(&tenant, &upload)
        } else {
            part(&tenant, &upload, n, 8)
        };
        let delivery = publisher.publish(&event).await.expect("published");
        assert_eq!(
            delivery.partition,
            partition_of(&tenant),
            "murmur2 partition"
        );
        offsets.push(delivery.offset);
    }

    // Live: all 200, in order, ids = log offsets.
    assert_eq!(
        lifecycle_ids(&mut live, 200, Duration::from_secs(30)).await,
        offsets
    );
    // No Last-Event-ID on an upload stream: its whole history first.
    let mut fresh = bridge.open(&path, &token, None).await;
    opened(&mut fresh).await;
    let first = fresh
        .next_event(Duration::from_secs(20))
        .await
        .expect("history");
    assert_eq!(first.event.as_deref(), Some("UploadInitiated"));
    assert_eq!(first.json()["meta"]["upload_id"], upload.as_str());
    let mut history = vec![first.offset().expect("id")];
    history.extend(lifecycle_ids(&mut fresh, 199, Duration::from_secs(30)).await);
    assert_eq!(history, offsets);

    // Reconnect after every position (header and query parameter alternately): exactly the
    // missing events, in order, and nothing after them.
    let bridge = &bridge;
    let (path, token, offsets) = (&path, &token, &offsets);
    let results: Vec<Result<(), String>> = futures::stream::iter(0..=200usize)
        .map(|position| async move {
            let last = if position == 0 {
                offsets[0] - 1
            } else {
                offsets[position - 1]
            };
            let mut sse = if position % 2 == 0 {
                bridge.open(path, token, Some(last)).await
            } else {
                let path = format!("{path}?last_event_id={last}");
                bridge.open(&path, token, None).await
            };
            opened(&mut sse).await;
            let missing = 200 - position;
            let got = lifecycle_ids(&mut sse, missing, Duration::from_secs(30)).await;
            if got != offsets[position..] {
                return Err(format!("after {last}: got {got:?}"));
            }
            if let Some(extra) = sse.next_event(Duration::from_millis(300)).await {
                return Err(format!("after {last}: unexpected {extra:?}"));
            }
            Ok(())
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_never_sees_another_tenants_events() {
    let bridge = start_bridge(|_| {}).await;
    let a = unique("rb_iso_a");
    // B shares A's partition: the strongest case, their records interleave in one log.
    let b = (0..10_000)
        .map(|_| unique("rb_iso_b"))
        .find(|b| partition_of(b) == partition_of(&a))
        .expect("a tenant on the same partition");
    let uploads = |t: &str| -> Vec<String> {
        let _ = t;
        (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect()
    };
    let (a_uploads, b_uploads) = (uploads(&a), uploads(&b));
    let (token_a, token_b) = (
        bridge.token(&a, SUBSCRIBE, 600),
        bridge.token(&b, SUBSCRIBE, 600),
    );
    let mut sub_a = bridge.open("/v1/events", &token_a, None).await;
    let mut sub_b = bridge.open("/v1/events", &token_b, None).await;
    // A asking for B's upload: the stream holds A's frames only, so it stays empty.
    let mut cross = bridge
        .open(
            &format!("/v1/uploads/{}/events", b_uploads[0]),
            &token_a,
            None,
        )
        .await;
    for sse in [&mut sub_a, &mut sub_b, &mut cross] {
        opened(sse).await;
    }

    let publisher = publisher(&bridge.config);
    let mut rng = Rng::from_clock();
    let mut started = HashSet::new();
    let mut lifecycle = [Vec::new(), Vec::new()];
    let mut progress_ids = [HashSet::new(), HashSet::new()];
    for n in 0..150 {
        let which = rng.below(2) as usize;
        let (tenant, ups) = if which == 0 {
            (&a, &a_uploads)
        } else {
            (&b, &b_uploads)
        };
        let upload = &ups[rng.below(3) as usize];
        let event = if started.insert(upload.clone()) {
            initiated(tenant, upload)
        } else if rng.below(5) == 0 {
            progress(tenant, upload, rng.below(100) as f64)
        } else {
            part(tenant, upload, n, 8)
        };
        let is_progress = event.event_type() == "UploadProgress";
        let id = event.meta.event_id.to_string();
        let delivery = publisher.publish(&event).await.expect("published");
        if is_progress {
            progress_ids[which].insert(id);
        } else {
            lifecycle[which].push((delivery.offset, id));
        }
    }

    for (which, sse) in [(0usize, &mut sub_a), (1, &mut sub_b)] {
        let own = if which == 0 { &a } else { &b };
        let mut seen = Vec::new();
        while seen.len() < lifecycle[which].len() {
            let event = sse
                .next_event(Duration::from_secs(30))
                .await
                .unwrap_or_else(|| panic!("tenant {which}: {} events only", seen.len()));
            let data = event.json();
            assert_eq!(
                data["meta"]["tenant_id"],
                own.as_str(),
                "foreign event {event:?}"
            );
            let id = data["meta"]["event_id"]
                .as_str()
                .expect("event id")
                .to_string();
            match event.offset() {
                Some(offset) => seen.push((offset, id)),
                None => assert!(progress_ids[which].contains(&id), "foreign progress"),
            }
        }
        assert_eq!(
            seen, lifecycle[which],
            "tenant {which}: every own event, in order"
        );
        // Anything still coming must be the tenant's own progress.
        while let Some(event) = sse.next_event(Duration::from_millis(500)).await {
            assert_eq!(event.json()["meta"]["tenant_id"], own.as_str());
            assert_eq!(event.offset(), None);
        }
    }
    assert_eq!(
        cross.next_event(Duration::from_millis(500)).await,
        None,
        "another tenant's upload reveals nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_and_streams_close_at_expiry() {
    let bridge = start_bridge(|s| {
        s.reauth_lead_secs = 1;
        s.heartbeat_secs = 1;
    })
    .await;
    let tenant = unique("rb_auth");
    let refused = |bridge: &Bridge, path: String, token: Option<String>| {
        let url = bridge.url(&path);
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let response = request.send().await.expect("response");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("json error");
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_string(),
            )
        }
    };
    assert_eq!(
        refused(&bridge, "/v1/events".into(), None).await,
        (401, "unauthorized".into())
    );
    let expired = bridge.token(&tenant, SUBSCRIBE, -5);
    assert_eq!(
        refused(&bridge, "/v1/events".into(), Some(expired.clone())).await,
        (401, "unauthorized".into())
    );
    assert_eq!(
        refused(&bridge, format!("/v1/events?token={expired}"), None).await,
        (401, "unauthorized".into())
    );
    let forged = tributary_runtime::token::TokenSigner::new(&[9; 32]).sign(
        &tributary_runtime::token::Claims {
            tid: tenant.clone(),
            cap: SUBSCRIBE.to_vec(),
            exp: i64::MAX / 2,
            iat: 0,
        },
    );
    assert_eq!(
        refused(&bridge, "/v1/events".into(), Some(forged)).await,
        (401, "unauthorized".into())
    );
    let upload_only = bridge.token(&tenant, &[Capability::Upload], 600);
    assert_eq!(
        refused(&bridge, "/v1/events".into(), Some(upload_only)).await,
        (403, "forbidden".into())
    );
    let live = bridge.token(&tenant, SUBSCRIBE, 600);
    assert_eq!(
        refused(
            &bridge,
            "/v1/uploads/not-an-id/events".into(),
            Some(live.clone())
        )
        .await,
        (404, "not_found".into())
    );
    assert_eq!(
        refused(
            &bridge,
            "/v1/events?last_event_id=x".into(),
            Some(live.clone())
        )
        .await,
        (400, "invalid_last_event_id".into())
    );

    // CORS: the API's page origins may open streams here; others get no allowance.
    let page = "http://127.0.0.1:8080";
    let response = reqwest::Client::new()
        .get(bridge.url(&format!("/v1/events?token={live}")))
        .header("origin", page)
        .send()
        .await
        .expect("response");
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.as_bytes()),
        Some(page.as_bytes())
    );
    drop(response);
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, bridge.url("/v1/events"))
        .header("origin", page)
        .header("access-control-request-method", "GET")
        .header(
            "access-control-request-headers",
            "authorization,last-event-id",
        )
        .send()
        .await
        .expect("preflight");
    assert!(preflight.status().is_success(), "{}", preflight.status());
    let foreign = reqwest::Client::new()
        .get(bridge.url(&format!("/v1/events?token={live}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .expect("response");
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    drop(foreign);

    // An idle stream: retry advice with jitter (2-5 s by default), then heartbeats.
    let mut idle = bridge.open("/v1/events", &live, None).await;
    let retry = idle
        .next_block(Duration::from_secs(5))
        .await
        .expect("in time")
        .and_then(|b| b.retry)
        .expect("retry first");
    assert!((2_000..=5_000).contains(&retry), "retry {retry}");
    let beat = idle
        .next_block(Duration::from_secs(3))
        .await
        .expect("heartbeat in time")
        .expect("open");
    assert!(beat.comment, "a heartbeat comment: {beat:?}");

    // A token with 3 s left (whole seconds, so 2-3 s): reauth about 1 s before, then the end.
    let short = bridge.token(&tenant, SUBSCRIBE, 3);
    let opened_at = Instant::now();
    let response = reqwest::Client::new()
        .get(bridge.url(&format!("/v1/events?token={short}")))
        .send()
        .await
        .expect("response");
    let mut sse = common::Sse::from_response(response);
    opened(&mut sse).await;
    let reauth = sse
        .next_event(Duration::from_secs(5))
        .await
        .expect("reauth before expiry");
    assert_eq!(reauth.event.as_deref(), Some("reauth"));
    assert!(reauth.json()["expires_at"].is_i64());
    let reauth_after = opened_at.elapsed();
    // Heartbeats may still come; then the stream ends.
    loop {
        match sse.next_block(Duration::from_secs(5)).await {
            Ok(None) => break,
            Ok(Some(block)) => assert!(block.comment, "only heartbeats after reauth: {block:?}"),
            Err(()) => panic!("the stream was not closed at expiry"),
        }
    }
    let closed_after = opened_at.elapsed();
    assert!(
        closed_after > reauth_after && closed_after <= Duration::from_secs(4),
        "reauth {reauth_after:?}, closed {closed_after:?}"
    );

    let metrics = reqwest::get(bridge.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("tributary_bridge_connections"),
        "{metrics}"
    );
    let health = reqwest::get(bridge.url("/healthz")).await.expect("healthz");
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_reset_and_loses_no_lifecycle_event() {
    // A ring of 8 frames: the slow reader overflows it quickly.
    let bridge = start_bridge(|s| {
        s.lifecycle_buffer = 8;
        s.catchup_batch = 16;
    })
    .await;
    let tenant = unique("rb_slow");
    let upload = uuid::Uuid::now_v7().to_string();
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    let mut slow = RawSse::open(bridge.addr, &format!("/v1/events?token={token}")).await;

    // ~1.5 MB of frames while the reader reads nothing: more than socket buffers and the
    // server's write buffer hold.
    let publisher = publisher(&bridge.config);
    let mut offsets = Vec::new();
    let first = publisher
        .publish(&initiated(&tenant, &upload))
        .await
        .expect("published");
    offsets.push(first.offset);
    for batch in 0..10 {
        let sends = (1..=100).map(|n| {
            let event = part(&tenant, &upload, batch * 100 + n, 1500);
            let publisher = publisher.clone();
            async move { publisher.publish(&event).await.expect("published").offset }
        });
        offsets.extend(futures::future::join_all(sends).await);
    }
    offsets.sort_unstable();
    let last = *offsets.last().expect("offsets");

    let mut ids = Vec::new();
    let mut resets = 0;
    while ids.last() != Some(&last) {
        let block = slow
            .next_block(Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("stream stalled after {} events", ids.len()));
        match block.event.as_deref() {
            Some("reset") => {
                resets += 1;
                // The reset names a position at or after the last event delivered (offsets
                // in between belong to other tenants).
                let position = block.offset().expect("a reset carries the position");
                assert!(ids.last().is_none_or(|&delivered| position >= delivered));
            }
            Some(_) => ids.push(block.offset().expect("id")),
            None => {}
        }
    }
    assert!(resets >= 1, "the slow reader was reset");
    assert_eq!(ids, offsets, "every lifecycle event exactly once, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_multiplex_over_http2() {
    let bridge = start_bridge(|_| {}).await;
    let tenant = unique("rb_h2");
    let upload = uuid::Uuid::now_v7().to_string();
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    // Prior knowledge (h2c): one connection carries both streams.
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client");
    let mut streams = Vec::new();
    for path in [
        "/v1/events".to_string(),
        format!("/v1/uploads/{upload}/events"),
    ] {
        let response = client
            .get(bridge.url(&path))
            .bearer_auth(&token)
            .send()
            .await
            .expect("response");
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let mut sse = common::Sse::from_response(response);
        opened(&mut sse).await;
        streams.push(sse);
    }
    let delivery = publisher(&bridge.config)
        .publish(&initiated(&tenant, &upload))
        .await
        .expect("published");
    for sse in &mut streams {
        let event = sse
            .next_event(Duration::from_secs(20))
            .await
            .expect("event over h2");
        assert_eq!(event.offset(), Some(delivery.offset));
        assert_eq!(event.event.as_deref(), Some("UploadInitiated"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_resumes_exactly_on_another_instance() {
    // Two instances side by side, as behind a load balancer: ids are log offsets, so a
    // browser that reconnects to the other instance continues exactly.
    let first = start_bridge(|_| {}).await;
    let second = start_bridge(|_| {}).await;
    let tenant = unique("rb_nodes");
    let upload = uuid::Uuid::now_v7().to_string();
    let token = first.token(&tenant, SUBSCRIBE, 600);
    let mut on_first = first.open("/v1/events", &token, None).await;
    opened(&mut on_first).await;
    let publisher = publisher(&first.config);
    let mut offsets = Vec::new();
    for n in 0..20 {
        let event = if n == 0 {
            initiated(&tenant, &upload)
        } else {
            part(&tenant, &upload, n, 8)
        };
        offsets.push(publisher.publish(&event).await.expect("published").offset);
    }
    let got = lifecycle_ids(&mut on_first, 10, Duration::from_secs(20)).await;
    assert_eq!(got, offsets[..10]);
    drop(on_first);
    let mut on_second = second.open("/v1/events", &token, Some(got[9])).await;
    opened(&mut on_second).await;
    let rest = lifecycle_ids(&mut on_second, 10, Duration::from_secs(20)).await;
    assert_eq!(rest, offsets[10..]);
    assert_eq!(on_second.next_event(Duration::from_millis(300)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_latest_progress_of_each_upload() {
    let bridge = start_bridge(|s| s.progress_buffer = 4).await;
    let tenant = unique("rb_progress");
    let uploads: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    let mut slow = RawSse::open(bridge.addr, &format!("/v1/events?token={token}")).await;

    // 600 progress frames of ~1.6 KB while the reader reads nothing.
    let publisher = publisher(&bridge.config);
    let stage = "s".repeat(1500);
    for step in 0..200 {
        let sends = uploads.iter().map(|upload| {
            let mut event = progress(&tenant, upload, f64::from(step) / 2.0);
            if let tributary_schemas::EventPayload::UploadProgress(p) = &mut event.payload {
                p.stage = stage.clone();
            }
            let publisher = publisher.clone();
            async move { publisher.publish(&event).await.expect("published") }
        });
        futures::future::join_all(sends).await;
    }

    let last = 199.0 / 2.0;
    let mut seen: std::collections::HashMap<String, Vec<f64>> = Default::default();
    let mut frames = 0;
    while uploads
        .iter()
        .any(|u| seen.get(u).and_then(|p| p.last()) != Some(&last))
    {
        let block = slow
            .next_block(Duration::from_secs(30))
            .await
            .expect("progress until each upload's latest");
        if block.event.as_deref() != Some("UploadProgress") {
            continue;
        }
        frames += 1;
        let data = block.json();
        let upload = data["meta"]["upload_id"]
            .as_str()
            .expect("upload")
            .to_string();
        let percent = data["payload"]["percent"].as_f64().expect("percent");
        seen.entry(upload).or_default().push(percent);
    }
    assert!(
        frames < 600,
        "the reader was slow enough to lose frames ({frames})"
    );
    for (upload, percents) in &seen {
        assert!(
            percents.windows(2).all(|w| w[0] <= w[1]),
            "{upload}: progress never goes back: {percents:?}"
        );
    }
}
