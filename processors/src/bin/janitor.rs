//! `janitor`: see [`tributary_processors::janitor`].
//!
//! Start-up: configuration, telemetry, Cassandra (migrations), Kafka, storage; then the
//! at-least-once consumer loop until SIGTERM, with `/healthz` and `/metrics` on port 8087.

use std::process::ExitCode;

use tributary_processors::{janitor, service};

fn main() -> ExitCode {
    service::main("janitor", 8087, janitor::run)
}
