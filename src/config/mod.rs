//! Configuration: the TOML file (`raw`), its loading and validation (`load`), and the validated
//! `Config` the rest of hookgate runs on. Secrets are resolved here, once, and never printed.

mod load;
mod raw;
mod secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::event::ProviderName;
use crate::event_id::EventIdRule;
use crate::verify::Verifier;

pub use load::{load_file, load_str, ConfigError};
pub use raw::{RawOAuth, RawOAuthClient, RawProvider};
pub use secret::{resolve as resolve_secret, Secret, SecretSource};

/// Everything hookgate needs to run, checked.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub providers: Vec<ProviderConfig>,
}

/// The public listener and the ingest path.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body_bytes: usize,
    /// A request not durable this long after it arrived is answered 503.
    pub ack_deadline: Duration,
    /// The whole body must arrive within this; else 408 and the connection is closed.
    pub body_timeout: Duration,
    pub workers: usize,
}

/// sled's tuning.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub cache_bytes: u64,
}

/// The admin listener.
#[derive(Debug)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub token: Secret,
}

/// One sender: its route, how it is verified, and where its event ids come from.
#[derive(Debug)]
pub struct ProviderConfig {
    pub name: ProviderName,
    pub verifier: Verifier,
    pub event_id: Option<EventIdRule>,
}

impl Config {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name.as_str() == name)
    }
}
