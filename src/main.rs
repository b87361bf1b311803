// The server's endpoint is a deep stack of middleware types; computing
// the layout of its connection future in release builds needs more depth
// than the default 128.
#![recursion_limit = "256"]

use clap::Parser;
use latchkey::{
    cli::{self, Cli},
    telemetry,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.config.log_format, std::io::stderr);
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("latchkey: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
