//! Resumes against the real Kafka: served from the in-memory window when it reaches back far
//! enough, from the log otherwise, exactly either way; and `Last-Event-ID`s outside the log
//! (deleted by retention, or beyond its end). Each test reads a lifecycle topic of its own
//! (one partition, so it knows every record of it and can delete records), and the tests of
//! this file run one at a time because they compare the process-wide resume counters.

mod common;

use std::time::Duration;

use tributary_runtime::testing::{self, unique};
use tributary_runtime::token::Capability;

use common::{Bridge, Topics, counter, initiated, opened, part, publisher, start_bridge};

const SUBSCRIBE: &[Capability] = &[Capability::Subscribe];

/// Serializes the tests of this file (see the module docs).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The resume counters: (memory, log).
async fn resumes(bridge: &Bridge) -> (f64, f64) {
    let name = "tributary_bridge_resumes_total";
    (
        counter(bridge, name, "source=\"memory\"").await,
        counter(bridge, name, "source=\"log\"").await,
    )
}

/// Resumes `/v1/events` of `token` after `after` and checks it gets exactly `expected` (the
/// offsets after it), then nothing more.
async fn resume_exactly(bridge: &Bridge, token: &str, after: i64, expected: &[i64]) {
    let mut sse = bridge.open("/v1/events", token, Some(after)).await;
    opened(&mut sse).await;
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let event = sse
            .next_event(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("after {after}: only {got:?} of {expected:?}"));
        got.push(event.offset().expect("lifecycle events carry an id"));
    }
    assert_eq!(got, expected, "after {after}");
    if let Some(extra) = sse.next_event(Duration::from_millis(300)).await {
        panic!("after {after}: unexpected {extra:?}");
    }
}

