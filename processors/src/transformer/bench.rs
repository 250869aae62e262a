//! `transformer bench`: the image pipeline in a loop over files held in memory, one thread,
//! printing one JSON line in the format `bench/images/summarize.py` reads (the same as the
//! sharp side's `bench/images/sharp/bench.mjs`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::image::{EncodedVariant, ImageLimits, render, render_jpeg};

/// Runs the benchmark; `args` = `--op OP --iterations N --out DIR FILE...`.
pub fn main(args: &[String]) -> Result<(), String> {
    let mut op = None;
    let mut iterations = 1usize;
    let mut out = None;
    let mut files = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--op" => op = rest.next().cloned(),
            "--iterations" => {
                iterations = rest
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--iterations needs a number")?;
            }
            "--out" => out = rest.next().map(PathBuf::from),
            file => files.push(PathBuf::from(file)),
        }
    }
    let op = op.ok_or("--op is required (sharp-jpeg, tributary-webp or video-hls)")?;
    let out = out.ok_or("--out is required")?;
    std::fs::create_dir_all(&out).map_err(|e| format!("create {}: {e}", out.display()))?;
    if op == "video-hls" {
        return video(&files, iterations, &out);
    }
    let inputs: Vec<(PathBuf, Vec<u8>)> = files
        .iter()
        .map(|f| {
            std::fs::read(f)
                .map(|b| (f.clone(), b))
                .map_err(|e| format!("read {}: {e}", f.display()))
        })
        .collect::<Result<_, _>>()?;
    let limits = ImageLimits::default();
    let run_one = |bytes: &[u8]| -> Result<Vec<EncodedVariant>, String> {
        match op.as_str() {
            "sharp-jpeg" => render_jpeg(bytes, 720, 80)
                .map(|v| vec![v])
                .map_err(|e| e.to_string()),
            "tributary-webp" => render(bytes, &limits)
                .map(|r| r.variants)
                .map_err(|e| e.to_string()),
            other => Err(format!("unknown op {other}")),
        }
    };
    let started = Instant::now();
    let mut last = Vec::new();
    for iteration in 0..iterations {
        for (path, bytes) in &inputs {
            let variants = run_one(bytes)?;
            if iteration + 1 == iterations {
                last.push((path.clone(), variants));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut outputs = Vec::new();
    for (path, variants) in last {
        for v in variants {
            let ext = if v.content_type == "image/jpeg" {
                "jpg"
            } else {
                "webp"
            };
            let name = format!("{}.{}.{ext}", stem(&path), v.name);
            let target = out.join(name);
            std::fs::write(&target, &v.bytes)
                .map_err(|e| format!("write {}: {e}", target.display()))?;
            outputs.push(serde_json::json!({
                "path": target, "bytes": v.bytes.len(), "width": v.width, "height": v.height,
            }));
        }
    }
    let images = inputs.len() * iterations;
    let line = serde_json::json!({
        "tool": "tributary", "op": op, "images": images, "seconds": seconds,
        "images_per_sec": images as f64 / seconds, "outputs": outputs,
    });
    println!("{line}");
    Ok(())
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `--op video-hls`: probe + HLS ladder + poster of each file, `iterations` times, printing
/// the encode speed as a multiple of real time (seconds of video per second of wall time).
fn video(files: &[PathBuf], iterations: usize, out: &Path) -> Result<(), String> {
    use super::video::{VideoLimits, probe, transcode_hls};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let limits = VideoLimits::default();
    let (ffmpeg, ffprobe) = (Path::new("ffmpeg"), Path::new("ffprobe"));
    let mut runs = Vec::new();
    for file in files {
        for iteration in 0..iterations {
            let target = out.join(format!("{}-{iteration}", stem(file)));
            let _ = std::fs::remove_dir_all(&target);
            let started = Instant::now();
            let (probed, output) = runtime.block_on(async {
                let probed = probe(ffprobe, file, &limits)
                    .await
                    .map_err(|e| e.to_string())?;
                let output = transcode_hls(ffmpeg, file, &target, &probed, &limits, |_| {})
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>((probed, output))
            })?;
            let seconds = started.elapsed().as_secs_f64();
            runs.push(serde_json::json!({
                "input": file, "duration_secs": probed.duration_secs,
                "width": probed.width, "height": probed.height, "wall_secs": seconds,
                "realtime_multiple": probed.duration_secs / seconds,
                "variants": output.variants.iter().map(|v| v.name.clone()).collect::<Vec<_>>(),
            }));
        }
    }
    let line = serde_json::json!({"tool": "tributary", "op": "video-hls", "runs": runs});
    println!("{line}");
    Ok(())
}
