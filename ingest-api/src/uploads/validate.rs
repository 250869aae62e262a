//! Validation of client-supplied upload fields. The filename is metadata only — objects are
//! stored under server-chosen keys — but it is shown to people and written to file systems
//! downstream, so anything that could traverse paths or hide characters is refused.

/// Longest accepted filename, in bytes (a common file-system limit).
pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a field was refused; the message is safe to show to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Bad filename.
    #[error("invalid filename: {0}")]
    Filename(&'static str),
    /// Bad content type syntax.
    #[error("invalid content type: {0}")]
    ContentType(&'static str),
}

/// Checks a filename and returns it trimmed of surrounding whitespace.
pub fn filename(raw: &str) -> Result<&str, FieldError> {
    let name = raw.trim();
    if name.is_empty() {
        return Err(FieldError::Filename("must not be empty"));
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(FieldError::Filename("longer than 255 bytes"));
    }
    if name.contains(['/', '\\']) {
        return Err(FieldError::Filename("must not contain path separators"));
    }
    if name.chars().all(|c| c == '.') {
        return Err(FieldError::Filename("must not be only dots"));
    }
    if name.contains("..") {
        return Err(FieldError::Filename("must not contain '..'"));
    }
    // Control characters (including NUL, DEL and C1) and the Unicode direction overrides that
    // make `evil\u{202e}gpj.exe` display as `evilexe.jpg`.
    if name.chars().any(|c| {
        c.is_control()
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    }) {
        return Err(FieldError::Filename(
            "must not contain control or direction characters",
        ));
    }
    if name.starts_with('-') {
        return Err(FieldError::Filename("must not start with '-'"));
    }
    Ok(name)
}

/// Normalizes a MIME type (`Image/JPEG; charset=x` -> `image/jpeg`) after checking its syntax.
pub fn content_type(raw: &str) -> Result<String, FieldError> {
    let essence = raw
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return Err(FieldError::ContentType("expected type/subtype"));
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    if !token(kind) || !token(subtype) {
        return Err(FieldError::ContentType(
            "expected type/subtype of token characters",
        ));
    }
    Ok(essence)
}

/// Whether `content_type` (normalized) is allowed by a tenant's allowlist, whose entries are
/// exact types, `type/*` wildcards or `*/*`.
pub fn content_type_allowed(allowlist: &[String], content_type: &str) -> bool {
    let kind = content_type.split('/').next().unwrap_or_default();
    allowlist.iter().any(|allowed| {
        let allowed = allowed.trim().to_ascii_lowercase();
        allowed == "*/*"
            || allowed == content_type
            || allowed
                .strip_suffix("/*")
                .is_some_and(|prefix| prefix == kind)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass_and_are_trimmed() {
        for name in [
            "photo.jpg",
            "Résumé 2026 (final).pdf",
            "日本語.png",
            ".bashrc",
            "a.b.c",
        ] {
            assert_eq!(filename(name), Ok(name));
        }
        assert_eq!(filename("  x.png "), Ok("x.png"));
    }

    #[test]
    fn hostile_names_are_refused() {
        let long = "a".repeat(256);
        for name in [
            "",
            "   ",
            "../../etc/passwd",
            "..",
            ".",
            "a/b.jpg",
            "a\\b.jpg",
            "C:\\x",
            "x\0.jpg",
            "x\n.jpg",
            "x\u{7f}",
            "evil\u{202e}gpj.exe",
            "-rf",
            "a..b",
            long.as_str(),
        ] {
            assert!(filename(name).is_err(), "{name:?} must be refused");
        }
    }

    #[test]
    fn content_types_normalize_and_reject_garbage() {
        assert_eq!(
            content_type("Image/JPEG; charset=binary"),
            Ok("image/jpeg".into())
        );
        assert_eq!(
            content_type("application/vnd.api+json"),
            Ok("application/vnd.api+json".into())
        );
        for bad in [
            "",
            "image",
            "/jpeg",
            "image/",
            "im age/jpeg",
            "image/jp\"eg",
            "a/b/c",
        ] {
            assert!(content_type(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allowlist_supports_wildcards() {
        let list = vec!["image/*".to_string(), "video/mp4".to_string()];
        assert!(content_type_allowed(&list, "image/webp"));
        assert!(content_type_allowed(&list, "video/mp4"));
        assert!(!content_type_allowed(&list, "video/quicktime"));
        assert!(!content_type_allowed(&list, "imagex/png"));
        assert!(!content_type_allowed(&list, "application/x-msdownload"));
        assert!(content_type_allowed(
            &["*/*".to_string()],
            "application/zip"
        ));
        assert!(!content_type_allowed(&[], "image/png"));
    }
}
