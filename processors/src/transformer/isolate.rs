//! Decoders run in a child process: a decompression bomb, a decoder bug or a pathological
//! file kills one job, never the worker. The child is this same binary
//! (`transformer render-image`), which limits its own address space and CPU time before it
//! reads a byte, and is killed when it exceeds the job's wall-clock limit.
//!
//! HEIC and AVIF (iPhone photos, modern exports) are first converted to PNG by libheif's
//! `heif-convert` (Debian `libheif-examples`), run by the child so that the limits apply to
//! it as well; libheif applies the container's rotation and mirroring, so the PNG is upright.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::image::{ImageError, ImageLimits, render};

/// Subcommand of the transformer binary that renders one image in isolation.
pub const SUBCOMMAND: &str = "render-image";

/// Limits of one isolated job.
#[derive(Debug, Clone, Copy)]
pub struct JobLimits {
    /// Decoder limits.
    pub image: ImageLimits,
    /// Address space of the child, bytes.
    pub memory_bytes: u64,
    /// Wall-clock time, after which the child is killed.
    pub timeout: Duration,
}

/// Whether `bytes` are a HEIF container (HEIC or AVIF): an ISO-BMFF `ftyp` box with a HEIF
/// brand.
pub fn is_heif(bytes: &[u8]) -> bool {
    bytes.get(4..8) == Some(b"ftyp")
        && matches!(
            bytes.get(8..12),
            Some(
                b"heic"
                    | b"heix"
                    | b"heim"
                    | b"heis"
                    | b"hevc"
                    | b"mif1"
                    | b"msf1"
                    | b"avif"
                    | b"avis"
            )
        )
}

/// One variant file written by the child.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VariantFile {
    /// Variant name.
    pub name: String,
    /// File in the job's output directory.
    pub file: PathBuf,
    /// MIME type.
    pub content_type: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes.
    pub size: u64,
}

/// What the child reports on stdout (one JSON document).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChildReport {
    /// Variants written.
    Rendered {
        /// The files.
        variants: Vec<VariantFile>,
        /// ThumbHash, base64.
        placeholder: String,
    },
    /// The job could not be done for a reason of ours (e.g. a tool missing on this worker).
    Failed {
        /// What went wrong.
        reason: String,
    },
    /// The input was refused.
    Rejected {
        /// Machine-readable reason.
        code: String,
        /// Human-readable reason.
        reason: String,
    },
}

/// Renders `input` into `out_dir` in a child process running `exe`.
///
/// Returns the child's report; a child that was killed (limits, timeout) or crashed is
/// reported as a rejection of the input, since a valid image within the limits renders.
/// `Err` only when the child could not be started at all (our problem, retryable).
pub async fn render_isolated(
    exe: &Path,
    input: &Path,
    out_dir: &Path,
    limits: &JobLimits,
    heif_convert: &str,
) -> Result<ChildReport, String> {
    let child = tokio::process::Command::new(exe)
        .arg(SUBCOMMAND)
        .arg(input)
        .arg(out_dir)
        .arg(limits.image.max_pixels.to_string())
        .arg(limits.memory_bytes.to_string())
        .arg(limits.timeout.as_secs().max(1).to_string())
        .arg(heif_convert)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let output = match tokio::time::timeout(limits.timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("waiting for the image child: {e}")),
        // Dropping the future kills the child (kill_on_drop).
        Err(_) => {
            return Ok(ChildReport::Rejected {
                code: "image_too_complex".into(),
                reason: format!("decoding took longer than {} s", limits.timeout.as_secs()),
            });
        }
    };
    if output.status.success() {
        return serde_json::from_slice(&output.stdout)
            .map_err(|e| format!("unreadable report from the image child: {e}"));
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail: String = stderr
        .chars()
        .rev()
        .take(300)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    tracing::warn!(status = %output.status, stderr = %tail, "image child died");
    Ok(ChildReport::Rejected {
        code: "undecodable_image".into(),
        reason: "the image could not be decoded within the memory and time limits".into(),
    })
}

