//! Content sniffing: what the bytes of a file are, whatever its name or declared type says.
//!
//! Pure functions over the first bytes (and the last bytes, for polyglot checks) of an
//! object; they never panic on any input (a property test feeds them arbitrary bytes).

/// What a file's leading bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detected {
    /// Canonical content type.
    pub content_type: &'static str,
    /// Executables, scripts and playlists: never accepted, whatever was declared.
    pub dangerous: bool,
}

const fn kind(content_type: &'static str) -> Option<Detected> {
    Some(Detected {
        content_type,
        dangerous: false,
    })
}

const fn danger(content_type: &'static str) -> Option<Detected> {
    Some(Detected {
        content_type,
        dangerous: true,
    })
}

/// Identifies the format from the first bytes (4 KiB is plenty); `None` for unknown binary
/// data. Plain UTF-8 text without NUL bytes is `text/plain`.
pub fn sniff(head: &[u8]) -> Option<Detected> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return kind("image/jpeg");
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return kind("image/png");
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return kind("image/gif");
    }
    if starts(b"RIFF") {
        if at(8, b"WEBP") {
            return kind("image/webp");
        }
        if at(8, b"AVI ") {
            return kind("video/x-msvideo");
        }
        if at(8, b"WAVE") {
            return kind("audio/wav");
        }
    }
    if at(4, b"ftyp") {
        return ftyp(head.get(8..12).unwrap_or_default());
    }
    if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        let window = &head[..head.len().min(64)];
        return if contains(window, b"webm") {
            kind("video/webm")
        } else {
            kind("video/x-matroska")
        };
    }
    if starts(b"%PDF-") {
        return kind("application/pdf");
    }
    if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        return kind("application/zip");
    }
    if starts(&[0x1F, 0x8B]) {
        return kind("application/gzip");
    }
    if starts(&[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C]) {
        return kind("application/x-7z-compressed");
    }
    if starts(b"Rar!\x1a\x07") {
        return kind("application/vnd.rar");
    }
    if at(257, b"ustar") {
        return kind("application/x-tar");
    }
    if starts(b"ID3") || starts(&[0xFF, 0xFB]) || starts(&[0xFF, 0xF3]) {
        return kind("audio/mpeg");
    }
    if starts(b"OggS") {
        return kind("audio/ogg");
    }
    if starts(b"fLaC") {
        return kind("audio/flac");
    }
    if starts(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        return kind("application/x-ole-storage");
    }
    if starts(b"\x7fELF") {
        return danger("application/x-executable");
    }
    if starts(b"MZ") {
        return danger("application/x-msdownload");
    }
    if starts(&[0xCA, 0xFE, 0xBA, 0xBE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCE])
        || starts(&[0xFE, 0xED, 0xFA, 0xCF])
        || starts(&[0xCF, 0xFA, 0xED, 0xFE])
    {
        return danger("application/x-mach-binary");
    }
    if starts(b"#!") {
        return danger("text/x-shellscript");
    }
    let text = trim_text_start(head);
    if text.starts_with(b"#EXTM3U") {
        // A playlist makes media tools fetch other files or URLs.
        return danger("application/vnd.apple.mpegurl");
    }
    let lower: Vec<u8> = text.iter().take(256).map(u8::to_ascii_lowercase).collect();
    if lower.starts_with(b"<!doctype html")
        || lower.starts_with(b"<html")
        || lower.starts_with(b"<script")
    {
        return danger("text/html");
    }
    if lower.starts_with(b"<svg") || (lower.starts_with(b"<?xml") && contains(&lower, b"<svg")) {
        return kind("image/svg+xml");
    }
    if is_text(head) {
        return kind("text/plain");
    }
    None
}

fn ftyp(brand: &[u8]) -> Option<Detected> {
    match brand {
        b"heic" | b"heix" | b"hevc" | b"heim" | b"heis" | b"mif1" | b"msf1" => kind("image/heic"),
        b"avif" | b"avis" => kind("image/avif"),
        b"qt  " => kind("video/quicktime"),
        b"M4A " | b"M4B " => kind("audio/mp4"),
        _ => kind("video/mp4"),
    }
}

/// Skips a UTF-8 byte-order mark and leading whitespace.
fn trim_text_start(head: &[u8]) -> &[u8] {
    let head = head.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    &head[start..]
}

/// UTF-8 (allowing a character cut at the end of the window) without NUL or other C0
/// controls besides tab, CR, LF and form feed.
fn is_text(head: &[u8]) -> bool {
    if head.is_empty() {
        return false;
    }
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        // Only an incomplete sequence at the very end is tolerated.
        Err(e) => e.error_len().is_none() && head.len() - e.valid_up_to() < 4,
    };
    valid
        && head
            .iter()
            .all(|&b| b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Content types whose bytes [`sniff`] recognises: declaring one of these makes the bytes
/// answer for it.
fn has_signature(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/jpeg"
            | "image/png"
            | "image/gif"
            | "image/webp"
            | "image/heic"
            | "image/heif"
            | "image/avif"
            | "video/mp4"
            | "video/quicktime"
            | "video/webm"
            | "video/x-matroska"
            | "video/x-msvideo"
            | "application/pdf"
            | "application/zip"
            | "application/gzip"
            | "application/x-7z-compressed"
            | "application/vnd.rar"
            | "application/x-tar"
            | "audio/mpeg"
            | "audio/ogg"
            | "audio/flac"
            | "audio/wav"
            | "audio/mp4"
    )
}

