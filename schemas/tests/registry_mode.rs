//! Registry mode ([`SchemaCatalog::from_registry`]) without a registry: URL validation,
//! behaviour when the registry is unreachable, and the lazy-fetch path's behaviour without a
//! registry. The JSON request/response handling has unit tests in `src/registry.rs`; the
//! end-to-end tests against a real registry (Apicurio, started by `./devstack test`) are in
//! `registry_live.rs`.

use std::net::TcpListener;

use tributary_schemas::registry::RegistryError;
use tributary_schemas::*;

#[tokio::test]
async fn unreachable_registry_is_a_transport_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let err = SchemaCatalog::from_registry(&format!("http://127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens");
    match &err {
        RegistryError::Transport { method, url, .. } => {
            assert_eq!(*method, "POST");
            assert_eq!(
                url,
                &format!(
                    "http://127.0.0.1:{port}/subjects/tributary.events.UploadInitiated/versions"
                )
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        err.to_string().starts_with("registry request POST "),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_registry_urls_are_refused() {
    for url in ["", "127.0.0.1:8081", "ftp://registry", "mailto:x@y"] {
        let err = SchemaCatalog::from_registry(url).await.expect_err(url);
        assert!(
            matches!(err, RegistryError::InvalidUrl { .. }),
            "{url}: {err}"
        );
    }
}

#[tokio::test]
async fn without_a_registry_unknown_ids_stay_unknown() {
    let catalog = SchemaCatalog::embedded().expect("catalog");
    assert!(catalog.registry().is_none());
    assert_eq!(
        catalog
            .ensure_id(77)
            .await
            .expect_err("unknown")
            .to_string(),
        "unknown schema id 77"
    );
    catalog.ensure_id(1).await.expect("known");
    let err = catalog
        .decode_async(&[0, 0, 0, 0, 77, 1, 2])
        .await
        .expect_err("unknown");
    assert!(matches!(err, DecodeError::UnknownSchemaId(77)));
    let event = Event::new(
        EventMeta::new("t", Some("u".into()), "test@0", "c", None),
        UploadReady { variant_count: 1 },
    );
    let bytes = catalog.encode(&event).expect("encode");
    assert_eq!(catalog.decode_async(&bytes).await.expect("decode"), event);
}
