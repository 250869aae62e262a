//! Images through the whole pipeline against the real stack: API -> Kafka -> assembler ->
//! validator -> transformer -> storage, with the projector answering the status.

mod common;

use std::time::Duration;

use common::{Pipeline, events, of_upload, oriented_jpeg};
use serde_json::json;
use tributary_runtime::{testing, topics};
use tributary_schemas::{Event, UploadCompletionRequested};

const WITHIN: Duration = Duration::from_secs(90);

/// A PNG that declares `width` x `height` pixels: the shape of a decompression bomb (its
/// pixel data would inflate to gigabytes); the body after the header is junk.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
        out
    }
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &ihdr));
    png.extend(chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0x60, 0x00, 0x00]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[tokio::test]
async fn a_rotated_jpeg_becomes_upright_webp_variants_without_metadata() {
    let since = common::now_ms();
    let pipeline = Pipeline::start(&[], &[]).await;
    let tenant = pipeline.create_tenant(json!({})).await;
    // 1600x1200 landscape pixels, EXIF says "rotate 90° clockwise to display".
    let jpeg = oriented_jpeg(1600, 1200, 6);
    let upload_id = pipeline
        .upload(&tenant, "photo.jpg", "image/jpeg", &jpeg)
        .await;
    let status = pipeline.wait_terminal(&tenant, &upload_id, WITHIN).await;
    assert_eq!(status["state"], "ready", "{status}");

    let variants = status["variants"].as_array().expect("variants");
    let by_name = |name: &str| {
        variants
            .iter()
            .find(|v| v["variant"] == name || v["name"] == name)
            .unwrap_or_else(|| panic!("variant {name} in {status}"))
            .clone()
    };
    let display = by_name("display");
    assert_eq!(
        (display["width"].as_i64(), display["height"].as_i64()),
        (Some(960), Some(1280))
    );
    let thumb = by_name("thumb");
    assert_eq!(
        (thumb["width"].as_i64(), thumb["height"].as_i64()),
        (Some(240), Some(320))
    );

    // The stored display variant: WebP, upright (red on top), no EXIF or ICC chunks.
    let keys = common::list_keys(&format!("uploads/{}/{upload_id}/variants/", tenant.id)).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let key = keys
        .iter()
        .find(|k| k.ends_with("display.webp"))
        .expect("display key");
    let webp = common::get_object(key).await;
    assert_eq!(&webp[..4], b"RIFF");
    assert_eq!(&webp[8..12], b"WEBP");
    for chunk in [&b"EXIF"[..], b"ICCP", b"XMP "] {
        assert!(
            !webp.windows(4).any(|w| w == chunk),
            "metadata chunk {chunk:?} left in the output"
        );
    }
    let decoded = image::load_from_memory(&webp)
        .expect("decode webp")
        .into_rgb8();
    assert_eq!(decoded.dimensions(), (960, 1280));
    let top = decoded.get_pixel(480, 200);
    let bottom = decoded.get_pixel(480, 1080);
    assert!(top[0] > 150 && top[2] < 100, "top should be red: {top:?}");
    assert!(
        bottom[2] > 150 && bottom[0] < 100,
        "bottom should be blue: {bottom:?}"
    );

    // Events: the whole chain, with a placeholder on the variants.
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    for kind in ["UploadAssembled", "UploadValidated", "UploadReady"] {
        assert_eq!(of_upload(&log, &upload_id, kind).len(), 1, "{kind}");
    }
    let produced = of_upload(&log, &upload_id, "VariantProduced");
    assert_eq!(produced.len(), 2);
    for event in produced {
        let tributary_schemas::EventPayload::VariantProduced(v) = &event.payload else {
            unreachable!()
        };
        assert!(v.placeholder.as_deref().is_some_and(|p| !p.is_empty()));
    }

    // A redelivered completion request completes nothing twice.
    let duplicate = of_upload(&log, &upload_id, "UploadCompletionRequested")[0].clone();
    let config = testing::stack_config();
    let producer =
        tributary_runtime::kafka::Producer::new(&config.kafka, "tests").expect("producer");
    let publisher = tributary_runtime::events::EventPublisher::new(
        producer,
        std::sync::Arc::new(tributary_schemas::SchemaCatalog::embedded().expect("catalog")),
    );
    let mut again = Event::new(duplicate.meta.clone(), UploadCompletionRequested {});
    again.meta.event_id = uuid::Uuid::now_v7();
    publisher.publish(&again).await.expect("publish duplicate");
    publisher
        .publish(&duplicate)
        .await
        .expect("redeliver the original");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    assert_eq!(
        of_upload(&log, &upload_id, "UploadCompletionRequested").len(),
        3
    );
    assert_eq!(
        of_upload(&log, &upload_id, "UploadAssembled").len(),
        1,
        "assembled twice"
    );
    assert_eq!(of_upload(&log, &upload_id, "UploadRejected").len(), 0);

    // Ready frees the upload slot; the bytes stay reserved as stored.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let usage = pipeline.usage(&tenant).await;
        if usage == (jpeg.len() as i64, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage after ready: {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn hostile_and_mislabelled_files_are_rejected_with_a_reason_and_leave_nothing() {
    let since = common::now_ms();
    let pipeline = Pipeline::start(&[], &[]).await;
    let tenant = pipeline.create_tenant(json!({})).await;
    let jpeg = oriented_jpeg(800, 600, 1);
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.resize(3000, 0x5A);
    let mut avi = b"RIFF\x00\x10\x00\x00AVI LIST".to_vec();
    avi.extend_from_slice(b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\n#EXTINF:10.0,\nconcat:file:///etc/passwd\n#EXT-X-ENDLIST\n");
    avi.resize(4096, 0);
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "bomb.png",
            "image/png",
            png_bomb(50_000, 50_000),
            "image_too_large",
        ),
        (
            "truncated.jpg",
            "image/jpeg",
            jpeg[..jpeg.len() / 2].to_vec(),
            "undecodable_image",
        ),
        ("archive.jpg", "image/jpeg", zip, "content_type_mismatch"),
        (
            "playlist.mp4",
            "video/mp4",
            b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n".to_vec(),
            "disallowed_type",
        ),
        (
            "exploit.avi",
            "video/x-msvideo",
            avi,
            "unsupported_container",
        ),
    ];
    let mut uploads = Vec::new();
    for (name, content_type, bytes, _) in &cases {
        uploads.push(pipeline.upload(&tenant, name, content_type, bytes).await);
    }
    for ((name, _, _, code), upload_id) in cases.iter().zip(&uploads) {
        let status = pipeline.wait_terminal(&tenant, upload_id, WITHIN).await;
        assert_eq!(status["state"], "rejected", "{name}: {status}");
        let text = status.to_string();
        assert!(text.contains(code), "{name}: expected {code} in {status}");
    }
    // Nothing is left in storage, no variant was announced, and the quota is free again.
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let mut left = Vec::new();
        for upload_id in &uploads {
            left.extend(common::list_keys(&format!("uploads/{}/{upload_id}/", tenant.id)).await);
        }
        let usage = pipeline.usage(&tenant).await;
        if left.is_empty() && usage == (0, 0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {left:?}, usage {usage:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let log = events(topics::LIFECYCLE, &tenant.id, since);
    for upload_id in &uploads {
        assert!(of_upload(&log, upload_id, "VariantProduced").is_empty());
        assert_eq!(of_upload(&log, upload_id, "UploadRejected").len(), 1);
    }
}

/// Encodes a 1200x1600 portrait PNG (red top half, blue bottom half) with libheif's
/// `heif-enc` (`avif`: AV1 instead of HEVC); returns the file's bytes.
fn heif_fixture(avif: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("source.png");
    image::RgbImage::from_fn(1200, 1600, |_, y| {
        if y < 800 {
            image::Rgb([220, 20, 20])
        } else {
            image::Rgb([20, 20, 220])
        }
    })
    .save(&png)
    .expect("write png");
    let out = dir.path().join(if avif { "out.avif" } else { "out.heic" });
    let mut command = std::process::Command::new("heif-enc");
    if avif {
        command.arg("-A");
    }
    let status = command
        .args(["-q", "80"])
        .arg(&png)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run heif-enc (Debian libheif-examples, installed by ./devstack)");
    assert!(status.success(), "heif-enc failed");
    std::fs::read(out).expect("read encoded file")
}

#[tokio::test]
async fn heic_and_avif_photos_become_upright_webp_variants() {
    let pipeline = Pipeline::start(&[], &[]).await;
    let tenant = pipeline.create_tenant(json!({})).await;
    for (name, content_type, bytes) in [
        ("IMG_0001.HEIC", "image/heic", heif_fixture(false)),
        ("export.avif", "image/avif", heif_fixture(true)),
    ] {
        let upload_id = pipeline.upload(&tenant, name, content_type, &bytes).await;
        let status = pipeline.wait_terminal(&tenant, &upload_id, WITHIN).await;
        assert_eq!(status["state"], "ready", "{content_type}: {status}");
        let display = status["variants"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["variant"] == "display"))
            .unwrap_or_else(|| panic!("{content_type}: no display variant in {status}"))
            .clone();
        assert_eq!(
            (display["width"].as_i64(), display["height"].as_i64()),
            (Some(960), Some(1280)),
            "{content_type}"
        );
        let key = format!("uploads/{}/{upload_id}/variants/display.webp", tenant.id);
        let decoded = image::load_from_memory(&common::get_object(&key).await)
            .expect("decode webp")
            .into_rgb8();
        let (top, bottom) = (decoded.get_pixel(480, 200), decoded.get_pixel(480, 1080));
        assert!(top[0] > 150 && top[2] < 100, "{content_type}: top {top:?}");
        assert!(
            bottom[2] > 150 && bottom[0] < 100,
            "{content_type}: bottom {bottom:?}"
        );
    }
}