/// The canonical spelling of a declared type (aliases browsers and OSes send).
fn canonical(declared: &str) -> &str {
    match declared {
        "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/heif" => "image/heic",
        "application/x-zip-compressed" | "application/x-zip" => "application/zip",
        "application/x-gzip" => "application/gzip",
        "audio/x-wav" | "audio/wave" => "audio/wav",
        "audio/mp3" => "audio/mpeg",
        "video/avi" | "video/msvideo" => "video/x-msvideo",
        "application/x-rar-compressed" => "application/vnd.rar",
        other => other,
    }
}

/// Whether `detected` bytes may be stored as `declared`.
fn compatible(declared: &str, detected: &str) -> bool {
    let declared = canonical(declared);
    if declared == detected {
        return true;
    }
    // MP4 and QuickTime share the ISO base media format and are mislabelled both ways.
    let iso = |t: &str| matches!(t, "video/mp4" | "video/quicktime" | "audio/mp4");
    if iso(declared) && iso(detected) {
        return true;
    }
    if declared == "video/webm" && detected == "video/x-matroska" {
        return true;
    }
    // Office documents are ZIP or OLE containers.
    if detected == "application/zip"
        && (declared.starts_with("application/vnd.openxmlformats")
            || declared.starts_with("application/vnd.oasis.opendocument")
            || declared == "application/epub+zip"
            || declared == "application/java-archive")
    {
        return true;
    }
    if detected == "application/x-ole-storage"
        && matches!(
            declared,
            "application/msword" | "application/vnd.ms-excel" | "application/vnd.ms-powerpoint"
        )
    {
        return true;
    }
    if detected == "text/plain"
        && (declared.starts_with("text/")
            || matches!(
                declared,
                "application/json"
                    | "application/xml"
                    | "application/x-ndjson"
                    | "application/yaml"
            ))
    {
        return true;
    }
    declared == "application/octet-stream"
}

/// The verdict on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored as `detected` (the sniffed type, or the declared one when nothing was detected).
    Accept {
        /// Content type the pipeline continues with.
        detected: String,
    },
    /// Refused with a code and a reason.
    Reject {
        /// Machine-readable reason.
        code: &'static str,
        /// Human-readable reason.
        reason: String,
    },
}

/// Judges an object from its first bytes (`head`, up to 4 KiB) and last bytes (`tail`, up to
/// 64 KiB; may overlap `head` for small files) against the `declared` content type.
pub fn judge(declared: &str, head: &[u8], tail: &[u8]) -> Verdict {
    let reject = |code, reason: String| Verdict::Reject { code, reason };
    let detected = sniff(head);
    if let Some(d) = detected.filter(|d| d.dangerous) {
        return reject(
            "disallowed_type",
            format!(
                "the file is {} (declared {declared}), which is never accepted",
                d.content_type
            ),
        );
    }
    let detected_type = match detected {
        Some(d) => d.content_type,
        None if has_signature(canonical(declared)) => {
            return reject(
                "content_type_mismatch",
                format!("the file was declared {declared} but its bytes are not {declared}"),
            );
        }
        None => {
            return Verdict::Accept {
                detected: declared.to_string(),
            };
        }
    };
    if !compatible(declared, detected_type) {
        return reject(
            "content_type_mismatch",
            format!("the file was declared {declared} but its bytes are {detected_type}"),
        );
    }
    if let Some(reason) = polyglot(detected_type, head, tail) {
        return reject("polyglot", reason);
    }
    let detected =
        if canonical(declared) == "application/octet-stream" || detected_type != "text/plain" {
            detected_type.to_string()
        } else {
            canonical(declared).to_string()
        };
    Verdict::Accept { detected }
}

