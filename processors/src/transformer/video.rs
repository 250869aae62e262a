//! Video part of the media transformer: probes an untrusted upload with ffprobe and
//! transcodes it into an HLS ladder (H.264/AAC, 4-second aligned segments) plus a JPEG poster.
//!
//! The input is uploaded by anyone, so every run is hardened:
//! - Only the `file` protocol may be opened, and only the mov/mp4 and matroska/webm demuxers
//!   may be selected (`-format_whitelist`), so playlist-like demuxers (hls, concat, image2, ...)
//!   that open other files are refused before they read anything.
//! - The transcode and poster runs force the demuxer that the probe found (`-f`), so a file
//!   swapped between probe and transcode cannot pick another one.
//! - Duration, resolution, frame rate and size are capped; the decoder's `max_pixels` and the
//!   output `-t` also cap what a lying container can make us decode or encode.
//! - Every child has a cleared environment, no stdin, a deadline, and is killed when dropped.
//! - Output names are chosen here only; metadata and chapters are not copied.
//!
//! Memory and CPU limits of the child processes (rlimits, cgroups) are left to the caller.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::time::Instant;

/// ffprobe's name for the mov/mp4 demuxer family.
const MOV_FORMAT: &str = "mov,mp4,m4a,3gp,3g2,mj2";
/// ffprobe's name for the matroska/webm demuxer.
const MKV_FORMAT: &str = "matroska,webm";
/// Demuxers ffmpeg may select; matched per name element, so `mov` admits the mov family only.
const FORMAT_WHITELIST: &str = "mov,matroska";
/// Video codecs we decode.
const VIDEO_CODECS: &[&str] = &["h264", "hevc", "vp8", "vp9", "av1", "mpeg4"];
/// Audio codecs we transcode; any other audio is dropped rather than rejecting the upload.
const AUDIO_CODECS: &[&str] = &["aac", "mp3", "opus", "vorbis", "flac", "ac3"];

/// HLS segment length; keyframes are forced on this grid so renditions switch cleanly.
const SEGMENT_SECS: u32 = 4;
/// Audio bitrate of every rendition.
const AUDIO_KBPS: u32 = 128;
/// Quality target; `maxrate` per rung caps the bitrate of hard content.
const CRF: u32 = 21;
/// Longest side of the poster.
const POSTER_MAX_WIDTH: u32 = 1280;
/// How much of a child's stderr we keep for error messages.
const STDERR_TAIL_BYTES: usize = 4096;
/// ffprobe's JSON for the few entries we ask for is tiny; more means something is off.
const PROBE_STDOUT_CAP: usize = 1 << 20;
/// Length of a stderr excerpt put into an error reason.
const EXCERPT_CHARS: usize = 200;

/// Content type of HLS playlists.
const M3U8_TYPE: &str = "application/vnd.apple.mpegurl";
/// Content type of MPEG-TS segments.
const TS_TYPE: &str = "video/mp2t";
/// Content type of the poster.
const JPEG_TYPE: &str = "image/jpeg";

/// The ladder, largest first: (short side of the bounding box, maxrate in kbit/s).
const LADDER: &[(u32, u32)] = &[(1080, 5000), (720, 3000), (480, 1400)];

/// Caps applied to an input before and while transcoding.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoLimits {
    /// Longest accepted duration, in seconds.
    pub max_duration_secs: f64,
    /// Largest accepted width of a landscape picture (compared with the longer side).
    pub max_width: u32,
    /// Largest accepted height of a landscape picture (compared with the shorter side).
    pub max_height: u32,
    /// Highest accepted frame rate.
    pub max_fps: f64,
    /// Largest accepted input file, in bytes.
    pub max_input_bytes: u64,
    /// Deadline of the ffprobe run.
    pub probe_timeout: Duration,
    /// Deadline of the whole `transcode_hls` call (ladder and poster).
    pub transcode_timeout: Duration,
    /// Threads for each of decoding, filtering and encoding.
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
            transcode_timeout: Duration::from_secs(30 * 60),
            threads: 2,
        }
    }
}

/// What ffprobe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Demuxer name as ffprobe reports it (one of the allowed families).
    pub format_name: String,
    /// Codec of the first video stream that is not cover art.
    pub video_codec: String,
    /// Displayed width before rotation: the stored width with the sample aspect ratio applied.
    pub width: u32,
    /// Stored height, before rotation.
    pub height: u32,
    /// Duration of the container (or of the video stream when the container has none).
    pub duration_secs: f64,
    /// Average frame rate (falling back to the base rate).
    pub fps: f64,
    /// Display rotation in degrees, normalized to 0..360; ffmpeg applies it when transcoding.
    pub rotation: i32,
    /// Whether the output will carry audio: the first audio stream exists and its codec is
    /// allowed. Audio in another codec is dropped (reported in `audio_codec`), not rejected.
    pub has_audio: bool,
    /// Codec of the first audio stream, if any, even when it is dropped.
    pub audio_codec: Option<String>,
}

impl Probe {
    /// Width and height as displayed, after rotation.
    pub fn display_size(&self) -> (u32, u32) {
        if quarter_turns(self.rotation) % 2 == 1 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }
}

/// Why a video could not be processed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VideoError {
    /// The input itself is unacceptable; retrying will not help.
    #[error("video rejected ({code}): {reason}")]
    Rejected {
        /// Stable snake_case code, e.g. `unsupported_container`, `unsupported_codec`,
        /// `video_too_long`, `resolution_too_large`, `fps_too_high`, `file_too_large`,
        /// `no_video_stream`, `unreadable_video`.
        code: &'static str,
        /// Human-readable explanation, safe to show to the uploader.
        reason: String,
    },
    /// Our side failed (ffmpeg crashed on an accepted input, timeout, io).
    #[error("video processing failed: {reason}")]
    Failed {
        /// What went wrong.
        reason: String,
        /// Whether running the same job again may succeed.
        retryable: bool,
    },
}

/// One produced file, path relative to `out_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFile {
    /// Path relative to `out_dir`, e.g. `720p/seg_000.ts`.
    pub relative_path: PathBuf,
    /// Content type to upload it with.
    pub content_type: &'static str,
}

/// A logical output (what becomes a `VariantProduced` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoVariant {
    /// `hls` (master playlist), `hls-1080p`, `hls-720p`, `hls-480p` (or `hls-<h>p` for a
    /// source smaller than 480p), or `poster`.
    pub name: String,
    /// Path relative to `out_dir` of the playlist or image.
    pub relative_path: PathBuf,
    /// Content type of that file.
    pub content_type: &'static str,
    /// Displayed width (the largest rendition's for the master playlist).
    pub width: Option<u32>,
    /// Displayed height (the largest rendition's for the master playlist).
    pub height: Option<u32>,
}

/// Everything `transcode_hls` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlsOutput {
    /// Logical outputs: master playlist, one per rendition, poster.
    pub variants: Vec<VideoVariant>,
    /// Every file to upload: master, rendition playlists, segments, poster (sorted by path).
    pub files: Vec<VideoFile>,
}

