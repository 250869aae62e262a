//! `validator`: see [`tributary_processors::validator`].
//!
//! Start-up: configuration, telemetry, Cassandra (migrations), Kafka, storage; then the
//! at-least-once consumer loop until SIGTERM, with `/healthz` and `/metrics` on port 8084.

use std::process::ExitCode;

use tributary_processors::{service, validator};

fn main() -> ExitCode {
    service::main("validator", 8084, validator::run)
}