/// A file that is also another format (a JPEG that is also a ZIP or an HTML page) can be
/// served as one and executed as the other.
fn polyglot(detected: &str, head: &[u8], tail: &[u8]) -> Option<String> {
    let media = detected.starts_with("image/")
        || detected.starts_with("video/")
        || detected.starts_with("audio/")
        || detected == "application/pdf";
    if !media {
        return None;
    }
    // A ZIP's end-of-central-directory record sits in the last 64 KiB.
    if contains(tail, b"PK\x05\x06") || contains(head, b"PK\x03\x04") {
        return Some(format!("the {detected} file also contains a ZIP archive"));
    }
    for marker in [&b"<script"[..], b"<html", b"<?php", b"<svg"] {
        if detected != "image/svg+xml" && contains_ignore_case(head, marker) {
            return Some(format!(
                "the {detected} file contains markup ({})",
                String::from_utf8_lossy(marker)
            ));
        }
    }
    if detected != "application/pdf" && contains(&head[..head.len().min(1024)], b"%PDF-") {
        return Some(format!("the {detected} file also looks like a PDF"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg() -> Vec<u8> {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        bytes.extend_from_slice(b"JFIF\0");
        bytes.resize(600, 0x11);
        bytes.extend_from_slice(&[0xFF, 0xD9]);
        bytes
    }

    #[test]
    fn recognises_common_formats() {
        assert_eq!(sniff(&jpeg()).map(|d| d.content_type), Some("image/jpeg"));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n....").map(|d| d.content_type),
            Some("image/png")
        );
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 ").map(|d| d.content_type),
            Some("image/webp")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypisom\0\0\0\0").map(|d| d.content_type),
            Some("video/mp4")
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypheic\0\0\0\0").map(|d| d.content_type),
            Some("image/heic")
        );
        assert_eq!(
            sniff(b"PK\x03\x04rest").map(|d| d.content_type),
            Some("application/zip")
        );
        assert_eq!(
            sniff(b"hello, world\n").map(|d| d.content_type),
            Some("text/plain")
        );
        assert_eq!(sniff(&[0, 1, 2, 3, 0xFF]), None);
    }

    #[test]
    fn executables_scripts_and_playlists_are_dangerous() {
        for bytes in [
            &b"\x7fELF\x02\x01"[..],
            b"MZ\x90\0",
            b"#!/bin/sh\nrm -rf /",
            b"#EXTM3U\nfile:///etc/passwd",
            b"<html><script>",
        ] {
            assert!(sniff(bytes).is_some_and(|d| d.dangerous), "{bytes:?}");
        }
    }

    #[test]
    fn matching_declarations_are_accepted() {
        assert_eq!(
            judge("image/jpeg", &jpeg(), &jpeg()),
            Verdict::Accept {
                detected: "image/jpeg".into()
            }
        );
        assert_eq!(
            judge("image/jpg", &jpeg(), &jpeg()),
            Verdict::Accept {
                detected: "image/jpeg".into()
            }
        );
        assert_eq!(
            judge("text/csv", b"a,b\n1,2\n", b"a,b\n1,2\n"),
            Verdict::Accept {
                detected: "text/csv".into()
            }
        );
        assert_eq!(
            judge("application/octet-stream", &jpeg(), &jpeg()),
            Verdict::Accept {
                detected: "image/jpeg".into()
            }
        );
        assert_eq!(
            judge("application/x-custom", &[0, 1, 2, 0xFE], &[0, 1, 2, 0xFE]),
            Verdict::Accept {
                detected: "application/x-custom".into()
            }
        );
    }

    #[test]
    fn mislabelled_files_are_rejected() {
        let zip = b"PK\x03\x04\x14\0\0\0".to_vec();
        let Verdict::Reject { code, reason } = judge("image/jpeg", &zip, &zip) else {
            panic!("a zip declared as jpeg must be rejected");
        };
        assert_eq!(code, "content_type_mismatch");
        assert!(reason.contains("application/zip"), "{reason}");
        assert!(matches!(
            judge("image/png", b"plain text", b"plain text"),
            Verdict::Reject {
                code: "content_type_mismatch",
                ..
            }
        ));
        assert!(matches!(
            judge("image/jpeg", &[0, 1, 2], &[0, 1, 2]),
            Verdict::Reject {
                code: "content_type_mismatch",
                ..
            }
        ));
        assert!(matches!(
            judge("application/octet-stream", b"\x7fELF\x02", b""),
            Verdict::Reject {
                code: "disallowed_type",
                ..
            }
        ));
        assert!(matches!(
            judge(
                "video/mp4",
                b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n",
                b""
            ),
            Verdict::Reject {
                code: "disallowed_type",
                ..
            }
        ));
    }

    #[test]
    fn polyglots_are_rejected() {
        let mut jpeg_zip = jpeg();
        jpeg_zip.extend_from_slice(b"PK\x03\x04....PK\x05\x06\0\0");
        assert!(matches!(
            judge("image/jpeg", &jpeg_zip[..512], &jpeg_zip),
            Verdict::Reject {
                code: "polyglot",
                ..
            }
        ));
        let mut gifar = b"GIF89a".to_vec();
        gifar.extend_from_slice(b"\x01\0\x01\0<script>alert(1)</script>");
        assert!(matches!(
            judge("image/gif", &gifar, &gifar),
            Verdict::Reject {
                code: "polyglot",
                ..
            }
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(declared in "[a-z]{1,8}/[a-z.+-]{1,12}", head in proptest::collection::vec(proptest::num::u8::ANY, 0..600), tail in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = judge(&declared, &head, &tail);
        }
    }
}