fn after(offsets: &[i64], position: i64) -> Vec<i64> {
    offsets.iter().copied().filter(|&o| o > position).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_inside_the_window_are_served_from_memory() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let config = testing::stack_config();
    let topics = Topics::create(&config, 1).await;
    let publisher = publisher(&config);
    // R never has a live subscriber (its records stay Avro payloads in the window); F has one
    // (its records are upgraded to the frames the reader built). Both share the partition.
    let (r, f) = (unique("rb_win_r"), unique("rb_win_f"));
    let (upload_r, upload_f) = (
        uuid::Uuid::now_v7().to_string(),
        uuid::Uuid::now_v7().to_string(),
    );
    // Appended before the bridge starts: in the log only.
    let mut r_offsets = vec![topics.publish(&publisher, &initiated(&r, &upload_r)).await];
    for n in 1..5 {
        r_offsets.push(topics.publish(&publisher, &part(&r, &upload_r, n, 8)).await);
    }
    let before_window = r_offsets.len();

    let bridge = start_bridge(|s| topics.apply(s)).await;
    let (token_r, token_f) = (
        bridge.token(&r, SUBSCRIBE, 600),
        bridge.token(&f, SUBSCRIBE, 600),
    );
    let mut live_f = bridge.open("/v1/events", &token_f, None).await;
    opened(&mut live_f).await;
    let mut f_offsets = vec![topics.publish(&publisher, &initiated(&f, &upload_f)).await];
    for n in 5..45 {
        let offset = if n % 2 == 0 {
            topics.publish(&publisher, &part(&r, &upload_r, n, 8)).await
        } else {
            topics.publish(&publisher, &part(&f, &upload_f, n, 8)).await
        };
        if n % 2 == 0 {
            r_offsets.push(offset);
        } else {
            f_offsets.push(offset);
        }
    }
    // F's last event is the partition's last record: once it is live, the reader has
    // remembered every record before it.
    let mut live = Vec::new();
    while live.len() < f_offsets.len() {
        let event = live_f
            .next_event(Duration::from_secs(20))
            .await
            .expect("live events");
        live.push(event.offset().expect("id"));
    }
    assert_eq!(live, f_offsets);

    let (memory, log) = resumes(&bridge).await;
    let window_r = &r_offsets[before_window..];
    // From where the window starts (the reader's start), inside it, and at its end.
    let positions_r = [
        r_offsets[before_window - 1],
        window_r[0],
        window_r[7],
        window_r[window_r.len() - 2],
        *window_r.last().expect("offsets"),
        f_offsets[3],
    ];
    for position in positions_r {
        resume_exactly(&bridge, &token_r, position, &after(&r_offsets, position)).await;
    }
    let positions_f = [f_offsets[0], f_offsets[10], *f_offsets.last().expect("f")];
    for position in positions_f {
        resume_exactly(&bridge, &token_f, position, &after(&f_offsets, position)).await;
    }
    let served = (positions_r.len() + positions_f.len()) as f64;
    assert_eq!(
        resumes(&bridge).await,
        (memory + served, log),
        "every resume inside the window is served from memory"
    );

    // Older than the window: from the log, exactly, then the window's part from memory is
    // not involved (one catch-up from the log up to the live position).
    let position = r_offsets[1];
    resume_exactly(&bridge, &token_r, position, &after(&r_offsets, position)).await;
    assert_eq!(resumes(&bridge).await, (memory + served, log + 1.0));

    drop(live_f);
    drop(bridge);
    topics.delete(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_window_evicts_the_oldest_and_the_log_serves_them() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let config = testing::stack_config();
    let topics = Topics::create(&config, 1).await;
    let publisher = publisher(&config);
    // A few kilobytes: some ten records of the partition.
    let bridge = start_bridge(|s| {
        topics.apply(s);
        s.resume_window_bytes = 4096;
    })
    .await;
    let (r, witness) = (unique("rb_evict_r"), unique("rb_evict_w"));
    let upload = uuid::Uuid::now_v7().to_string();
    let token = bridge.token(&r, SUBSCRIBE, 600);
    let witness_token = bridge.token(&witness, SUBSCRIBE, 600);
    let mut watching = bridge.open("/v1/events", &witness_token, None).await;
    opened(&mut watching).await;
    let mut offsets = vec![topics.publish(&publisher, &initiated(&r, &upload)).await];
    for n in 1..30 {
        offsets.push(topics.publish(&publisher, &part(&r, &upload, n, 8)).await);
    }
    // The witness's event comes after all of R's: once it is live, the reader saw them.
    let marker = topics
        .publish(&publisher, &initiated(&witness, &upload))
        .await;
    let seen = watching
        .next_event(Duration::from_secs(20))
        .await
        .expect("witness event");
    assert_eq!(seen.offset(), Some(marker));

    let (memory, log) = resumes(&bridge).await;
    resume_exactly(&bridge, &token, offsets[0], &offsets[1..]).await;
    assert_eq!(
        resumes(&bridge).await,
        (memory, log + 1.0),
        "evicted: from the log"
    );
    resume_exactly(&bridge, &token, offsets[28], &offsets[29..]).await;
    assert_eq!(
        resumes(&bridge).await,
        (memory + 1.0, log + 1.0),
        "recent: from memory"
    );

    drop(watching);
    drop(bridge);
    topics.delete(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_ids_outside_the_log_get_reset_or_400() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let config = testing::stack_config();
    let topics = Topics::create(&config, 1).await;
    let publisher = publisher(&config);
    let tenant = unique("rb_bounds");
    let upload = uuid::Uuid::now_v7().to_string();
    let mut offsets = vec![
        topics
            .publish(&publisher, &initiated(&tenant, &upload))
            .await,
    ];
    for n in 1..10 {
        offsets.push(
            topics
                .publish(&publisher, &part(&tenant, &upload, n, 8))
                .await,
        );
    }
    // Retention removed the first five records.
    topics.delete_lifecycle_before(&config, 0, offsets[5]).await;
    let bridge = start_bridge(|s| topics.apply(s)).await;
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    let resets = || counter(&bridge, "tributary_bridge_resets_total", "history_expired");
    let resets_before = resets().await;

    // Older than the log: reset (refetch), positioned at the reader's start, then live.
    let reader_start = offsets[9] + 1;
    let mut expired = bridge.open("/v1/events", &token, Some(offsets[2])).await;
    let path = format!("/v1/uploads/{upload}/events?last_event_id={}", offsets[0]);
    let mut expired_upload = bridge.open(&path, &token, None).await;
    for sse in [&mut expired, &mut expired_upload] {
        opened(sse).await;
        let reset = sse
            .next_event(Duration::from_secs(20))
            .await
            .expect("reset");
        assert_eq!(reset.event.as_deref(), Some("reset"), "{reset:?}");
        assert_eq!(reset.offset(), Some(reader_start - 1));
        let data = reset.json();
        assert_eq!(data["reason"], "history_expired");
        assert_eq!(data["refetch"], true);
        assert_eq!(data["last_event_id"], (reader_start - 1).to_string());
    }
    assert_eq!(resets().await, resets_before + 2.0);
    let next = topics
        .publish(&publisher, &part(&tenant, &upload, 10, 8))
        .await;
    for sse in [&mut expired, &mut expired_upload] {
        let event = sse.next_event(Duration::from_secs(20)).await.expect("live");
        assert_eq!(event.offset(), Some(next), "live after the reset");
    }
    offsets.push(next);

    // Right at the low watermark: nothing was lost, the log serves the rest exactly.
    let (_, log) = resumes(&bridge).await;
    resume_exactly(&bridge, &token, offsets[4], &offsets[5..]).await;
    assert_eq!(resumes(&bridge).await.1, log + 1.0);

    // At or beyond the end of the log: a clear 400, for either route, header or query.
    let end = next + 1;
    for (path, id) in [
        ("/v1/events".to_string(), end),
        ("/v1/events".to_string(), 1_000_000_000_000),
        (format!("/v1/uploads/{upload}/events"), i64::MAX),
    ] {
        let refused = bridge.open(&path, &token, Some(id)).await;
        assert_eq!(refused.status, 400, "{path} after {id}");
        let body = refused.error_json().await;
        assert_eq!(body["error"]["code"], "last_event_id_ahead", "{body}");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("beyond the end"), "{message}");
        let query = format!("{path}?last_event_id={id}");
        let refused = bridge.open(&query, &token, None).await;
        assert_eq!(refused.status, 400, "{query}");
    }
    // Malformed ids stay a 400 of their own.
    let malformed = bridge
        .open("/v1/events?last_event_id=-2", &token, None)
        .await;
    assert_eq!(malformed.status, 400);
    assert_eq!(
        malformed.error_json().await["error"]["code"],
        "invalid_last_event_id"
    );
    // The last record is not from the future.
    resume_exactly(&bridge, &token, next, &[]).await;

    drop((expired, expired_upload));
    drop(bridge);
    topics.delete(&config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_while_events_flow_have_no_gap_and_no_duplicate_at_the_seam() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let config = testing::stack_config();
    let topics = std::sync::Arc::new(Topics::create(&config, 1).await);
    let publisher = publisher(&config);
    let bridge = start_bridge(|s| topics.apply(s)).await;
    // No live subscriber before the first resume: the race between the reader deciding a
    // record has no subscriber and a session subscribing is the one the seam must survive.
    let tenant = unique("rb_seam");
    let upload = uuid::Uuid::now_v7().to_string();
    let marker = uuid::Uuid::now_v7().to_string();
    let token = bridge.token(&tenant, SUBSCRIBE, 600);
    let first = topics
        .publish(&publisher, &initiated(&tenant, &upload))
        .await;
    let published = std::sync::Arc::new(std::sync::Mutex::new(vec![first]));
    let flow = {
        let (topics, publisher, published) = (topics.clone(), publisher.clone(), published.clone());
        let (tenant, upload, marker) = (tenant.clone(), upload.clone(), marker.clone());
        tokio::spawn(async move {
            for n in 1..300 {
                let offset = topics
                    .publish(&publisher, &part(&tenant, &upload, n, 8))
                    .await;
                published.lock().expect("offsets").push(offset);
            }
            let end = topics
                .publish(&publisher, &initiated(&tenant, &marker))
                .await;
            published.lock().expect("offsets").push(end);
        })
    };
    // Resumes opened while the events flow, each a little behind the newest published one.
    let mut rng = common::Rng::from_clock();
    let mut streams = Vec::new();
    while !flow.is_finished() && streams.len() < 40 {
        let after = {
            let offsets = published.lock().expect("offsets");
            let back = rng.below(10.min(offsets.len() as u64)) as usize;
            offsets[offsets.len() - 1 - back]
        };
        let sse = bridge.open("/v1/events", &token, Some(after)).await;
        streams.push((after, sse));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    flow.await.expect("publisher");
    println!("{} resumes during the flow", streams.len());
    assert!(
        streams.len() >= 10,
        "only {} resumes during the flow",
        streams.len()
    );
    let offsets = published.lock().expect("offsets").clone();
    for (position, mut sse) in streams {
        opened(&mut sse).await;
        let mut got = Vec::new();
        loop {
            let event = sse
                .next_event(Duration::from_secs(20))
                .await
                .unwrap_or_else(|| panic!("after {position}: stalled after {got:?}"));
            if event.event.as_deref() == Some("reset") {
                // A stream not read while the flow ran may overrun its ring: the reset is
                // no gap (the catch-up after it is checked by the same comparison).
                continue;
            }
            got.push(event.offset().expect("id"));
            if event.json()["meta"]["upload_id"] == marker.as_str() {
                break;
            }
        }
        assert_eq!(got, after(&offsets, position), "after {position}");
    }
    drop(bridge);
    if let Ok(topics) = std::sync::Arc::try_unwrap(topics) {
        topics.delete(&config).await;
    }
}