/// Probes `input` with ffprobe and checks it against `limits`.
///
/// Unacceptable inputs give [`VideoError::Rejected`]; a timeout, an ffprobe killed by a
/// signal (possibly the OOM killer) or an io error give [`VideoError::Failed`].
pub async fn probe(
    ffprobe: &Path,
    input: &Path,
    limits: &VideoLimits,
) -> Result<Probe, VideoError> {
    let meta = tokio::fs::metadata(input)
        .await
        .map_err(|e| failed(format!("cannot stat input: {e}"), true))?;
    if !meta.is_file() {
        return Err(failed("input is not a regular file".into(), false));
    }
    if meta.len() == 0 {
        return Err(rejected("unreadable_video", "the file is empty".into()));
    }
    if meta.len() > limits.max_input_bytes {
        return Err(rejected(
            "file_too_large",
            format!(
                "the file is {} bytes, more than the {} allowed",
                meta.len(),
                limits.max_input_bytes
            ),
        ));
    }

    let mut cmd = tool(ffprobe);
    cmd.args(["-v", "error", "-protocol_whitelist", "file"])
        .args(["-format_whitelist", FORMAT_WHITELIST])
        .args(["-print_format", "json"])
        // A subset of -show_format -show_streams: less untrusted text to read and parse.
        .args([
            "-show_entries",
            "format=format_name,duration\
             :stream=index,codec_type,codec_name,width,height,sample_aspect_ratio,\
             avg_frame_rate,r_frame_rate,duration\
             :stream_disposition=attached_pic\
             :stream_tags=rotate\
             :stream_side_data=rotation",
        ])
        .arg(file_url(input));

    let deadline = Instant::now() + limits.probe_timeout;
    let mut stdout = Vec::new();
    let mut overflow = false;
    let run = run_tool(cmd, "ffprobe", deadline, |chunk| {
        if stdout.len() + chunk.len() > PROBE_STDOUT_CAP {
            overflow = true;
        } else {
            stdout.extend_from_slice(chunk);
        }
    })
    .await?;

    if !run.status.success() {
        let excerpt = excerpt(&run.stderr_tail, input);
        let whitelisted_out =
            String::from_utf8_lossy(&run.stderr_tail).contains("not on whitelist");
        if run.status.code().is_none() {
            // Killed by a signal: as likely our memory pressure as the input; probing is cheap.
            return Err(failed(format!("ffprobe was killed: {excerpt}"), true));
        }
        if whitelisted_out {
            return Err(rejected(
                "unsupported_container",
                "the container is not mp4, mov, mkv or webm".into(),
            ));
        }
        return Err(rejected(
            "unreadable_video",
            format!("the file could not be read as a video: {excerpt}"),
        ));
    }
    if overflow {
        return Err(rejected(
            "unreadable_video",
            "the file has too much metadata".into(),
        ));
    }
    let parsed: FfprobeOutput = serde_json::from_slice(&stdout).map_err(|e| {
        rejected(
            "unreadable_video",
            format!("the file could not be read as a video: {e}"),
        )
    })?;
    check_probe(parsed, limits)
}

/// Transcodes `input` into an HLS ladder under `out_dir` plus `poster.jpg`.
///
/// `out_dir` is created if missing and must otherwise be empty: every file under it is
/// returned for upload. `progress` gets percentages (0 to 100) of the ladder encode, at most
/// every 1% or second, and a final 100. `limits.transcode_timeout` bounds the whole call.
pub async fn transcode_hls(
    ffmpeg: &Path,
    input: &Path,
    out_dir: &Path,
    probe: &Probe,
    limits: &VideoLimits,
    mut progress: impl FnMut(f64) + Send,
) -> Result<HlsOutput, VideoError> {
    let deadline = Instant::now() + limits.transcode_timeout;
    let demuxer = forced_demuxer(&probe.format_name).ok_or_else(|| {
        // Only a Probe built elsewhere can get here; probe() rejects other containers.
        rejected(
            "unsupported_container",
            format!("container {} is not allowed", probe.format_name),
        )
    })?;
    let out_dir = prepare_out_dir(out_dir).await?;
    let (display_w, display_h) = probe.display_size();
    let renditions = ladder(display_w, display_h);
    let mut cmd = tool(ffmpeg);
    input_args(&mut cmd, demuxer, input, limits);
    hls_output_args(&mut cmd, &out_dir, &renditions, probe, limits);

    let total_us = probe.duration_secs.min(limits.max_duration_secs) * 1e6;
    let mut lines = LineSplitter::default();
    let mut reporter = ProgressReporter::new();
    let run = run_tool(cmd, "ffmpeg", deadline, |chunk| {
        lines.feed(chunk, |line| {
            if let Some(us) = parse_out_time_us(line) {
                reporter.update(us / total_us * 100.0, &mut progress);
            }
        });
    })
    .await?;
    if !run.status.success() {
        return Err(failed(
            format!(
                "ffmpeg failed ({}): {}",
                run.status,
                excerpt(&run.stderr_tail, input)
            ),
            false,
        ));
    }
    progress(100.0);

    let poster = make_poster(ffmpeg, demuxer, input, &out_dir, probe, limits, deadline).await?;

    let mut expected = vec![PathBuf::from("master.m3u8"), PathBuf::from("poster.jpg")];
    let mut variants = Vec::with_capacity(renditions.len() + 2);
    let top = renditions.first();
    variants.push(VideoVariant {
        name: "hls".into(),
        relative_path: PathBuf::from("master.m3u8"),
        content_type: M3U8_TYPE,
        width: top.map(|r| r.width),
        height: top.map(|r| r.height),
    });
    for r in &renditions {
        let path = Path::new(&r.name).join("index.m3u8");
        expected.push(path.clone());
        variants.push(VideoVariant {
            name: format!("hls-{}", r.name),
            relative_path: path,
            content_type: M3U8_TYPE,
            width: Some(r.width),
            height: Some(r.height),
        });
    }
    variants.push(VideoVariant {
        name: "poster".into(),
        relative_path: PathBuf::from("poster.jpg"),
        content_type: JPEG_TYPE,
        width: Some(poster.0),
        height: Some(poster.1),
    });

    let files = list_files(&out_dir).await?;
    for path in &expected {
        if !files.iter().any(|f| &f.relative_path == path) {
            return Err(failed(
                format!("ffmpeg did not produce {}", path.display()),
                false,
            ));
        }
    }
    Ok(HlsOutput { variants, files })
}

