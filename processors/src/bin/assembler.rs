//! `assembler`: see [`tributary_processors::assembler`].
//!
//! Start-up: configuration, telemetry, Cassandra (migrations), Kafka, storage; then the
//! at-least-once consumer loop until SIGTERM, with `/healthz` and `/metrics` on port 8083.

use std::process::ExitCode;

use tributary_processors::{assembler, service};

fn main() -> ExitCode {
    service::main("assembler", 8083, assembler::run)
}
