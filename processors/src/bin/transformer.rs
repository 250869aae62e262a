//! `transformer`: see [`tributary_processors::transformer`].
//!
//! - `transformer`: the media-jobs consumer, with `/healthz` and `/metrics` on port 8086.
//! - `transformer render-image ...`: the isolated child that decodes one image (internal).
//! - `transformer bench --op OP --iterations N --out DIR FILE...`: the image pipeline in a
//!   loop, for `bench/images.sh`.

use std::process::ExitCode;

use tributary_processors::transformer::{bench, isolate};
use tributary_processors::{service, transformer};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some(isolate::SUBCOMMAND) => isolate::child_main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        _ => return service::main("transformer", 8086, transformer::run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("transformer: error: {error}");
            ExitCode::FAILURE
        }
    }
}