/// Output-side arguments of the ladder run: graph, encoders, keyframe grid, HLS muxer.
fn hls_output_args(
    cmd: &mut Command,
    out_dir: &Path,
    renditions: &[Rendition],
    probe: &Probe,
    limits: &VideoLimits,
) {
    // probe() guarantees a positive finite rate within the cap; this only guards hand-made
    // Probes and a NaN cap.
    let fps = probe.fps.min(limits.max_fps);
    let fps = if fps.is_finite() && fps > 0.0 {
        fps
    } else {
        30.0
    };
    let gop = ((f64::from(SEGMENT_SECS) * fps).round() as u32).max(1);
    cmd.args(["-progress", "pipe:1", "-nostats"]);
    cmd.arg("-filter_complex_threads")
        .arg(limits.threads.to_string());
    cmd.arg("-filter_complex")
        .arg(filter_graph(renditions, &fps_expr(fps)));
    for i in 0..renditions.len() {
        cmd.arg("-map").arg(format!("[v{i}]"));
    }
    if probe.has_audio {
        // One audio copy per variant: var_stream_map pairs each video with its own audio.
        for _ in renditions {
            cmd.args(["-map", "0:a:0"]);
        }
    }
    cmd.args(["-map_metadata", "-1", "-map_chapters", "-1"])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-profile:v",
            "high",
        ])
        .arg("-crf")
        .arg(CRF.to_string());
    for (i, r) in renditions.iter().enumerate() {
        cmd.arg(format!("-maxrate:v:{i}"))
            .arg(format!("{}k", r.maxrate_kbps))
            .arg(format!("-bufsize:v:{i}"))
            .arg(format!("{}k", 2 * r.maxrate_kbps));
    }
    // Keyframes on the same 4 s grid in every rendition, and nowhere else.
    cmd.arg("-g")
        .arg(gop.to_string())
        .arg("-keyint_min")
        .arg(gop.to_string())
        .args(["-sc_threshold", "0"])
        .arg("-force_key_frames")
        .arg(format!("expr:gte(t,n_forced*{SEGMENT_SECS})"));
    if probe.has_audio {
        cmd.args(["-c:a", "aac", "-ac", "2"])
            .arg("-b:a")
            .arg(format!("{AUDIO_KBPS}k"));
    }
    cmd.arg("-threads").arg(limits.threads.to_string());
    let var_stream_map = renditions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if probe.has_audio {
                format!("v:{i},a:{i},name:{}", r.name)
            } else {
                format!("v:{i},name:{}", r.name)
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    if limits.max_duration_secs.is_finite() && limits.max_duration_secs > 0.0 {
        // A container may lie about its duration; never encode more than the cap.
        cmd.arg("-t")
            .arg(format!("{:.3}", limits.max_duration_secs));
    }
    // Plain paths, not file: URLs: the hls muxer creates the %v directories only for those.
    cmd.args(["-f", "hls", "-hls_time"])
        .arg(SEGMENT_SECS.to_string())
        .args(["-hls_playlist_type", "vod", "-hls_segment_type", "mpegts"])
        .args(["-hls_flags", "independent_segments"])
        .args(["-master_pl_name", "master.m3u8"])
        .arg("-var_stream_map")
        .arg(var_stream_map)
        .arg("-hls_segment_filename")
        .arg(out_dir.join("%v").join("seg_%03d.ts"))
        .arg(out_dir.join("%v").join("index.m3u8"));

    tracing::debug!(renditions = renditions.len(), gop, "starting hls transcode");
}

/// Extracts one frame near the start into `poster.jpg`; returns its size.
async fn make_poster(
    ffmpeg: &Path,
    demuxer: &str,
    input: &Path,
    out_dir: &Path,
    probe: &Probe,
    limits: &VideoLimits,
    deadline: Instant,
) -> Result<(u32, u32), VideoError> {
    let (display_w, display_h) = probe.display_size();
    let (width, height) = fit_width(display_w, display_h, POSTER_MAX_WIDTH);
    let target = out_dir.join("poster.jpg");
    // Seek to 1 s to skip fade-ins, but stay inside very short clips; if the seek still
    // misses (a lying duration), fall back to the first frame.
    let first_seek = (probe.duration_secs / 2.0).clamp(0.0, 1.0);
    for seek in [first_seek, 0.0] {
        let mut cmd = tool(ffmpeg);
        cmd.arg("-ss").arg(format!("{seek:.3}"));
        input_args(&mut cmd, demuxer, input, limits);
        cmd.args(["-map", "0:V:0", "-frames:v", "1", "-an"])
            .arg("-vf")
            .arg(format!("scale={width}:{height},setsar=1,format=yuvj420p"))
            .args(["-map_metadata", "-1", "-c:v", "mjpeg", "-q:v", "3"])
            .arg("-threads")
            .arg(limits.threads.to_string())
            .args(["-f", "mjpeg", "-y"])
            .arg(file_url(&target));
        let run = run_tool(cmd, "ffmpeg (poster)", deadline, |_| {}).await?;
        if !run.status.success() {
            return Err(failed(
                format!(
                    "poster extraction failed ({}): {}",
                    run.status,
                    excerpt(&run.stderr_tail, input)
                ),
                false,
            ));
        }
        let written = tokio::fs::metadata(&target)
            .await
            .map(|m| m.len() > 0)
            .unwrap_or(false);
        if written {
            return Ok((width, height));
        }
    }
    Err(failed("poster extraction produced no frame".into(), false))
}

/// Input-side arguments shared by the ladder and poster runs.
fn input_args(cmd: &mut Command, demuxer: &str, input: &Path, limits: &VideoLimits) {
    let long = limits.max_width.max(limits.max_height);
    let short = limits.max_width.min(limits.max_height);
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "error"])
        // The input is only ever a local file; the progress pipe is an output and needs no
        // whitelisting.
        .args(["-protocol_whitelist", "file"])
        .args(["-format_whitelist", FORMAT_WHITELIST])
        .args(["-f", demuxer]);
    if demuxer == "mov" {
        // Defaults today; pinned because they stop an mp4 from referencing other files.
        cmd.args(["-enable_drefs", "0", "-use_absolute_path", "0"]);
    }
    cmd.arg("-threads")
        .arg(limits.threads.to_string())
        // Refuse frames larger than the caps even if the stream changes size mid-way.
        .arg("-max_pixels")
        .arg((u64::from(long) * u64::from(short)).to_string())
        .arg("-i")
        .arg(file_url(input));
}

/// `setpriv`, which makes the kernel kill a tool when its parent dies: `kill_on_drop` only
/// covers an orderly drop, and a transformer killed with SIGKILL must not leave an ffmpeg
/// running on.
const SETPRIV: &str = "/usr/bin/setpriv";

