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
    /// Reverse proxies (addresses or CIDRs) whose forwarding header names the client; from any
    /// other peer it is ignored (default: none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The one header the trusted proxies write: `x-forwarded-for` (the default) or
    /// `forwarded`. The other is ignored: a proxy passes a client's own copy of a header it
    /// does not write.
    #[serde(default)]
    pub proxy_header: crate::config::ProxyHeader,
    /// TLS on the public listener: a PEM certificate chain and its private key (both or neither).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
}

/// `[limits]`: what one client, one provider or all of them together may take.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Requests per second from one client address, on every public route (0: no limit).
    #[serde(default = "default_per_address_rps")]
    pub per_address_rps: u32,
    /// Requests one address may send at once above its rate (default: 2 s of its rate).
    pub per_address_burst: Option<u32>,
    /// Verified webhooks per second into one provider (0, the default: no limit).
    #[serde(default)]
    pub per_provider_rps: u32,
    pub per_provider_burst: Option<u32>,
    /// `POST /oauth/token` requests per minute from one client address.
    #[serde(default = "default_oauth_token_per_min")]
    pub oauth_token_per_address_per_min: u32,
    /// Open connections on the public listener, in all.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Open connections from one client address (trusted proxies are exempt).
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: u32,
    /// Body bytes held by all requests at once, read or being read; over it, 503.
    #[serde(default = "default_max_body_bytes_in_flight")]
    pub max_body_bytes_in_flight: u64,
    /// Log lines per second for each cause of rejection; the rest are counted only.
    #[serde(default = "default_rejection_logs_per_s")]
    pub rejection_logs_per_s: u32,
}

/// `[store]`: the backend, sled tuning, retention.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// sled: MB committed between checkpoints while running; 0: only at a clean shutdown.
    #[serde(default = "default_checkpoint_mb")]
    pub checkpoint_mb: u64,
    /// sled: MB of stored events read between checkpoints, which empty sled's cache; 0: never.
    #[serde(default = "default_checkpoint_read_mb")]
    pub checkpoint_read_mb: u64,
    /// sled: how long a batch may gather under load (default "500us"; "0s": never).
    pub commit_delay: Option<String>,
    /// A commit this slow is logged with its parts (default "100ms"; "0s": never).
    pub slow_commit: Option<String>,
    /// sled: compact after a retention pass when the file is over this many times what it
    /// holds (and over it by `compact_min_mb`); 0: never.
    #[serde(default = "default_compact_ratio")]
    pub compact_ratio: f64,
    #[serde(default = "default_compact_min_mb")]
    pub compact_min_mb: u64,
    /// How long an event is kept once every destination and consumer has it (default "7d").
    pub retention: Option<String>,
    /// How long a (provider, event id) is remembered for deduplication (default "7d").
    pub dedup_window: Option<String>,
    /// How often the sweeper runs (default "60s").
    pub sweep_interval: Option<String>,
    /// `"sled"` (the default) or `"jetstream"`.
    pub backend: Option<String>,
    /// JetStream: the NATS servers' URLs.
    pub servers: Option<Vec<String>>,
    /// JetStream: the stream's name (default "HOOKGATE").
    pub stream: Option<String>,
    /// JetStream: replicas of the stream and the bucket (default 1).
    pub replicas: Option<usize>,
    /// JetStream: a secret reference to the NATS authentication token.
    pub token: Option<String>,
    /// JetStream: a NATS user name, with `password` (a secret reference).
    pub user: Option<String>,
    pub password: Option<String>,
    /// JetStream: a secret reference to a NATS NKey seed.
    pub nkey_seed: Option<String>,
    /// JetStream: the path of a NATS `.creds` file.
    pub credentials: Option<String>,
    /// JetStream: PEM files: certificates to trust, and a client certificate and key.
    pub tls_ca: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// JetStream: the longest a dead gateway's destinations, pollers or sweeper wait before
    /// another gateway takes them over (default "10s").
    pub lease_time: Option<String>,
}

/// One `[[destination]]`: an HTTP endpoint events are pushed to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDestination {
    pub name: String,
    pub url: String,
    /// Providers whose events go here (default: all).
    pub providers: Option<Vec<String>>,
    /// Standard Webhooks `whsec_...` secret the deliveries are signed with.
    pub signing_secret: String,
    /// Per attempt (default "10s").
    pub timeout: Option<String>,
    /// Waits between attempts (default about a day in all).
    pub retry_delays: Option<Vec<String>>,
    /// Deliveries at once when `ordered = false` (default 10).
    pub max_in_flight: Option<usize>,
    pub rate_limit_per_min: Option<u32>,
    /// One event at a time in seq order (default true).
    pub ordered: Option<bool>,
    /// Consecutive failures before the destination pauses and only probes (default 20).
    pub pause_after_failures: Option<u32>,
    /// Failure ratio over the last hour that raises an alert (default 0.5).
    pub alert_ratio: Option<f64>,
    /// Where alerts are posted (Slack-compatible `{"text": ...}`).
    pub alert_url: Option<String>,
}

