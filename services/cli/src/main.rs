//! `terrafill`: parse, load config, start telemetry, call the library that does the work.

mod args;
mod commands;
mod config;
mod embedded;
mod gaps;
mod geotiff;
mod preview;
mod progress;
mod train_metrics;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed pages for reuse; with the system allocator every large tensor of the
/// model was faulted in afresh, which cost as much as the convolutions (model README). It is
/// built with `no_thp`: with transparent huge pages each page mimalloc purges and reuses is
/// zeroed again 2 MB at a time, which took a third of the CPU time of an `identity` fill.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = args::Cli::parse();
    let service = matches!(
        cli.command,
        args::Command::Worker(_) | args::Command::Stitcher(_)
    );
    let json = cli.log_json || !std::io::stderr().is_terminal();
    telemetry::init_tracing(json, if service { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            // Exit without dropping the runtime: a broker connection attempt abandoned at its
            // deadline leaves a task that lapin's I/O thread awaits, and cancelling it at runtime
            // shutdown makes that thread panic onto stderr after our one-line error.
            std::process::exit(1)
        }
    }
}

/// The error and its causes on one line, skipping causes whose text a message already includes.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    if let Some(hint) = zarr_io::store_error_hint(&line) {
        line = format!("{hint}; {line}");
    }
    line.replace('\n', " ")
}