/// A command running `program`, tied to this process's life where `setpriv` exists.
fn tool(program: &Path) -> Command {
    if Path::new(SETPRIV).exists() {
        let mut cmd = Command::new(SETPRIV);
        cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

/// What a finished child left behind.
struct RunOutcome {
    status: ExitStatus,
    stderr_tail: Vec<u8>,
}

/// Runs `cmd` to completion or `deadline`, feeding stdout chunks to `on_stdout` and keeping
/// the last bytes of stderr. Both pipes are drained concurrently so the child never blocks.
async fn run_tool(
    mut cmd: Command,
    what: &str,
    deadline: Instant,
    mut on_stdout: impl FnMut(&[u8]),
) -> Result<RunOutcome, VideoError> {
    cmd.env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot start {what}: {e}"), true))?;
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(failed(format!("{what} has no pipes"), true));
    };

    let run = async {
        let pump_stdout = async {
            let mut buf = [0u8; 8192];
            loop {
                match stdout.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => on_stdout(&buf[..n]),
                }
            }
        };
        let ((), stderr_tail) = tokio::join!(pump_stdout, read_tail(stderr, STDERR_TAIL_BYTES));
        let status = child.wait().await;
        (status, stderr_tail)
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok((Ok(status), stderr_tail)) => Ok(RunOutcome {
            status,
            stderr_tail,
        }),
        Ok((Err(e), _)) => Err(failed(format!("waiting for {what}: {e}"), true)),
        Err(_) => {
            // Reap it so no zombie or busy encoder outlives the job.
            if let Err(e) = child.kill().await {
                tracing::warn!(error = %e, "cannot kill {what} after its timeout");
            }
            Err(failed(format!("{what} timed out"), false))
        }
    }
}

/// Reads `reader` to the end, keeping only its last `cap` bytes.
async fn read_tail(mut reader: impl AsyncRead + Unpin, cap: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(cap);
    let mut buf = [0u8; 4096];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return tail,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > cap {
                    tail.drain(..tail.len() - cap);
                }
            }
        }
    }
}

/// Splits a byte stream into lines, dropping absurdly long ones instead of growing.
#[derive(Default)]
struct LineSplitter {
    pending: Vec<u8>,
    overlong: bool,
}

impl LineSplitter {
    const MAX_LINE: usize = 1024;

    fn feed(&mut self, chunk: &[u8], mut on_line: impl FnMut(&str)) {
        for &b in chunk {
            if b == b'\n' {
                if !self.overlong
                    && let Ok(line) = std::str::from_utf8(&self.pending)
                {
                    on_line(line.trim_end_matches('\r'));
                }
                self.pending.clear();
                self.overlong = false;
            } else if self.pending.len() < Self::MAX_LINE {
                self.pending.push(b);
            } else {
                self.overlong = true;
            }
        }
    }
}

/// Reads the encoded position from a `-progress` line, in microseconds.
fn parse_out_time_us(line: &str) -> Option<f64> {
    // ffmpeg 5.1's out_time_ms is in microseconds too (a long-standing misnomer).
    let value = line
        .strip_prefix("out_time_us=")
        .or_else(|| line.strip_prefix("out_time_ms="))?;
    let us: f64 = value.trim().parse().ok()?;
    (us.is_finite() && us >= 0.0).then_some(us)
}

/// Rate-limits progress callbacks to every 1% or every second.
struct ProgressReporter {
    last_percent: f64,
    last_at: Instant,
}

impl ProgressReporter {
    fn new() -> Self {
        Self {
            last_percent: 0.0,
            last_at: Instant::now(),
        }
    }

    fn update(&mut self, percent: f64, progress: &mut impl FnMut(f64)) {
        if !percent.is_finite() {
            return;
        }
        let percent = percent.clamp(0.0, 100.0);
        let now = Instant::now();
        let step = percent - self.last_percent >= 1.0;
        let stale = percent > self.last_percent
            && now.duration_since(self.last_at) >= Duration::from_secs(1);
        if step || stale {
            self.last_percent = percent;
            self.last_at = now;
            progress(percent);
        }
    }
}

/// One rung of the output ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rendition {
    /// Directory and stream name, e.g. `720p`.
    name: String,
    width: u32,
    height: u32,
    maxrate_kbps: u32,
}

/// Picks the renditions for a source displayed at `width`x`height`.
///
/// A rung is a bounding box oriented like the source (1920x1080 or 1080x1920 for 1080p);
/// it is used when the source fills that box in at least one dimension, so nothing is
/// upscaled and wide or portrait sources keep their shape. A source below every rung gets
/// one rendition at its own size.
fn ladder(width: u32, height: u32) -> Vec<Rendition> {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let portrait = height > width;
    let mut out = Vec::new();
    for &(short, maxrate_kbps) in LADDER {
        let long = even((f64::from(short) * 16.0 / 9.0).round());
        let (box_w, box_h) = if portrait {
            (short, long)
        } else {
            (long, short)
        };
        let scale = (f64::from(box_w) / w).min(f64::from(box_h) / h);
        if scale <= 1.0 {
            out.push(Rendition {
                name: format!("{short}p"),
                width: even(w * scale),
                height: even(h * scale),
                maxrate_kbps,
            });
        }
    }
    if out.is_empty() {
        let (ew, eh) = (even(w), even(h));
        // Scale the smallest rung's bitrate by area, with a floor for tiny pictures.
        let (_, base_kbps) = LADDER[LADDER.len() - 1];
        let area = f64::from(ew) * f64::from(eh) / (854.0 * 480.0);
        out.push(Rendition {
            name: format!("{}p", ew.min(eh)),
            width: ew,
            height: eh,
            maxrate_kbps: ((f64::from(base_kbps) * area) as u32).clamp(300, base_kbps),
        });
    }
    out
}

/// Rounds to the nearest even integer of at least 2, as 4:2:0 H.264 requires.
fn even(x: f64) -> u32 {
    (((x / 2.0).round() as u32) * 2).max(2)
}

/// Fits `width`x`height` into `max_width` wide without upscaling; even dimensions.
fn fit_width(width: u32, height: u32, max_width: u32) -> (u32, u32) {
    let (w, h) = (f64::from(width.max(1)), f64::from(height.max(1)));
    let scale = (f64::from(max_width) / w).min(1.0);
    (even(w * scale), even(h * scale))
}

/// The split-and-scale graph feeding one encoder per rendition. The fps filter makes the
/// output constant-rate at the probed rate, so `-g` lands keyframes on the same frames in
/// every rendition and a lying stream cannot make us encode more frames than probed.
fn filter_graph(renditions: &[Rendition], fps: &str) -> String {
    let n = renditions.len();
    let mut graph = format!("[0:V:0]fps={fps},split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in renditions.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]scale={}:{},setsar=1,format=yuv420p[v{i}]",
            r.width, r.height
        ));
    }
    graph
}

/// Writes a frame rate as ffmpeg's fps filter takes it, exact for NTSC-style rates.
fn fps_expr(fps: f64) -> String {
    for den in [1u32, 1001] {
        let num = (fps * f64::from(den)).round();
        if num >= 1.0 && (num / f64::from(den) - fps).abs() < 1e-6 {
            return format!("{num}/{den}");
        }
    }
    format!("{fps:.6}")
}

/// The demuxer to force for an allowed container.
fn forced_demuxer(format_name: &str) -> Option<&'static str> {
    match format_name {
        MOV_FORMAT => Some("mov"),
        MKV_FORMAT => Some("matroska"),
        _ => None,
    }
}

/// A `file:` URL, so no path can be read as another protocol or an option.
fn file_url(path: &Path) -> std::ffi::OsString {
    let mut url = std::ffi::OsString::from("file:");
    url.push(path.as_os_str());
    url
}

