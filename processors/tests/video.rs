//! Videos through the pipeline against the real stack: an HLS ladder verified with ffprobe,
//! and a transformer killed with SIGKILL mid-transcode that, restarted, announces every
//! variant exactly once.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Pipeline, events, of_upload};
use serde_json::json;
use tributary_runtime::topics;
use tributary_schemas::EventPayload;

/// An MP4 (H.264 + AAC) test pattern of `seconds` at `width` x `height`, made by ffmpeg.
fn test_video(dir: &Path, seconds: u32, width: u32, height: u32) -> Vec<u8> {
    let path = dir.join(format!("input-{seconds}s-{width}x{height}.mp4"));
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=30:duration={seconds}"),
        ])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={seconds}"),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg could not make the test video");
    std::fs::read(&path).expect("read test video")
}

/// Downloads every object under `prefix` into `dir`, keeping relative paths.
async fn download_prefix(prefix: &str, dir: &Path) {
    for key in common::list_keys(prefix).await {
        let relative = key.strip_prefix(prefix).expect("under prefix");
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::write(&target, common::get_object(&key).await).expect("write");
    }
}

#[tokio::test]
async fn a_video_becomes_a_playable_hls_ladder_with_a_poster() {
    let work = tempfile::tempdir().expect("tempdir");
    let video = test_video(work.path(), 6, 1280, 720);
    let pipeline = Pipeline::start(&[], &[]).await;
    let tenant = pipeline.create_tenant(json!({})).await;
    let upload_id = pipeline
        .upload(&tenant, "clip.mp4", "video/mp4", &video)
        .await;
    let status = pipeline
        .wait_terminal(&tenant, &upload_id, Duration::from_secs(180))
        .await;
    assert_eq!(status["state"], "ready", "{status}");
    let names: Vec<&str> = status["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .filter_map(|v| v["variant"].as_str())
        .collect();
    for expected in ["hls", "hls-720p", "hls-480p", "poster"] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let out = work.path().join("hls");
    let prefix = format!("uploads/{}/{upload_id}/variants/", tenant.id);
    download_prefix(&prefix, &out).await;
    let master = std::fs::read_to_string(out.join("master.m3u8")).expect("master playlist");
    assert!(master.contains("#EXT-X-STREAM-INF"), "{master}");
    for (rendition, height) in [("720p", "720"), ("480p", "480")] {
        let probed = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-protocol_whitelist",
                "file",
                "-select_streams",
                "v:0",
            ])
            .args([
                "-show_entries",
                "stream=codec_name,height",
                "-of",
                "csv=p=0",
            ])
            .arg(out.join(rendition).join("index.m3u8"))
            .output()
            .expect("run ffprobe");
        let text = String::from_utf8_lossy(&probed.stdout);
        assert!(probed.status.success(), "ffprobe failed on {rendition}");
        // The HLS demuxer lists the stream once per program; every listing must agree.
        let listed: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert!(!listed.is_empty(), "{rendition}: no video stream");
        assert!(
            listed.iter().all(|l| *l == format!("h264,{height}")),
            "{rendition}: {text}"
        );
        let duration = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-protocol_whitelist",
                "file",
                "-show_entries",
                "format=duration",
                "-of",
                "csv=p=0",
            ])
            .arg(out.join(rendition).join("index.m3u8"))
            .output()
            .expect("run ffprobe");
        let seconds: f64 = String::from_utf8_lossy(&duration.stdout)
            .lines()
            .find_map(|l| l.trim().parse().ok())
            .unwrap_or(0.0);
        assert!((seconds - 6.0).abs() < 0.5, "{rendition} lasts {seconds} s");
    }
    let poster = out.join("poster.jpg");
    assert!(
        image::open(&poster).is_ok(),
        "the poster is a readable image"
    );
}

#[tokio::test]
async fn a_transformer_killed_mid_job_announces_each_variant_exactly_once() {
    let work = tempfile::tempdir().expect("tempdir");
    let video = test_video(work.path(), 40, 1280, 720);
    let since = common::now_ms();
    let mut pipeline = Pipeline::start(&[], &[]).await;
    let tenant = pipeline.create_tenant(json!({})).await;
    let upload_id = pipeline
        .upload(&tenant, "long.mp4", "video/mp4", &video)
        .await;

    // Kill the transformer once it reports transcoding progress: mid-job by construction.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let progress = events(topics::PROGRESS, &tenant.id, since);
        if progress
            .iter()
            .any(|e| matches!(&e.payload, EventPayload::UploadProgress(p) if p.percent > 0.0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no transcoding progress within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    pipeline.kill_processor("transformer");
    let before = events(topics::LIFECYCLE, &tenant.id, since);
    assert!(
        of_upload(&before, &upload_id, "VariantProduced").is_empty(),
        "killed too late"
    );
    pipeline.start_processor("transformer");

    let status = pipeline
        .wait_terminal(&tenant, &upload_id, Duration::from_secs(240))
        .await;
    assert_eq!(status["state"], "ready", "{status}");
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    let produced = of_upload(&log, &upload_id, "VariantProduced");
    let mut names: Vec<String> = produced
        .iter()
        .filter_map(|e| match &e.payload {
            EventPayload::VariantProduced(v) => Some(v.variant.clone()),
            _ => None,
        })
        .collect();
    names.sort();
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(names, unique, "a variant was announced twice");
    assert!(names.len() >= 3, "{names:?}");
    assert_eq!(of_upload(&log, &upload_id, "UploadReady").len(), 1);
    // The objects of the first, killed attempt were overwritten, not duplicated.
    let keys = common::list_keys(&format!("uploads/{}/{upload_id}/variants/", tenant.id)).await;
    assert!(
        keys.iter().filter(|k| k.ends_with("master.m3u8")).count() == 1,
        "{keys:?}"
    );
}
