//! Settings of the processors beyond the shared runtime config: the `[processors]` table of
//! the config file, or `TRIBUTARY_PROCESSORS__*` variables.

use std::time::Duration;

use serde::Deserialize;

/// Processor settings; every binary reads the same table and uses what concerns it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProcessorSettings {
    /// Overrides the binary's consumer group (tests run isolated groups; production keeps
    /// the default so instances of one binary share the work).
    pub group: Option<String>,
    /// Largest image, in pixels, the transformer decodes; bigger ones are rejected before any
    /// pixel is allocated (decompression bombs declare huge dimensions).
    pub max_image_pixels: u64,
    /// Address-space limit of one image-decoding child process, bytes.
    pub image_memory_limit_bytes: u64,
    /// Wall-clock limit of one image job, seconds.
    pub image_timeout_secs: u64,
    /// Longest video accepted, seconds.
    pub max_video_secs: f64,
    /// Threads ffmpeg may use per job.
    pub ffmpeg_threads: u32,
    /// `ffmpeg` executable.
    pub ffmpeg: String,
    /// `ffprobe` executable.
    pub ffprobe: String,
    /// libheif's `heif-convert` executable (HEIC/AVIF input).
    pub heif_convert: String,
    /// How often the janitor looks for expired sessions, seconds.
    pub sweep_interval_secs: u64,
    /// How long after its deadline an unfinished session is expired, seconds: completions
    /// accepted just before the deadline are still on their way through Kafka.
    pub expiry_grace_secs: u64,
    /// How long after completion was requested an upload may take to reach a final state
    /// before the janitor's watchdog fails it, seconds (longer than the slowest legitimate
    /// job: a `max_video_secs` video transcoded at real time, plus queueing).
    pub processing_timeout_secs: u64,
    /// `host:port` of a clamd the validator streams every accepted object to (INSTREAM);
    /// unset: no malware scan.
    pub clamd_addr: Option<String>,
    /// Largest object scanned, bytes (clamd's `StreamMaxLength` must be at least this);
    /// larger ones pass unscanned and are counted.
    pub malware_scan_max_bytes: u64,
    /// Wall-clock limit of one scan, seconds.
    pub malware_scan_timeout_secs: u64,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            group: None,
            max_image_pixels: 100_000_000,
            image_memory_limit_bytes: 3 << 30,
            image_timeout_secs: 60,
            max_video_secs: 600.0,
            ffmpeg_threads: 2,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            heif_convert: "heif-convert".into(),
            sweep_interval_secs: 30,
            expiry_grace_secs: 60,
            processing_timeout_secs: 3 * 3600,
            clamd_addr: None,
            malware_scan_max_bytes: 100 << 20,
            malware_scan_timeout_secs: 300,
        }
    }
}

impl ProcessorSettings {
    /// Reads `[processors]` from `figment`, defaults for what is missing.
    pub fn load(figment: &figment::Figment) -> anyhow::Result<Self> {
        match figment.find_value("processors") {
            Ok(_) => figment.extract_inner("processors").map_err(|e| {
                anyhow::anyhow!("invalid configuration: {}", e.to_string().to_lowercase())
            }),
            Err(_) => Ok(Self::default()),
        }
    }

    /// The consumer group to join: the override, or the binary's default.
    pub fn group_or(&self, default: &str) -> String {
        self.group.clone().unwrap_or_else(|| default.to_string())
    }

    /// [`Self::processing_timeout_secs`] as a duration.
    pub fn processing_timeout(&self) -> Duration {
        Duration::from_secs(self.processing_timeout_secs)
    }

    /// [`Self::malware_scan_timeout_secs`] as a duration.
    pub fn malware_scan_timeout(&self) -> Duration {
        Duration::from_secs(self.malware_scan_timeout_secs.max(1))
    }

    /// [`Self::sweep_interval_secs`] as a duration (at least 1 s).
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs.max(1))
    }
}
