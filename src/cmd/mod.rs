//! The command line: one `Command` enum, one file per command.

mod check_config;
mod send_test;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use send_test::SendTestArgs;

/// hookgate: verify, durably store, deduplicate and forward incoming webhooks.
#[derive(Debug, Parser)]
#[command(name = "hookgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ConfigArg),
    /// Check a config file; print every problem and exit 1 if there is any.
    CheckConfig(ConfigArg),
    /// Post a sample webhook signed as the provider's vendor would; exit 0 on a 2xx answer.
    SendTest(SendTestArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, env = "HOOKGATE_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
}

/// Runs a command; the result is the process's exit code.
pub fn execute(cli: Cli) -> u8 {
    match cli.command {
        Command::Serve(args) => serve::serve(&args.config),
        Command::CheckConfig(args) => check_config::check_config(&args.config),
        Command::SendTest(args) => send_test::send_test(&args),
    }
}
