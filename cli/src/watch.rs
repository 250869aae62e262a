//! Showing uploads: one status, a page of the listing, and following an upload's state until
//! it settles.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::{ApiError, Client};

/// How often `watch` asks for the state.
const POLL: Duration = Duration::from_millis(500);

/// States after which nothing changes any more (a ready upload may still be deleted).
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "ready" | "rejected" | "failed" | "aborted" | "expired" | "deleted"
    )
}

/// Prints an upload's status: the API's JSON as is, or a few readable lines.
pub fn print_status(status: &Value, json: bool) {
    if json {
        println!("{status}");
        return;
    }
    let text = |key: &str| status[key].as_str().unwrap_or("-").to_string();
    println!("upload     {}", text("upload_id"));
    println!("file       {} ({})", text("filename"), text("content_type"));
    println!("state      {}{}", text("state"), progress_suffix(status));
    println!(
        "parts      {} of {} confirmed ({} bytes of {})",
        status["parts_confirmed"], status["part_count"], status["bytes_confirmed"], status["size"]
    );
    if let Some(error) = status["error"].as_object() {
        println!(
            "error      {}: {}",
            error.get("code").and_then(Value::as_str).unwrap_or("-"),
            error.get("message").and_then(Value::as_str).unwrap_or("-")
        );
    }
    for variant in status["variants"].as_array().into_iter().flatten() {
        println!(
            "variant    {:<10} {}x{} {} bytes  {}",
            variant["variant"].as_str().unwrap_or("-"),
            variant["width"],
            variant["height"],
            variant["size"],
            variant["url"].as_str().unwrap_or("-")
        );
    }
}

/// Prints a page of the listing.
pub fn print_list(page: &Value, json: bool) {
    if json {
        println!("{page}");
        return;
    }
    for upload in page["uploads"].as_array().into_iter().flatten() {
        println!(
            "{}  {:<10} {:>12}  {}",
            upload["upload_id"].as_str().unwrap_or("-"),
            upload["state"].as_str().unwrap_or("-"),
            upload["size"],
            upload["filename"].as_str().unwrap_or("-")
        );
    }
    if let Some(cursor) = page["next_cursor"].as_str() {
        println!("more: --cursor {cursor}");
    }
}

fn progress_suffix(status: &Value) -> String {
    match status["progress"]["percent"].as_f64() {
        Some(percent) => format!(
            " ({} {percent:.0}%)",
            status["progress"]["stage"].as_str().unwrap_or("")
        ),
        None => String::new(),
    }
}

/// Prints each change of an upload's state (and progress) until it is final; true if it
/// ended ready.
pub async fn watch(
    client: &Client,
    upload_id: &str,
    timeout: Duration,
    json: bool,
) -> Result<bool, ApiError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let status = client.status(upload_id).await?;
        let state = status["state"].as_str().unwrap_or("unknown").to_string();
        let line = format!("{state}{}", progress_suffix(&status));
        if line != last {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "upload_id": upload_id,
                        "state": state,
                        "progress": status["progress"],
                        "error": status["error"],
                    })
                );
            } else {
                match status["error"].as_object() {
                    Some(error) => println!(
                        "{upload_id}  {line}: {}",
                        error.get("message").and_then(Value::as_str).unwrap_or("")
                    ),
                    None => println!("{upload_id}  {line}"),
                }
            }
            last = line;
        }
        if is_final(&state) {
            return Ok(state == "ready");
        }
        if Instant::now() >= deadline {
            return Err(ApiError::Unavailable(format!(
                "{upload_id} still {state} after {timeout:?}"
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
