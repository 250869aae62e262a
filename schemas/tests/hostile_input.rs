//! `decode` must return an error, never panic or allocate without bound, whatever the bytes.
//! proptest turns a panic into a test failure, so these properties really check that.

mod common;

use proptest::prelude::*;
use tributary_schemas::*;

fn known_ids() -> Vec<u32> {
    Manifest::embedded()
        .expect("manifest")
        .entries()
        .map(|e| e.id)
        .collect()
}

fn valid_messages() -> Vec<Vec<u8>> {
    common::samples()
        .iter()
        .chain(common::sparse_samples().iter())
        .map(|e| encode(e).expect("encode"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_body_after_every_known_id(
        index in any::<proptest::sample::Index>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let ids = known_ids();
        let id = ids[index.index(ids.len())];
        let mut bytes = frame_header(id).to_vec();
        bytes.extend(&body);
        if let Ok(event) = decode(&bytes) {
            // Whatever decodes is a well-formed event of the id's subject.
            let subject = &Manifest::embedded().expect("manifest").by_id(id).expect("id").subject;
            prop_assert_eq!(&event.kind().subject(), subject);
        }
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_messages(
        index in any::<proptest::sample::Index>(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
        truncate in any::<proptest::sample::Index>(),
        do_truncate in any::<bool>(),
    ) {
        let messages = valid_messages();
        let mut bytes = messages[index.index(messages.len())].clone();
        for (at, value) in flips {
            // keep the header so the body is decoded
            let pos = 5 + at.index(bytes.len() - 5);
            bytes[pos] = value;
        }
        if do_truncate {
            bytes.truncate(5 + truncate.index(bytes.len() - 5));
        }
        let _ = decode(&bytes);
    }
}

#[test]
fn every_known_id_with_an_empty_or_tiny_body_is_an_error() {
    for id in known_ids() {
        for body in [&[][..], &[0][..], &[0x80][..], &[0xff; 10][..]] {
            let mut bytes = frame_header(id).to_vec();
            bytes.extend(body);
            assert!(decode(&bytes).is_err(), "id {id} body {body:?}");
        }
    }
}