/// Creates `out_dir` if needed, checks it is empty, and returns its absolute path.
async fn prepare_out_dir(out_dir: &Path) -> Result<PathBuf, VideoError> {
    tokio::fs::create_dir_all(out_dir)
        .await
        .map_err(|e| failed(format!("cannot create output directory: {e}"), true))?;
    let out_dir = tokio::fs::canonicalize(out_dir)
        .await
        .map_err(|e| failed(format!("cannot resolve output directory: {e}"), true))?;
    // ffmpeg expands % in output names, so a directory containing one would be mangled.
    if out_dir.to_string_lossy().contains('%') {
        return Err(failed("output directory contains '%'".into(), false));
    }
    let mut entries = tokio::fs::read_dir(&out_dir)
        .await
        .map_err(|e| failed(format!("cannot read output directory: {e}"), true))?;
    // Everything under out_dir is uploaded, so leftovers of another run must not be there.
    if entries
        .next_entry()
        .await
        .map_err(|e| failed(format!("cannot read output directory: {e}"), true))?
        .is_some()
    {
        return Err(failed("output directory is not empty".into(), false));
    }
    Ok(out_dir)
}

/// Lists the regular files under `root` with their content types, sorted by path.
async fn list_files(root: &Path) -> Result<Vec<VideoFile>, VideoError> {
    let io = |e: std::io::Error| failed(format!("cannot list outputs: {e}"), true);
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(io)?;
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let kind = entry.file_type().await.map_err(io)?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() {
                let Ok(relative) = path.strip_prefix(root) else {
                    continue;
                };
                let content_type = match path.extension().and_then(|e| e.to_str()) {
                    Some("m3u8") => M3U8_TYPE,
                    Some("ts") => TS_TYPE,
                    Some("jpg") => JPEG_TYPE,
                    _ => {
                        // Not something we asked ffmpeg for (e.g. a stray temp file).
                        tracing::warn!(path = %relative.display(), "skipping unexpected output");
                        continue;
                    }
                };
                files.push(VideoFile {
                    relative_path: relative.to_path_buf(),
                    content_type,
                });
            }
        }
    }
    files.sort_by(|a, b| a.relative_path.cmp(&b.relative_path));
    Ok(files)
}

/// The parts of ffprobe's JSON we read; everything is optional because the input is hostile.
#[derive(Debug, Deserialize)]
struct FfprobeOutput {
    #[serde(default)]
    streams: Vec<FfprobeStream>,
    format: Option<FfprobeFormat>,
}

#[derive(Debug, Deserialize)]
struct FfprobeFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FfprobeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<u64>,
    height: Option<u64>,
    sample_aspect_ratio: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
    disposition: Option<FfprobeDisposition>,
    tags: Option<FfprobeTags>,
    #[serde(default)]
    side_data_list: Vec<FfprobeSideData>,
}

#[derive(Debug, Deserialize)]
struct FfprobeDisposition {
    #[serde(default)]
    attached_pic: u8,
}

#[derive(Debug, Deserialize)]
struct FfprobeTags {
    rotate: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FfprobeSideData {
    rotation: Option<serde_json::Value>,
}

/// Turns ffprobe's findings into a [`Probe`], enforcing the allowlists and caps.
fn check_probe(out: FfprobeOutput, limits: &VideoLimits) -> Result<Probe, VideoError> {
    let format = out
        .format
        .ok_or_else(|| rejected("unreadable_video", "no container information".into()))?;
    let format_name = format.format_name.unwrap_or_default();
    if forced_demuxer(&format_name).is_none() {
        return Err(rejected(
            "unsupported_container",
            "the container is not mp4, mov, mkv or webm".into(),
        ));
    }

    let video = out
        .streams
        .iter()
        .find(|s| {
            s.codec_type.as_deref() == Some("video")
                && s.disposition.as_ref().is_none_or(|d| d.attached_pic == 0)
        })
        .ok_or_else(|| rejected("no_video_stream", "the file has no video stream".into()))?;
    let video_codec = video.codec_name.clone().unwrap_or_default();
    if !VIDEO_CODECS.contains(&video_codec.as_str()) {
        return Err(rejected(
            "unsupported_codec",
            format!(
                "video codec {} is not supported",
                sanitize_token(&video_codec)
            ),
        ));
    }

    let (stored_w, stored_h) = match (video.width, video.height) {
        (Some(w), Some(h)) if w > 0 && h > 0 => (w, h),
        _ => {
            return Err(rejected(
                "unreadable_video",
                "the video has no picture size".into(),
            ));
        }
    };
    let sar = video
        .sample_aspect_ratio
        .as_deref()
        .and_then(parse_ratio)
        .filter(|r| *r > 0.0)
        .unwrap_or(1.0);
    let display_w = (stored_w as f64 * sar).round().max(1.0);
    let long_cap = f64::from(limits.max_width.max(limits.max_height));
    let short_cap = f64::from(limits.max_width.min(limits.max_height));
    // Stored size bounds decoding cost; displayed size bounds what we would scale from.
    for (w, h) in [
        (stored_w as f64, stored_h as f64),
        (display_w, stored_h as f64),
    ] {
        if w.max(h) > long_cap || w.min(h) > short_cap {
            return Err(rejected(
                "resolution_too_large",
                format!(
                    "the video is {stored_w}x{stored_h}, larger than {}x{} allowed",
                    limits.max_width, limits.max_height
                ),
            ));
        }
    }

    let fps = [&video.avg_frame_rate, &video.r_frame_rate]
        .into_iter()
        .filter_map(|r| r.as_deref().and_then(parse_ratio))
        .find(|f| *f > 0.0)
        .ok_or_else(|| rejected("unreadable_video", "the video has no frame rate".into()))?;
    // Tolerance for rates stored as e.g. 60000/1001 or with timebase rounding.
    if fps > limits.max_fps + 0.01 {
        return Err(rejected(
            "fps_too_high",
            format!(
                "the video runs at {fps:.2} fps, more than the {} allowed",
                limits.max_fps
            ),
        ));
    }

    let duration_secs = [&format.duration, &video.duration]
        .into_iter()
        .filter_map(|d| d.as_deref().and_then(|d| d.trim().parse::<f64>().ok()))
        .find(|d| d.is_finite() && *d > 0.0)
        .ok_or_else(|| rejected("unreadable_video", "the video has no duration".into()))?;
    if duration_secs > limits.max_duration_secs {
        return Err(rejected(
            "video_too_long",
            format!(
                "the video lasts {duration_secs:.1} s, more than the {} s allowed",
                limits.max_duration_secs
            ),
        ));
    }

    let rotation = video
        .side_data_list
        .iter()
        .find_map(|sd| sd.rotation.as_ref().and_then(serde_json::Value::as_f64))
        .or_else(|| {
            video
                .tags
                .as_ref()
                .and_then(|t| t.rotate.as_deref())
                .and_then(|r| r.trim().parse::<f64>().ok())
        })
        .filter(|r| r.is_finite())
        .map_or(0, |r| (r.round() as i64).rem_euclid(360) as i32);

    let audio = out
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("audio"));
    let audio_codec = audio.map(|a| sanitize_token(a.codec_name.as_deref().unwrap_or("unknown")));
    let has_audio = audio_codec
        .as_deref()
        .is_some_and(|c| AUDIO_CODECS.contains(&c));
    if let (Some(codec), false) = (&audio_codec, has_audio) {
        tracing::info!(codec = %codec, "dropping audio in an unsupported codec");
    }

