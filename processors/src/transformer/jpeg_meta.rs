//! The two pieces of JPEG metadata the pipeline honours before stripping everything:
//! the EXIF orientation and the ICC colour profile. A bounds-checked marker walk that stops
//! at the first scan; it never panics, whatever the bytes.

/// Metadata found in a JPEG's header segments.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JpegMeta {
    /// EXIF orientation (1..=8), 1 when absent or invalid.
    pub orientation: u8,
    /// The ICC profile, reassembled from its APP2 chunks.
    pub icc: Option<Vec<u8>>,
}

/// Reads orientation and ICC profile from the segments before the first SOS marker.
pub fn read(data: &[u8]) -> JpegMeta {
    let mut meta = JpegMeta {
        orientation: 1,
        icc: None,
    };
    let mut icc_chunks: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut pos = 2; // after SOI
    while pos + 4 <= data.len() {
        if data[pos] != 0xFF {
            break;
        }
        let marker = data[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break; // start of scan / end of image: no more header segments
        }
        let len = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        if len < 2 || pos + 2 + len > data.len() {
            break;
        }
        let body = &data[pos + 4..pos + 2 + len];
        match marker {
            0xE1 if body.starts_with(b"Exif\0\0") => {
                if let Some(o) = exif_orientation(&body[6..]) {
                    meta.orientation = o;
                }
            }
            0xE2 if body.starts_with(b"ICC_PROFILE\0") && body.len() > 14 => {
                icc_chunks.push((body[12], body[14..].to_vec()));
            }
            _ => {}
        }
        pos += 2 + len;
    }
    if !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|(seq, _)| *seq);
        meta.icc = Some(icc_chunks.into_iter().flat_map(|(_, c)| c).collect());
    }
    meta
}

/// The orientation tag (0x0112) of IFD0 of a TIFF structure.
fn exif_orientation(tiff: &[u8]) -> Option<u8> {
    let big_endian = match tiff.get(0..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b = tiff.get(at..at + 2)?;
        Some(if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b = tiff.get(at..at + 4)?;
        Some(if big_endian {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    for i in 0..entries.min(512) {
        let entry = ifd + 2 + i * 12;
        if u16_at(entry)? == 0x0112 {
            let value = u16_at(entry + 8)?;
            return u8::try_from(value).ok().filter(|v| (1..=8).contains(v));
        }
    }
    None
}

/// Builds an APP1 EXIF segment carrying only `orientation` (tests and fixtures use it).
pub fn exif_segment(orientation: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"II");
    tiff.extend_from_slice(&42u16.to_le_bytes());
    tiff.extend_from_slice(&8u32.to_le_bytes());
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes());
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes());
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]);
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut body = b"Exif\0\0".to_vec();
    body.extend_from_slice(&tiff);
    let len = u16::try_from(body.len() + 2).unwrap_or(u16::MAX);
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(&len.to_be_bytes());
    segment.extend_from_slice(&body);
    segment
}

/// Inserts `segment` right after the SOI marker of `jpeg`.
pub fn with_segment(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + segment.len());
    out.extend_from_slice(jpeg.get(..2).unwrap_or_default());
    out.extend_from_slice(segment);
    out.extend_from_slice(jpeg.get(2..).unwrap_or_default());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_orientation_it_wrote() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 0xFF, 0xD9];
        for o in 1..=8 {
            let tagged = with_segment(&jpeg, &exif_segment(o));
            assert_eq!(read(&tagged).orientation, u8::try_from(o).expect("small"));
        }
        assert_eq!(read(&jpeg).orientation, 1);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(mut bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            bytes.splice(0..0, [0xFF, 0xD8, 0xFF, 0xE1]);
            let _ = read(&bytes);
        }
    }
}
