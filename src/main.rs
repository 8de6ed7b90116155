//! The `hookgate` binary: parse arguments, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hookgate::cmd::Cli::parse();
    let _logging = hookgate::cmd::logging::init(cli.log_format());
    ExitCode::from(hookgate::cmd::execute(cli))
}