    Ok(Probe {
        format_name,
        video_codec,
        width: display_w as u32,
        height: stored_h as u32,
        duration_secs,
        fps,
        rotation,
        has_audio,
        audio_codec,
    })
}

/// Parses ffprobe's `num/den` (or `num:den`) rates and ratios; `0/0` gives `None`.
fn parse_ratio(s: &str) -> Option<f64> {
    let (num, den) = s.split_once(['/', ':']).unwrap_or((s, "1"));
    let num: f64 = num.trim().parse().ok()?;
    let den: f64 = den.trim().parse().ok()?;
    let value = num / den;
    (den != 0.0 && value.is_finite()).then_some(value)
}

/// Whole quarter turns of a rotation, 0..4.
fn quarter_turns(rotation: i32) -> i32 {
    ((f64::from(rotation) / 90.0).round() as i32).rem_euclid(4)
}

/// Keeps a short identifier from the input printable and bounded.
fn sanitize_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(32)
        .collect()
}

/// A short, printable excerpt of a child's stderr, fit to put in an error reason: our input
/// path and ffmpeg's `[name @ 0x...]` log prefixes (heap addresses help an attacker) go.
fn excerpt(stderr: &[u8], input: &Path) -> String {
    let text = String::from_utf8_lossy(stderr)
        .replace(&*file_url(input).to_string_lossy(), "input")
        .replace(&*input.to_string_lossy(), "input");
    let mut words = Vec::new();
    for line in text.lines() {
        let mut line = line.trim_start();
        while line.starts_with('[') {
            match line.find(']') {
                Some(close) if line[..close].contains(" @ 0x") => {
                    line = line[close + 1..].trim_start();
                }
                _ => break,
            }
        }
        words.extend(
            line.split(|c: char| !c.is_ascii_graphic())
                .filter(|w| !w.is_empty())
                // Any other address is masked too.
                .map(|w| if w.starts_with("0x") { "0x?" } else { w }),
        );
    }
    let joined = words.join(" ");
    let chars = joined.chars().count();
    if chars <= EXCERPT_CHARS {
        joined
    } else {
        // The last lines carry ffmpeg's conclusion.
        let tail: String = joined.chars().skip(chars - EXCERPT_CHARS).collect();
        format!("...{tail}")
    }
}

fn rejected(code: &'static str, reason: String) -> VideoError {
    VideoError::Rejected { code, reason }
}

