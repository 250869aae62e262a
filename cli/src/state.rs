//! The local record that makes an upload resumable after Ctrl-C, a crash or a dropped
//! network: which session a file belongs to and which parts the API has confirmed. One JSON
//! file per (API, file path, size, modification time), rewritten atomically after every
//! confirmed part; deleted once completion was accepted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What is remembered about one file's upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Format version of this record.
    pub version: u32,
    /// API base URL the session lives on.
    pub api: String,
    /// The file, absolute.
    pub file: PathBuf,
    /// Its size when the upload started.
    pub size: u64,
    /// Its modification time (nanoseconds since the epoch) when the upload started.
    pub modified_ns: u128,
    /// Its sha256 (hex), declared to the API.
    pub sha256: String,
    /// `Idempotency-Key` of the initiation: a retried initiation returns the same session.
    pub idempotency_key: String,
    /// The session, once initiated.
    pub upload_id: Option<String>,
    /// Bytes per part.
    pub part_size: u64,
    /// Parts in all.
    pub part_count: u32,
    /// Parts the API confirmed.
    pub confirmed: BTreeSet<u32>,
}

/// Identity of a file version: what the state file is named after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIdentity {
    /// Absolute path.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified_ns: u128,
}

impl FileIdentity {
    /// Reads the identity of `path` from the file system.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let path = std::fs::canonicalize(path)?;
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let modified_ns = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        Ok(Self {
            path,
            size: meta.len(),
            modified_ns,
        })
    }

    /// The state file of this version of the file for `api`, under `dir`.
    pub fn state_path(&self, dir: &Path, api: &str) -> PathBuf {
        let mut hasher = Sha256::new();
        hasher.update(api.as_bytes());
        hasher.update([0]);
        hasher.update(self.path.as_os_str().as_encoded_bytes());
        hasher.update([0]);
        hasher.update(self.size.to_be_bytes());
        hasher.update(self.modified_ns.to_be_bytes());
        let digest = hex::encode(hasher.finalize());
        dir.join(format!("{}.json", &digest[..32]))
    }
}

/// Where state files live by default: `$XDG_STATE_HOME/tributary` or
/// `~/.local/state/tributary`.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("tributary");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/tributary")
}

/// Reads a state file; `None` if there is none or it is unreadable (a fresh upload then).
pub fn load(path: &Path) -> Option<UploadState> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<UploadState>(&bytes)
        .ok()
        .filter(|s| s.version == 1)
}

/// Writes a state file atomically (temporary file, then rename): a crash mid-write leaves
/// the previous version.
pub fn save(path: &Path, state: &UploadState) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("json.tmp");
    std::fs::write(&temporary, serde_json::to_vec_pretty(state)?)?;
    std::fs::rename(&temporary, path)
}

/// Removes a state file (the upload needs no resuming any more).
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_gets_another_state_file() {
        let identity = FileIdentity {
            path: PathBuf::from("/data/a.bin"),
            size: 10,
            modified_ns: 1,
        };
        let dir = Path::new("/state");
        let same = identity.state_path(dir, "http://api");
        assert_eq!(same, identity.state_path(dir, "http://api"));
        let touched = FileIdentity {
            modified_ns: 2,
            ..identity.clone()
        };
        assert_ne!(same, touched.state_path(dir, "http://api"));
        assert_ne!(same, identity.state_path(dir, "http://other"));
    }

    #[test]
    fn state_round_trips_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.json");
        let state = UploadState {
            version: 1,
            api: "http://api".into(),
            file: PathBuf::from("/data/a.bin"),
            size: 10,
            modified_ns: 1,
            sha256: "00".into(),
            idempotency_key: "k".into(),
            upload_id: Some("u".into()),
            part_size: 8,
            part_count: 2,
            confirmed: BTreeSet::from([1]),
        };
        save(&path, &state).expect("save");
        assert_eq!(load(&path), Some(state));
        std::fs::write(&path, b"{not json").expect("corrupt");
        assert_eq!(load(&path), None);
    }
}
