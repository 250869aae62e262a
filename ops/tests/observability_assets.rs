//! The Grafana dashboard (`infra/grafana/tributary-dashboard.json`) and the Prometheus alert
//! rules (`infra/prometheus/alerts.yml`) may only name metrics the code exports: every
//! `tributary_*` name they reference must be registered by a `metrics::counter!`, `gauge!` or
//! `histogram!` somewhere in the workspace (histograms render as summaries, so `_sum` and
//! `_count` series count as their base name). Renaming a metric in code fails this test
//! until the dashboard and alerts follow.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The workspace root, read at run time (the shared target directory may serve another
/// checkout).
fn root() -> PathBuf {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    Path::new(&manifest)
        .parent()
        .expect("ops/ has a parent")
        .to_path_buf()
}

/// Every Rust source file of the workspace's crates.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules") {
                sources(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Metric names registered in `source`: the string literal right after `counter!(`,
/// `gauge!(` or `histogram!(`.
fn registered(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    for macro_name in ["counter!(", "gauge!(", "histogram!("] {
        let mut rest = source;
        while let Some(at) = rest.find(macro_name) {
            rest = &rest[at + macro_name.len()..];
            let literal = rest.trim_start();
            if let Some(body) = literal.strip_prefix('"')
                && let Some(end) = body.find('"')
            {
                names.push(body[..end].to_string());
            }
        }
    }
    names
}

/// `tributary_*` metric names referenced in `text`.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tributary_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The referenced names no code exports.
fn unknown(referenced: &BTreeSet<String>, known: &BTreeSet<String>) -> Vec<String> {
    referenced
        .iter()
        .filter(|name| {
            let base = ["_sum", "_count", "_bucket"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !known.contains(name.as_str()) && !known.contains(base)
        })
        .cloned()
        .collect()
}

fn exported() -> BTreeSet<String> {
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let mut known = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        known.extend(registered(&text));
    }
    known
}

#[test]
fn the_dashboard_and_the_alerts_name_only_exported_metrics() {
    let known = exported();
    for expected in [
        "tributary_consumer_lag",
        "tributary_consumer_messages_total",
        "tributary_janitor_stuck_uploads_failed_total",
    ] {
        assert!(
            known.contains(expected),
            "the scan misses {expected}: {known:?}"
        );
    }
    for asset in [
        "infra/grafana/tributary-dashboard.json",
        "infra/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(root().join(asset)).expect(asset);
        let names = referenced(&text);
        assert!(names.len() >= 8, "{asset} references only {names:?}");
        let missing = unknown(&names, &known);
        assert!(
            missing.is_empty(),
            "{asset} references metrics no code exports: {missing:?}"
        );
        // What the alerts are about: lag, dead letters, stuck uploads, errors.
        for needed in [
            "tributary_consumer_lag",
            "tributary_janitor_stuck_uploads_failed_total",
            "tributary_api_unavailable_total",
        ] {
            assert!(names.contains(needed), "{asset} does not watch {needed}");
        }
        assert!(
            text.contains("dead_lettered"),
            "{asset} does not watch dead letters"
        );
    }
    // The label values the assets filter on are the ones the consumer loop sets.
    let consumer = std::fs::read_to_string(root().join("runtime/src/kafka/consumer.rs"))
        .expect("consumer source");
    for outcome in ["\"ok\"", "\"retry\"", "\"dead_lettered\""] {
        assert!(
            consumer.contains(outcome),
            "outcome {outcome} not set in code"
        );
    }
    // The dashboard is valid JSON with panels.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("infra/grafana/tributary-dashboard.json"))
            .expect("dashboard"),
    )
    .expect("dashboard json");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() > 5));
}

#[test]
fn a_renamed_metric_is_caught() {
    // A failing fixture: a dashboard naming a metric the code does not export.
    let known = exported();
    let fixture = r#"{"expr": "sum(rate(tributary_uploads_initiated_total[5m])) / sum(rate(tributary_uploads_started_total[5m]))"}"#;
    assert_eq!(
        unknown(&referenced(fixture), &known),
        ["tributary_uploads_started_total"]
    );
    // Summary series of a histogram are its own.
    let summary = "tributary_kafka_produce_seconds_sum / tributary_kafka_produce_seconds_count";
    assert!(unknown(&referenced(summary), &known).is_empty());
}

#[test]
fn registrations_are_found_across_lines() {
    let source =
        "metrics::counter!(\n    \"tributary_a_total\",\n \"k\" => v)\n gauge!(\"tributary_b\")";
    assert_eq!(registered(source), ["tributary_a_total", "tributary_b"]);
}
