//! Sample events shared by the integration tests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use tributary_schemas::*;

/// Envelope with every field set to a non-default value.
/// `seq` makes the event id; the same arguments give the same envelope.
pub fn meta(seq: usize, upload: bool) -> EventMeta {
    EventMeta {
        event_id: format!("01968f2e-5a1b-7c3d-8e4f-{seq:012x}")
            .parse()
            .expect("uuid"),
        tenant_id: "tenant-7f3a".into(),
        upload_id: upload.then(|| "01968f2e-upload".into()),
        occurred_at: 1_767_225_600_123_456,
        producer: "ingest-api@0.1.0".into(),
        causation_id: Some("01968f2e-cause".into()),
        correlation_id: "req-42".into(),
    }
}

/// One event of every type, optional fields set, values far from defaults.
pub fn samples() -> Vec<Event> {
    let policy = (
        5 * 1024 * 1024 * 1024_i64,
        vec!["image/*".to_owned(), "video/mp4".to_owned()],
        1 << 40,
        12,
    );
    let payloads: Vec<EventPayload> = vec![
        UploadInitiated {
            filename: "holiday \u{1F3D6}.mov".into(),
            size: 7 * 1024 * 1024 * 1024,
            content_type: "video/quicktime".into(),
            bucket: "tributary-uploads".into(),
            object_key: "t/tenant-7f3a/u/01968f2e/original".into(),
            s3_upload_id: "2~abcDEF".into(),
            part_size: 64 * 1024 * 1024,
            part_count: 112,
            sha256: Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into()),
            metadata: BTreeMap::from([
                ("album".to_owned(), "summer".to_owned()),
                ("camera".to_owned(), "x100".to_owned()),
            ]),
            expires_at: 1_767_312_000_000_000,
        }
        .into(),
        PartConfirmed {
            part_number: 111,
            etag: "\"9b2cf535f27731c974343645a3985328\"".into(),
            size: 64 * 1024 * 1024,
        }
        .into(),
        UploadCompletionRequested {}.into(),
        UploadAssembled {
            size: 7 * 1024 * 1024 * 1024 + 5,
            etag: "\"abc-112\"".into(),
            sha256: Some("00ff".into()),
        }
        .into(),
        UploadValidated {
            detected_content_type: "video/quicktime".into(),
        }
        .into(),
        UploadRejected {
            reason_code: "content_type_mismatch".into(),
            reason: "declared image/png, detected application/zip".into(),
            stage: "validation".into(),
        }
        .into(),
        VariantProduced {
            variant: "hls_720p".into(),
            object_key: "t/tenant-7f3a/u/01968f2e/hls_720p/index.m3u8".into(),
            content_type: "application/vnd.apple.mpegurl".into(),
            size: 1234,
            width: Some(1280),
            height: Some(720),
            placeholder: Some("LEHV6nWB2yk8pyo0adR*.7kCMdnj".into()),
        }
        .into(),
        ProcessingFailed {
            stage: "transcode".into(),
            reason: "ffmpeg exited with 1".into(),
            retryable: true,
        }
        .into(),
        UploadReady { variant_count: 4 }.into(),
        UploadAborted {
            reason: "client_request".into(),
        }
        .into(),
        UploadExpired {}.into(),
        UploadDeleted {}.into(),
        TenantCreated {
            name: "Acme Photos".into(),
            max_file_size: policy.0,
            allowed_content_types: policy.1.clone(),
            byte_quota: policy.2,
            max_concurrent_uploads: policy.3,
        }
        .into(),
        ApiKeyIssued {
            key_id: "key_01HZX".into(),
            key_hash: "sha256:5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
                .into(),
            expires_at: Some(1_800_000_000_000_000),
        }
        .into(),
        ApiKeyRevoked {
            key_id: "key_01HZX".into(),
        }
        .into(),
        QuotaChanged {
            max_file_size: policy.0 * 2,
            allowed_content_types: vec!["image/png".into()],
            byte_quota: policy.2 / 2,
            max_concurrent_uploads: 3,
        }
        .into(),
        UploadProgress {
            stage: "transcoding".into(),
            bytes_done: 3_000_000_000,
            bytes_total: 7_000_000_000,
            percent: 42.857,
        }
        .into(),
        MediaJobRequested {
            kind: MediaJobRequested::KIND_VIDEO.into(),
            bucket: "tributary-uploads".into(),
            object_key: "t/tenant-7f3a/u/01968f2e/original".into(),
            content_type: "video/quicktime".into(),
            size: 7 * 1024 * 1024 * 1024,
        }
        .into(),
    ];
    payloads
        .into_iter()
        .enumerate()
        .map(|(seq, payload)| {
            let upload = payload.event_type().is_upload_scoped();
            Event::new(meta(seq, upload), payload)
        })
        .collect()
}

/// Samples with every optional field null and empty collections.
pub fn sparse_samples() -> Vec<Event> {
    samples()
        .into_iter()
        .map(|mut event| {
            event.meta.causation_id = None;
            match &mut event.payload {
                EventPayload::UploadInitiated(p) => {
                    p.sha256 = None;
                    p.metadata.clear();
                }
                EventPayload::UploadAssembled(p) => p.sha256 = None,
                EventPayload::VariantProduced(p) => {
                    p.width = None;
                    p.height = None;
                    p.placeholder = None;
                }
                EventPayload::ApiKeyIssued(p) => p.expires_at = None,
                EventPayload::TenantCreated(p) => p.allowed_content_types.clear(),
                _ => {}
            }
            event
        })
        .collect()
}
