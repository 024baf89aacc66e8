//! `terrafill`: parse, load config, start telemetry, call the library that does the work.

mod args;
mod commands;
mod config;
mod embedded;
mod exit;
mod gaps;
mod geotiff;
mod jobfile;
mod preview;
mod progress;
mod train_metrics;

use std::io::IsTerminal;
use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse; with the system allocator every large tensor of the
/// model was faulted in afresh, which cost as much as the convolutions (model README). It is
/// built with `no_thp`: with transparent huge pages each page mimalloc purges and reuses is
/// zeroed again 2 MB at a time, which took a third of the CPU time of an `identity` fill.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            return ExitCode::from(exit::USAGE);
        }
    };
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
            std::process::exit(i32::from(exit::code(&error)))
        }
    }
}

/// The command line, with a job file right after `fill`, `submit`, `retry` or `train` expanded
/// into the flags it holds (`jobfile`). Flags given after the file override its keys. Usage
/// errors exit here, as clap reports them.
fn parse() -> anyhow::Result<args::Cli> {
    use clap::{CommandFactory, FromArgMatches};
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if jobfile::stray_date(&argv) {
        anyhow::bail!("--date fills the {{date}} templates of a job file, and no job file (JOB.toml right after the subcommand) was given");
    }
    let flags = |sub: &str| {
        let cmd = args::Cli::command();
        let sub = cmd.find_subcommand(sub)?;
        Some(
            sub.get_arguments()
                .filter_map(|a| a.get_long())
                .map(str::to_owned)
                .collect(),
        )
    };
    let argv = jobfile::expand(argv, &flags)?;
    let cmd = jobfile::COMMANDS
        .iter()
        .fold(args::Cli::command(), |cmd, (name, _)| {
            cmd.mut_subcommand(name, |c| c.args_override_self(true))
        });
    let matches = cmd.try_get_matches_from(argv).unwrap_or_else(|e| e.exit());
    Ok(args::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
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