/// One `[[consumer]]`: a reader that pulls events with a durable cursor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsumer {
    pub name: String,
    /// Providers whose events it reads (default: all).
    pub providers: Option<Vec<String>>,
}

/// `[admin]`: the admin listener (metrics, events API).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    #[serde(default = "default_admin_listen")]
    pub listen: String,
    pub token: Option<String>,
}

/// `[provider.sync]`: the provider's sync API, polled to fill what the webhooks missed. Read
/// apart from `[[provider]]` (the loader takes the `sync` key out first), so the verification
/// schemes never see it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSync {
    /// `"alcmeon"` fills Alcméon's defaults; every key below still overrides it.
    pub preset: Option<String>,
    /// The GET endpoint that lists events since a cursor.
    pub url: Option<String>,
    /// Between rounds (default "60s").
    pub interval: Option<String>,
    /// Per request (default "10s").
    pub timeout: Option<String>,
    /// The query parameter the cursor goes in (Alcméon: `min_action_id`).
    pub cursor_param: Option<String>,
    /// The query parameter the page size goes in, and the size.
    pub limit_param: Option<String>,
    pub page_size: Option<u32>,
    /// JSON pointer to the array of items in a page (`""`: the page is the array).
    pub items: Option<String>,
    /// JSON pointer to an item's id, which must equal the event id the webhooks carry.
    pub item_id: Option<String>,
    /// Whether the API returns the item at the cursor too (then the next cursor is the highest
    /// id + 1).
    pub cursor_inclusive: Option<bool>,
    /// JSON pointer to the next page's cursor (a token, or a whole URL) instead of the highest id.
    pub next_pointer: Option<String>,
    /// Where the very first round starts (default: after the highest event id received so far).
    pub start_cursor: Option<toml::Value>,
    /// Pages fetched at most per round (default 10).
    pub max_pages_per_round: Option<u32>,
    /// The largest page read (default 32 MiB, at most 1 GiB).
    pub max_page_bytes: Option<u64>,
    /// `[provider.sync.auth]` (default: none).
    pub auth: Option<RawSyncAuth>,
}

/// `[provider.sync.auth]`: how hookgate authenticates to the sync API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSyncAuth {
    /// `none`, `basic`, `header` or `oauth` (the `alcmeon` preset defaults to `basic`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// basic: the user (Alcméon: the instance id) and the password secret (the application secret).
    pub user: Option<String>,
    pub password: Option<String>,
    /// header: a static header and its secret value.
    pub name: Option<String>,
    pub value: Option<String>,
    /// oauth: client credentials at a token endpoint.
    pub token_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    /// oauth: how long before its expiry a token is replaced (default "30m").
    pub refresh_before: Option<String>,
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
            trusted_proxies: Vec::new(),
            proxy_header: crate::config::ProxyHeader::default(),
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            per_address_rps: default_per_address_rps(),
            per_address_burst: None,
            per_provider_rps: 0,
            per_provider_burst: None,
            oauth_token_per_address_per_min: default_oauth_token_per_min(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            max_body_bytes_in_flight: default_max_body_bytes_in_flight(),
            rejection_logs_per_s: default_rejection_logs_per_s(),
        }
    }
}

fn default_per_address_rps() -> u32 {
    1000
}

fn default_oauth_token_per_min() -> u32 {
    60
}

fn default_max_connections() -> u32 {
    10_000
}

fn default_max_connections_per_address() -> u32 {
    256
}

fn default_max_body_bytes_in_flight() -> u64 {
    64 * 1024 * 1024
}

fn default_rejection_logs_per_s() -> u32 {
    5
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            cache_mb: default_cache_mb(),
            checkpoint_mb: default_checkpoint_mb(),
            checkpoint_read_mb: default_checkpoint_read_mb(),
            commit_delay: None,
            slow_commit: None,
            compact_ratio: default_compact_ratio(),
            compact_min_mb: default_compact_min_mb(),
            retention: None,
            dedup_window: None,
            sweep_interval: None,
            backend: None,
            servers: None,
            stream: None,
            replicas: None,
            token: None,
            user: None,
            password: None,
            nkey_seed: None,
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            lease_time: None,
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

fn default_checkpoint_mb() -> u64 {
    super::DEFAULT_CHECKPOINT_MB
}

fn default_checkpoint_read_mb() -> u64 {
    super::DEFAULT_CHECKPOINT_READ_MB
}

fn default_compact_ratio() -> f64 {
    super::DEFAULT_COMPACT_RATIO
}

fn default_compact_min_mb() -> u64 {
    super::DEFAULT_COMPACT_MIN_MB
}

/// sled's page cache. sled's own memory beside it grows with the number of sled values, which
/// packing keeps to a few per hundred events (see `store/sled/`): with this cache, a store of
/// ten million 1 KiB events peaked at 226 MiB under load in the ingest bench (docs/performance.md).
fn default_cache_mb() -> u64 {
    32
}

fn default_admin_listen() -> String {
    "127.0.0.1:9090".to_string()
}
