//! The config file's sections as serde reads them: every key, its default, nothing validated yet.

use serde::Deserialize;

/// `[server]`: the public listener and the ingest path.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: String,
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    #[serde(default = "default_ack_deadline_ms")]
    pub ack_deadline_ms: u64,
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// HTTP worker threads; default: the number of CPUs.
    pub workers: Option<usize>,
}

/// `[store]`: sled tuning.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
}

/// `[admin]`: the admin listener (metrics, events API).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    pub token: Option<String>,
}

/// One `[[provider]]`: a sender, its route and its verification scheme. Scheme-specific keys are
/// optional here; `verify::Verifier::build` checks which ones apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub name: String,
    pub verify: String,
    #[serde(default)]
    pub secrets: Vec<String>,
    pub event_id: Option<String>,
    pub tolerance_s: Option<u64>,
    pub header: Option<String>,
    pub algorithm: Option<String>,
    pub encoding: Option<String>,
    pub prefix: Option<String>,
    pub allow_ips: Option<Vec<String>>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_body_bytes: default_max_body_bytes(),
            ack_deadline_ms: default_ack_deadline_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            workers: None,
        }
    }
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            cache_mb: default_cache_mb(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

fn default_data_dir() -> String {
    "data".to_string()
}

fn default_max_body_bytes() -> u64 {
    1024 * 1024
}

fn default_ack_deadline_ms() -> u64 {
    4000
}

fn default_body_timeout_ms() -> u64 {
    10_000
}

fn default_cache_mb() -> u64 {
    64
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".to_string()
}
