//! Placeholder until the video module lands (being written in parallel).
#![allow(missing_docs, dead_code, unused_variables)]
use std::path::{Path, PathBuf};
use std::time::Duration;
pub struct VideoLimits {
    pub max_duration_secs: f64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_fps: f64,
    pub max_input_bytes: u64,
    pub probe_timeout: Duration,
    pub transcode_timeout: Duration,
    pub threads: u32,
}
impl Default for VideoLimits {
    fn default() -> Self {
        Self {
            max_duration_secs: 600.0,
            max_width: 3840,
            max_height: 2160,
            max_fps: 60.0,
            max_input_bytes: 4 << 30,
            probe_timeout: Duration::from_secs(20),
            transcode_timeout: Duration::from_secs(1800),
            threads: 2,
        }
    }
}
pub struct Probe;
pub enum VideoError {
    Rejected { code: &'static str, reason: String },
    Failed { reason: String, retryable: bool },
}
pub struct VideoFile {
    pub relative_path: PathBuf,
    pub content_type: &'static str,
}
pub struct VideoVariant {
    pub name: String,
    pub relative_path: PathBuf,
    pub content_type: &'static str,
    pub width: Option<u32>,
    pub height: Option<u32>,
}
pub struct HlsOutput {
    pub variants: Vec<VideoVariant>,
    pub files: Vec<VideoFile>,
}
pub async fn probe(
    ffprobe: &Path,
    input: &Path,
    limits: &VideoLimits,
) -> Result<Probe, VideoError> {
    Err(VideoError::Failed {
        reason: "todo".into(),
        retryable: false,
    })
}
pub async fn transcode_hls(
    ffmpeg: &Path,
    input: &Path,
    out_dir: &Path,
    probe: &Probe,
    limits: &VideoLimits,
    progress: impl FnMut(f64) + Send,
) -> Result<HlsOutput, VideoError> {
    Err(VideoError::Failed {
        reason: "todo".into(),
        retryable: false,
    })
}