/// The child's side: `transformer render-image INPUT OUT_DIR MAX_PIXELS MEMORY_BYTES CPU_SECS
/// HEIF_CONVERT`. Limits itself, renders, writes the variants and prints its [`ChildReport`].
pub fn child_main(args: &[String]) -> Result<(), String> {
    let [input, out_dir, max_pixels, memory, cpu_secs, heif_convert] = args else {
        return Err(format!(
            "usage: transformer {SUBCOMMAND} INPUT OUT_DIR MAX_PIXELS MEMORY_BYTES CPU_SECS HEIF_CONVERT"
        ));
    };
    let number = |s: &str| {
        s.parse::<u64>()
            .map_err(|e| format!("bad number {s:?}: {e}"))
    };
    let memory = number(memory)?;
    let cpu_secs = number(cpu_secs)?;
    rlimit::setrlimit(rlimit::Resource::AS, memory, memory)
        .map_err(|e| format!("cannot limit memory: {e}"))?;
    rlimit::setrlimit(rlimit::Resource::CPU, cpu_secs, cpu_secs + 1)
        .map_err(|e| format!("cannot limit cpu time: {e}"))?;
    let limits = ImageLimits {
        max_pixels: number(max_pixels)?,
        ..ImageLimits::default()
    };
    let mut bytes = std::fs::read(input).map_err(|e| format!("cannot read {input}: {e}"))?;
    if is_heif(&bytes) {
        match heif_to_png(heif_convert, Path::new(input), Path::new(out_dir)) {
            Ok(png) => bytes = png,
            Err(report) => {
                let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
                println!("{json}");
                return Ok(());
            }
        }
    }
    let report = match render(&bytes, &limits) {
        Ok(rendered) => {
            let mut variants = Vec::new();
            for v in rendered.variants {
                let file = PathBuf::from(format!("{}.webp", v.name));
                std::fs::write(Path::new(out_dir).join(&file), &v.bytes)
                    .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
                variants.push(VariantFile {
                    name: v.name,
                    file,
                    content_type: v.content_type,
                    width: v.width,
                    height: v.height,
                    size: v.bytes.len() as u64,
                });
            }
            ChildReport::Rendered {
                variants,
                placeholder: rendered.placeholder,
            }
        }
        Err(error) => rejected(&error),
    };
    let json = serde_json::to_string(&report).map_err(|e| e.to_string())?;
    println!("{json}");
    Ok(())
}

/// Converts a HEIC/AVIF file to PNG with `heif-convert` (primary image, transformations
/// applied); a file it cannot decode is a rejection.
fn heif_to_png(heif_convert: &str, input: &Path, out_dir: &Path) -> Result<Vec<u8>, ChildReport> {
    let output = out_dir.join("heif.png");
    let run = std::process::Command::new(heif_convert)
        .arg(input)
        .arg(&output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    let undecodable = |reason: String| ChildReport::Rejected {
        code: "undecodable_image".into(),
        reason,
    };
    let run = match run {
        Ok(run) => run,
        // Not installed: our problem, not the file's.
        Err(e) => {
            return Err(ChildReport::Failed {
                reason: format!("cannot run {heif_convert} (HEIC/AVIF decoder): {e}"),
            });
        }
    };
    // With several top-level images heif-convert numbers its outputs; the first is primary.
    let png = [output.clone(), out_dir.join("heif-1.png")]
        .into_iter()
        .find(|p| p.exists());
    match (run.status.success(), png) {
        (true, Some(png)) => {
            let bytes = std::fs::read(&png).map_err(|e| undecodable(format!("heif: {e}")))?;
            let _ = std::fs::remove_file(png);
            Ok(bytes)
        }
        _ => {
            let stderr = String::from_utf8_lossy(&run.stderr);
            let first = stderr.lines().next().unwrap_or("no image decoded").trim();
            Err(undecodable(format!(
                "the HEIF/AVIF image cannot be decoded: {first}"
            )))
        }
    }
}

fn rejected(error: &ImageError) -> ChildReport {
    ChildReport::Rejected {
        code: error.code().into(),
        reason: error.to_string(),
    }
}
