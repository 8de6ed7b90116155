//! The command line: one `Command` enum, one file per command.

mod check_config;
mod serve;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    }
}
