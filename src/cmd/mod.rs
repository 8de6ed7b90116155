//! The command line: one `Command` enum, one file per command.
//!
//! `serve`, `check-config` and `send-test` run or check a gateway; `events`, `dead`,
//! `destinations`, `consumers` and `pollers` wrap the admin API for an operator at a shell
//! ([`admin_client`] reaches it, [`table`] shows its answers).

mod admin_client;
mod check_config;
mod consumers;
mod dead;
mod destinations;
mod events;
mod log_writer;
pub mod logging;
pub(crate) mod loopback;
mod pollers;
mod send_test;
mod serve;
mod table;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

pub use logging::LogFormat;
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
    Serve(ServeArgs),
    /// Check a config file; print every problem and exit 1 if there is any.
    CheckConfig(ConfigArg),
    /// Post a sample webhook signed as the provider's vendor would; exit 0 on a 2xx answer.
    SendTest(SendTestArgs),
    /// List stored events, or show one.
    Events(events::EventsArgs),
    /// List a destination's dead events, or replay them.
    Dead(dead::DeadArgs),
    /// Show the destinations' queues and state; pause or resume one.
    Destinations(destinations::DestinationsArgs),
    /// Show the pull consumers' cursors and lag.
    Consumers(admin_client::AdminArgs),
    /// Show the sync pollers' cursors, last success and last error.
    Pollers(admin_client::AdminArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// The config file.
    #[arg(long, env = "HOOKGATE_CONFIG", default_value = "config.toml")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// How log lines are written on stderr: `text` (journald-friendly) or `json`.
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
}

impl Cli {
    /// The log format the command asked for (only `serve` has a choice).
    pub fn log_format(&self) -> LogFormat {
        match &self.command {
            Command::Serve(args) => args.log_format,
            _ => LogFormat::Text,
        }
    }
}

/// Runs a command; the result is the process's exit code.
pub fn execute(cli: Cli) -> u8 {
    use admin_client::exit_code;
    match cli.command {
        Command::Serve(args) => serve::serve(&args.config.config),
        Command::CheckConfig(args) => check_config::check_config(&args.config),
        Command::SendTest(args) => send_test::send_test(&args),
        Command::Events(args) => exit_code(events::run(&args)),
        Command::Dead(args) => exit_code(dead::run(&args)),
        Command::Destinations(args) => exit_code(destinations::run(&args)),
        Command::Consumers(args) => exit_code(consumers::run(&args)),
        Command::Pollers(args) => exit_code(pollers::run(&args)),
    }
}