fn failed(reason: String, retryable: bool) -> VideoError {
    VideoError::Failed { reason, retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FFMPEG: &str = "/usr/bin/ffmpeg";
    const FFPROBE: &str = "/usr/bin/ffprobe";

    /// Runs ffmpeg to make a test input; `args` go between the global flags and the output.
    async fn make_input(path: &Path, args: &[&str]) {
        let status = Command::new(FFMPEG)
            .args(["-nostdin", "-v", "error", "-y"])
            .args(args)
            .arg(path)
            .status()
            .await
            .expect("run ffmpeg");
        assert!(status.success(), "making test input failed");
    }

    /// A testsrc clip with an optional sine track, H.264/AAC in mp4.
    async fn clip(dir: &Path, name: &str, size: &str, secs: &str, audio: bool) -> PathBuf {
        let path = dir.join(name);
        let video = format!("testsrc=size={size}:rate=30");
        let mut args = vec!["-f", "lavfi", "-i", &video];
        if audio {
            args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
        }
        args.extend(["-t", secs, "-c:v", "libx264", "-preset", "ultrafast"]);
        args.extend(["-pix_fmt", "yuv420p"]);
        if audio {
            args.extend(["-c:a", "aac"]);
        }
        make_input(&path, &args).await;
        path
    }

    async fn ffprobe_height(playlist: &Path) -> u64 {
        let out = Command::new(FFPROBE)
            .args(["-v", "error", "-protocol_whitelist", "file"])
            .args(["-select_streams", "v:0", "-show_entries", "stream=height"])
            .args(["-of", "default=noprint_wrappers=1:nokey=1"])
            .arg(playlist)
            .output()
            .await
            .expect("run ffprobe");
        assert!(out.status.success(), "ffprobe failed on {playlist:?}");
        // The hls demuxer lists the stream once per program too; the first line will do.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .parse()
            .expect("height")
    }

    fn segment_durations(playlist: &str) -> Vec<f64> {
        playlist
            .lines()
            .filter_map(|l| l.strip_prefix("#EXTINF:"))
            .map(|l| l.trim_end_matches(',').parse().expect("extinf"))
            .collect()
    }

    fn names(out: &HlsOutput) -> Vec<&str> {
        out.variants.iter().map(|v| v.name.as_str()).collect()
    }

    async fn transcode(input: &Path, out_dir: &Path) -> (HlsOutput, Vec<f64>) {
        let limits = VideoLimits::default();
        let probed = probe(Path::new(FFPROBE), input, &limits)
            .await
            .expect("probe");
        let mut calls = Vec::new();
        let out = transcode_hls(Path::new(FFMPEG), input, out_dir, &probed, &limits, |p| {
            calls.push(p)
        })
        .await
        .expect("transcode");
        (out, calls)
    }

    fn expect_rejected(result: Result<Probe, VideoError>) -> &'static str {
        match result {
            Err(VideoError::Rejected { code, .. }) => code,
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn transcodes_720p_with_audio_into_two_renditions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = clip(dir.path(), "in.mp4", "1280x720", "3", true).await;
        let out_dir = dir.path().join("out");
        let started = std::time::Instant::now();
        let (out, calls) = transcode(&input, &out_dir).await;
        eprintln!("720p 3 s probe+transcode took {:?}", started.elapsed());

        assert_eq!(names(&out), ["hls", "hls-720p", "hls-480p", "poster"]);
        let master = std::fs::read_to_string(out_dir.join("master.m3u8")).expect("master");
        assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 2, "{master}");
        assert!(master.contains("720p/index.m3u8") && master.contains("480p/index.m3u8"));
        assert!(
            master.contains("mp4a.40.2"),
            "audio is advertised: {master}"
        );

        for (name, w, h) in [("720p", 1280, 720), ("480p", 854, 480)] {
            let variant = out
                .variants
                .iter()
                .find(|v| v.name == format!("hls-{name}"))
                .expect("variant");
            assert_eq!((variant.width, variant.height), (Some(w), Some(h)));
            let playlist = out_dir.join(&variant.relative_path);
            assert_eq!(ffprobe_height(&playlist).await, u64::from(h));
            let text = std::fs::read_to_string(&playlist).expect("playlist");
            let durations = segment_durations(&text);
            assert!(!durations.is_empty());
            assert!(durations.iter().all(|d| *d <= 4.1), "{durations:?}");
        }

        let poster = out.variants.last().expect("poster");
        assert_eq!(poster.content_type, "image/jpeg");
        assert_eq!((poster.width, poster.height), (Some(1280), Some(720)));
        assert!(
            out.files
                .iter()
                .any(|f| f.relative_path == Path::new("poster.jpg"))
        );
        assert!(
            out.files
                .iter()
                .any(|f| f.relative_path == Path::new("720p/seg_000.ts")
                    && f.content_type == "video/mp2t")
        );
        assert_eq!(
            out.files.len(),
            std::fs::read_dir(out_dir.join("720p"))
                .expect("dir")
                .count()
                + std::fs::read_dir(out_dir.join("480p"))
                    .expect("dir")
                    .count()
                + 2
        );

        assert!(!calls.is_empty());
        assert!(calls.windows(2).all(|w| w[0] <= w[1]), "{calls:?}");
        assert!(*calls.last().expect("last") >= 99.0, "{calls:?}");
    }

    #[tokio::test]
    async fn segments_are_aligned_across_renditions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = clip(dir.path(), "in.mp4", "1280x720", "9", false).await;
        let out_dir = dir.path().join("out");
        let (out, _) = transcode(&input, &out_dir).await;
        assert_eq!(names(&out), ["hls", "hls-720p", "hls-480p", "poster"]);
        let durations = |name: &str| {
            let text =
                std::fs::read_to_string(out_dir.join(name).join("index.m3u8")).expect("playlist");
            segment_durations(&text)
        };
        let (hi, lo) = (durations("720p"), durations("480p"));
        assert_eq!(hi.len(), 3, "{hi:?}");
        assert_eq!(hi, lo, "segments must line up for switching");
        assert!(hi.iter().all(|d| *d <= 4.1), "{hi:?}");
    }

    #[tokio::test]
    async fn small_source_gets_one_rendition_at_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = clip(dir.path(), "in.mp4", "320x240", "2", false).await;
        let out_dir = dir.path().join("out");
        let (out, _) = transcode(&input, &out_dir).await;
        assert_eq!(names(&out), ["hls", "hls-240p", "poster"]);
        assert_eq!(out.variants[1].width, Some(320));
        assert_eq!(out.variants[1].height, Some(240));
        let master = std::fs::read_to_string(out_dir.join("master.m3u8")).expect("master");
        assert_eq!(master.matches("#EXT-X-STREAM-INF").count(), 1);
        assert_eq!(ffprobe_height(&out_dir.join("240p/index.m3u8")).await, 240);
        let poster = &out.variants[2];
        assert_eq!((poster.width, poster.height), (Some(320), Some(240)));
    }

    #[tokio::test]
    async fn rotated_source_is_laddered_in_display_orientation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = clip(dir.path(), "plain.mp4", "320x240", "1", false).await;
        let input = dir.path().join("rotated.mp4");
        let plain_arg = plain.to_string_lossy().into_owned();
        make_input(
            &input,
            &[
                "-i",
                &plain_arg,
                "-c",
                "copy",
                "-metadata:s:v:0",
                "rotate=90",
            ],
        )
        .await;
        let probed = probe(Path::new(FFPROBE), &input, &VideoLimits::default())
            .await
            .expect("probe");
        assert_eq!(quarter_turns(probed.rotation) % 2, 1, "{probed:?}");
        assert_eq!(probed.display_size(), (240, 320));

        let out_dir = dir.path().join("out");
        let (out, _) = transcode(&input, &out_dir).await;
        assert_eq!(names(&out), ["hls", "hls-240p", "poster"]);
        assert_eq!(
            (out.variants[1].width, out.variants[1].height),
            (Some(240), Some(320))
        );
        assert_eq!(ffprobe_height(&out_dir.join("240p/index.m3u8")).await, 320);
    }

    #[tokio::test]
    async fn playlist_disguised_as_mp4_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input.mp4");
        std::fs::write(&input, "#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n").expect("write");
        let result = probe(Path::new(FFPROBE), &input, &VideoLimits::default()).await;
        expect_rejected(result);
    }

    /// A well-formed playlist whose segment is a real video: plain ffprobe reads it through
    /// the hls demuxer, so only the format allowlist keeps us from following the reference.
    #[tokio::test]
    async fn playable_playlist_is_refused_by_the_format_allowlist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let segment = dir.path().join("seg.ts");
        make_input(
            &segment,
            &["-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1"],
        )
        .await;
        let input = dir.path().join("input.mp4");
        std::fs::write(
            &input,
            format!(
                "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n\
                 #EXTINF:1,\nfile://{}\n#EXT-X-ENDLIST\n",
                segment.display()
            ),
        )
        .expect("write");

        let unguarded = Command::new(FFPROBE)
            .args(["-v", "error", "-protocol_whitelist", "file"])
            .args(["-show_entries", "format=format_name", "-of", "csv=p=0"])
            .arg(&input)
            .output()
            .await
            .expect("run ffprobe");
        assert_eq!(String::from_utf8_lossy(&unguarded.stdout).trim(), "hls");

        let result = probe(Path::new(FFPROBE), &input, &VideoLimits::default()).await;
        assert_eq!(expect_rejected(result), "unsupported_container");
    }

    #[tokio::test]
    async fn avi_is_rejected_as_unsupported_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input.avi");
        make_input(
            &input,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=30",
                "-t",
                "1",
                "-c:v",
                "mpeg4",
                "-f",
                "avi",
            ],
        )
        .await;
        let result = probe(Path::new(FFPROBE), &input, &VideoLimits::default()).await;
        assert_eq!(expect_rejected(result), "unsupported_container");
    }

    #[tokio::test]
    async fn caps_reject_long_fast_and_large_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = clip(dir.path(), "in.mp4", "1280x720", "3", true).await;
        let ffprobe = Path::new(FFPROBE);

        let probed = probe(ffprobe, &input, &VideoLimits::default())
            .await
            .expect("probe");
        assert_eq!(probed.format_name, MOV_FORMAT);
        assert_eq!(probed.video_codec, "h264");
        assert_eq!(
            (probed.width, probed.height, probed.rotation),
            (1280, 720, 0)
        );
        assert!((probed.duration_secs - 3.0).abs() < 0.1, "{probed:?}");
        assert!((probed.fps - 30.0).abs() < 1e-9);
        assert!(probed.has_audio);
        assert_eq!(probed.audio_codec.as_deref(), Some("aac"));

        let cases: [(VideoLimits, &str); 5] = [
            (
                VideoLimits {
                    max_duration_secs: 1.0,
                    ..VideoLimits::default()
                },
                "video_too_long",
            ),
            (
                VideoLimits {
                    max_fps: 24.0,
                    ..VideoLimits::default()
                },
                "fps_too_high",
            ),
            (
                VideoLimits {
                    max_width: 640,
                    max_height: 480,
                    ..VideoLimits::default()
                },
                "resolution_too_large",
            ),
            // Either orientation of the cap means the same thing.
            (
                VideoLimits {
                    max_width: 480,
                    max_height: 640,
                    ..VideoLimits::default()
                },
                "resolution_too_large",
            ),
            (
                VideoLimits {
                    max_input_bytes: 1000,
                    ..VideoLimits::default()
                },
                "file_too_large",
            ),
        ];
        for (limits, code) in cases {
            assert_eq!(expect_rejected(probe(ffprobe, &input, &limits).await), code);
        }
        let portrait_caps = VideoLimits {
            max_width: 720,
            max_height: 1280,
            ..VideoLimits::default()
        };
        probe(ffprobe, &input, &portrait_caps)
            .await
            .expect("caps apply in either orientation");
    }

    #[tokio::test]
    async fn random_bytes_are_unreadable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("input.mp4");
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..65536)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        std::fs::write(&input, bytes).expect("write");
        let result = probe(Path::new(FFPROBE), &input, &VideoLimits::default()).await;
        match result {
            Err(VideoError::Rejected { code, reason }) => {
                assert_eq!(code, "unreadable_video");
                assert!(reason.len() < 300, "{reason}");
                assert!(!reason.contains(&*dir.path().to_string_lossy()), "{reason}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn timeouts_fail_without_retry_and_leave_no_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = clip(dir.path(), "in.mp4", "1280x720", "3", false).await;
        let ffprobe = Path::new(FFPROBE);
        let probed = probe(ffprobe, &input, &VideoLimits::default())
            .await
            .expect("probe");

        let hurried = VideoLimits {
            probe_timeout: Duration::from_millis(1),
            transcode_timeout: Duration::from_millis(300),
            ..VideoLimits::default()
        };
        let result = probe(ffprobe, &input, &hurried).await;
        assert!(
            matches!(
                result,
                Err(VideoError::Failed {
                    retryable: false,
                    ..
                })
            ),
            "{result:?}"
        );
        let started = std::time::Instant::now();
        let result = transcode_hls(
            Path::new(FFMPEG),
            &input,
            &dir.path().join("out"),
            &probed,
            &hurried,
            |_| {},
        )
        .await;
        assert!(
            matches!(&result, Err(VideoError::Failed { retryable: false, reason }) if reason.contains("timed out")),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        // The encoder was killed and reaped, not left running on this job's files.
        let needle = dir.path().to_string_lossy().into_owned();
        let survivors = std::fs::read_dir("/proc")
            .expect("proc")
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&needle))
            .count();
        assert_eq!(survivors, 0);
    }

    #[tokio::test]
    async fn out_dir_must_be_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("stale.ts"), b"x").expect("write");
        let probed = Probe {
            format_name: MOV_FORMAT.into(),
            video_codec: "h264".into(),
            width: 320,
            height: 240,
            duration_secs: 1.0,
            fps: 30.0,
            rotation: 0,
            has_audio: false,
            audio_codec: None,
        };
        let result = transcode_hls(
            Path::new(FFMPEG),
            &dir.path().join("missing.mp4"),
            dir.path(),
            &probed,
            &VideoLimits::default(),
            |_| {},
        )
        .await;
        assert!(
            matches!(
                result,
                Err(VideoError::Failed {
                    retryable: false,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    #[test]
    fn transcode_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let probed = Probe {
            format_name: MOV_FORMAT.into(),
            video_codec: "h264".into(),
            width: 2,
            height: 2,
            duration_secs: 1.0,
            fps: 1.0,
            rotation: 0,
            has_audio: false,
            audio_codec: None,
        };
        let limits = VideoLimits::default();
        let fut = transcode_hls(
            Path::new(""),
            Path::new(""),
            Path::new(""),
            &probed,
            &limits,
            |_| {},
        );
        assert_send(&fut);
        let fut = probe(Path::new(""), Path::new(""), &limits);
        assert_send(&fut);
    }

    #[test]
    fn ladder_never_upscales_and_keeps_orientation() {
        let dims = |w, h| -> Vec<(String, u32, u32)> {
            ladder(w, h)
                .into_iter()
                .map(|r| (r.name, r.width, r.height))
                .collect()
        };
        assert_eq!(
            dims(3840, 2160),
            [
                ("1080p".into(), 1920, 1080),
                ("720p".into(), 1280, 720),
                ("480p".into(), 854, 480)
            ]
        );
        assert_eq!(
            dims(1080, 1920),
            [
                ("1080p".into(), 1080, 1920),
                ("720p".into(), 720, 1280),
                ("480p".into(), 480, 854)
            ]
        );
        // Cinema-wide: fills the 1080p box's width, so no rung is upscaled.
        assert_eq!(dims(1920, 800)[0], ("1080p".into(), 1920, 800));
        assert_eq!(dims(1000, 700), [("480p".into(), 686, 480)]);
        assert_eq!(dims(321, 241), [("242p".into(), 322, 242)]);
        assert_eq!(dims(1, 1), [("2p".into(), 2, 2)]);
    }

    #[test]
    fn helpers_parse_and_sanitize() {
        assert_eq!(parse_ratio("30000/1001"), Some(30000.0 / 1001.0));
        assert_eq!(parse_ratio("0/0"), None);
        assert_eq!(parse_ratio("1:1"), Some(1.0));
        assert_eq!(parse_ratio("x"), None);
        assert_eq!(fps_expr(30000.0 / 1001.0), "30000/1001");
        assert_eq!(fps_expr(25.0), "25/1");
        assert_eq!(fps_expr(12.5), "12.500000");
        assert_eq!(parse_out_time_us("out_time_us=1500000"), Some(1_500_000.0));
        assert_eq!(parse_out_time_us("out_time_us=N/A"), None);
        assert_eq!(quarter_turns(-90), 3);
        assert_eq!(quarter_turns(270), 3);

        let stderr = b"[mov,mp4 @ 0x55c5ce097280] moov atom not found\n\
            [h264 @ 0x1] [IMGUTILS @ 0x7f] too big at 0xdead\n\
            file:/srv/x/in.mp4: Invalid\x1b[0m data\n/srv/x/in.mp4: again";
        let text = excerpt(stderr, Path::new("/srv/x/in.mp4"));
        assert_eq!(
            text,
            "moov atom not found too big at 0x? input: Invalid [0m data input: again"
        );
        let long = "a".repeat(1000);
        assert!(excerpt(long.as_bytes(), Path::new("/x")).len() <= EXCERPT_CHARS + 3);

        let mut lines = Vec::new();
        let mut splitter = LineSplitter::default();
        splitter.feed(b"out_time_us=1\nfra", |l| lines.push(l.to_owned()));
        splitter.feed(b"me=2\r\n", |l| lines.push(l.to_owned()));
        splitter.feed(&[b'x'; 5000], |l| lines.push(l.to_owned()));
        splitter.feed(b"\nok\n", |l| lines.push(l.to_owned()));
        assert_eq!(lines, ["out_time_us=1", "frame=2", "ok"]);
    }
}
