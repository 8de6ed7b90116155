//! The `hookgate` binary: parse arguments, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hookgate::cmd::Cli::parse();
    let _logging = match hookgate::cmd::logging::init(cli.log_format()) {
        Ok(logging) => logging,
        Err(err) => {
            eprintln!("hookgate: cannot start the log writer's thread: {err}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(hookgate::cmd::execute(cli))
}
