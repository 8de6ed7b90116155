//! The `hookgate` binary: parse arguments, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use hookgate::cmd::{allocator, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything else: it may start the process again (see `allocator`).
    let threshold = matches!(cli.command, Command::Serve(_)).then(allocator::fix_mmap_threshold);
    let _logging = hookgate::cmd::logging::init(cli.log_format());
    if let Some(threshold) = &threshold {
        allocator::log(threshold);
    }
    ExitCode::from(hookgate::cmd::execute(cli))
}
