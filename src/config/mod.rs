//! Configuration: the TOML file (`raw`; a provider's scheme keys in `scheme`, one serde variant
//! per scheme), its loading and validation (`load`), and the validated `Config` the rest of
//! hookgate runs on. `verifier` builds each provider's [`Verifier`] from its scheme's keys:
//! `config` imports `verify`, never the reverse. Every secret is resolved here, in one place
//! (`Loader::resolve`, which warns about secrets written literally), once, and never printed.

mod audit;
mod jetstream;
mod limits;
mod load;
mod outputs;
mod raw;
mod scheme;
mod sync;
mod verifier;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use crate::event::ProviderName;
use crate::event_id::EventIdRule;
use crate::verify::Verifier;

pub use crate::secret::{resolve as resolve_secret, Secret, SecretSource};
pub use audit::MIN_OWN_SECRET_BYTES;
pub use limits::parse_network;
pub use load::{load_admin_file, load_file, load_str, AdminAccess, ConfigError};
pub use sync::{NextCursor, SyncAuth, SyncConfig};

/// Everything hookgate needs to run, checked.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub providers: Vec<ProviderConfig>,
    pub destinations: Vec<DestinationConfig>,
    pub consumers: Vec<ConsumerConfig>,
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
    /// Peers whose forwarding header names the client (see `http/client.rs`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Which header that is.
    pub proxy_header: ProxyHeader,
    /// TLS on the public listener, loaded and checked (see `http/tls.rs`).
    pub tls: Option<TlsFiles>,
}

/// `[server] proxy_header`: the forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyHeader {
    /// `X-Forwarded-For` (nginx, HAProxy, AWS load balancers, Caddy, Traefik).
    #[default]
    XForwardedFor,
    /// `Forwarded`, RFC 7239.
    Forwarded,
}

/// `[server] tls_cert` and `tls_key`, and what they hold.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub certified: std::sync::Arc<rustls::sign::CertifiedKey>,
}

/// `[limits]`: the abuse limits of the public listener (see `http/limits.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Requests from one client address, on every public route.
    pub per_address: Option<Rate>,
    /// Verified webhooks into one provider.
    pub per_provider: Option<Rate>,
    /// `POST /oauth/token` from one client address.
    pub oauth_token_per_address: Option<Rate>,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub max_body_bytes_in_flight: usize,
    /// Log lines per second per cause of rejection.
    pub rejection_logs_per_s: u32,
}

/// A token bucket: one request more every `interval`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval: Duration,
    pub burst: NonZeroU32,
}

impl Rate {
    /// `count` requests per `period`, with `burst` (default: `2 * count`) at once; `None` if
    /// `count` is 0 (no limit).
    pub fn new(count: u32, period: Duration, burst: Option<u32>) -> Option<Rate> {
        let count = NonZeroU32::new(count)?;
        let burst = burst.unwrap_or(count.get().saturating_mul(2));
        Some(Rate {
            interval: period / count.get(),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        })
    }
}

/// sled's tuning and the sweeper's horizons.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub cache_bytes: u64,
    /// An event every destination and consumer has is removed this long after it arrived.
    pub retention: Duration,
    /// A (provider, event id) is remembered this long for deduplication.
    pub dedup_window: Duration,
    pub sweep_interval: Duration,
    /// Recent dedup keys sealed into a run at a time (not a config key: tests lower it).
    pub dedup_run_keys: u64,
    /// sled: bytes committed after which the committer checkpoints (reopens) sled, so that a
    /// start after a crash replays at most about this much; 0: only at a clean shutdown.
    pub checkpoint_bytes: u64,
    /// sled: bytes of stored events read (deliveries, consumers, the admin API, the sweeper)
    /// after which the committer checkpoints sled, which empties its cache; 0: never.
    pub checkpoint_read_bytes: u64,
    /// sled: reads of the events within this many seqs of the newest do not count towards
    /// `checkpoint_read_bytes` (not a config key: tests lower it).
    pub recent_read_seqs: u64,
    /// sled: how long the committer lets a batch gather once other requests came with the last
    /// one (see `store/sled/committer.rs` `gather`); zero: commit at once.
    pub commit_delay: Duration,
    /// A commit whose oldest request waited this long for its answer (a sled batch, a JetStream
    /// publish) is logged with the time of each part (`store/slow_commit.rs`); zero: never.
    pub slow_commit: Duration,
    /// sled: after a retention pass, the store is compacted (copied afresh, see
    /// `store/sled/compact/`) when its file is over this many times the bytes it holds, and
    /// over them by at least `compact_min_bytes`; 0: never.
    pub compact_ratio: f64,
    pub compact_min_bytes: u64,
    /// Where the store lives: `[store] backend`.
    pub backend: StoreBackend,
}

/// `[store] backend`: sled on this machine (the default), or a NATS JetStream stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StoreBackend {
    #[default]
    Sled,
    JetStream(JetStreamConfig),
}

/// The JetStream backend's settings (`[store] backend = "jetstream"`; see docs/store.md).
#[derive(Clone, PartialEq)]
pub struct JetStreamConfig {
    /// The NATS servers to connect to, as `nats://host:port` URLs.
    pub servers: Vec<String>,
    /// The stream holding the events; the KV bucket of outputs' state is `<stream>_state`.
    pub stream: String,
    /// The stream's and the bucket's replicas (1 on a single server, 3 in a cluster).
    pub replicas: usize,
    /// How hookgate proves who it is to the NATS servers.
    pub auth: NatsAuth,
    /// TLS settings beyond the `tls://` URLs' defaults; `None`: plain `nats://` servers are
    /// spoken to in the clear.
    pub tls: Option<NatsTls>,
    /// The longest a background task held by a gateway that died (a destination's deliveries, a
    /// poller, the sweeper) waits before another gateway takes it over.
    pub lease_time: Duration,
}

/// The servers as hookgate shows URLs (one may carry a user and password).
impl std::fmt::Debug for JetStreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<String> = self
            .servers
            .iter()
            .map(|server| {
                url::Url::parse(server).map_or_else(
                    |_| "[not a URL]".to_string(),
                    |url| crate::shown_url::shown(&url),
                )
            })
            .collect();
        f.debug_struct("JetStreamConfig")
            .field("servers", &servers)
            .field("stream", &self.stream)
            .field("replicas", &self.replicas)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("lease_time", &self.lease_time)
            .finish()
    }
}

/// `[store] token`, `user` + `password`, `nkey_seed` or `credentials`: at most one.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum NatsAuth {
    #[default]
    None,
    /// An authorization token.
    Token(Secret),
    UserPassword {
        user: String,
        password: Secret,
    },
    /// An NKey seed (`SU...`): the server knows the user by its public key.
    NKey(Secret),
    /// A `.creds` file (a user JWT and its NKey seed), for servers in operator mode.
    Credentials(PathBuf),
}

/// `[store] tls_ca`, `tls_cert` and `tls_key`: any of them makes TLS required.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NatsTls {
    /// PEM certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// A PEM client certificate chain and its key, for servers that verify clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// `[store] checkpoint_mb`'s default: a replay of this much took about 0.6 s at 10 M events.
pub const DEFAULT_CHECKPOINT_MB: u64 = 256;

/// `[store] checkpoint_read_mb`'s default: off. sled 0.34 applies its cache's bound only once 64
/// accesses of one of its 256 shards have gathered, so what a plain scan pulls in stays resident
/// until sled is reopened (a 10 M-event store's history took a gateway from 85 MiB to over
/// 1 GiB), which reads' checkpoints bounded; readers' scans now keep the bound themselves
/// (`store/sled/bounded_scan.rs`: 135 MiB for the same reads without a checkpoint, 150 with
/// them; docs/performance.md, "Reading history").
pub const DEFAULT_CHECKPOINT_READ_MB: u64 = 0;
/// Reads of the newest events do not count towards `checkpoint_read_mb`: they read the leaves the
/// committer writes, resident anyway (a delivery or consumer that keeps up reads only those, and
/// counted, at 500 events/s, would have asked for a checkpoint every ~10 s). 4,096 events of 1 KiB
/// fill ~11 leaves of packs of 24 KiB.
pub const DEFAULT_RECENT_READ_SEQS: u64 = 4096;

/// `[store] commit_delay`'s default: it halved the fsyncs of a load paced at half the maximum,
/// and lowered its CPU per ack and p99 (docs/performance.md, "Letting batches gather").
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_micros(500);
/// `[store] slow_commit`'s default: a healthy disk syncs a batch in a few milliseconds (a
/// spinning one in tens); this is a tenth of a second no sender should wait for.
pub const DEFAULT_SLOW_COMMIT: Duration = Duration::from_millis(100);
/// `[store] commit_delay`'s bound: every ack waits up to this long under load.
pub const MAX_COMMIT_DELAY: Duration = Duration::from_millis(100);

/// `[store] compact_ratio`'s default: sled's log reaches up to about twice the bytes it holds
/// by itself (it rewrites a segment once it is half garbage; 1.5 let a store under heavy
/// ingest, with no retention at all, start a copy in the ingest bench), so only what retention
/// frees gets a store over this.
pub const DEFAULT_COMPACT_RATIO: f64 = 2.5;
/// `[store] compact_min_mb`'s default: less than this to win is not worth a copy.
pub const DEFAULT_COMPACT_MIN_MB: u64 = 256;

/// The recent dedup keys that make a sealed run (see `store/sled/runs/`).
pub const DEFAULT_DEDUP_RUN_KEYS: u64 = 262_144;

impl Default for StoreConfig {
    /// What an empty `[store]` section gives.
    fn default() -> Self {
        const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);
        StoreConfig {
            cache_bytes: 32 * 1024 * 1024,
            retention: WEEK,
            dedup_window: WEEK,
            sweep_interval: Duration::from_secs(60),
            dedup_run_keys: DEFAULT_DEDUP_RUN_KEYS,
            checkpoint_bytes: DEFAULT_CHECKPOINT_MB * 1024 * 1024,
            checkpoint_read_bytes: DEFAULT_CHECKPOINT_READ_MB * 1024 * 1024,
            recent_read_seqs: DEFAULT_RECENT_READ_SEQS,
            commit_delay: DEFAULT_COMMIT_DELAY,
            slow_commit: DEFAULT_SLOW_COMMIT,
            compact_ratio: DEFAULT_COMPACT_RATIO,
            compact_min_bytes: DEFAULT_COMPACT_MIN_MB * 1024 * 1024,
            backend: StoreBackend::Sled,
        }
    }
}

/// An HTTP endpoint events are pushed to, at least once, in seq order unless `ordered = false`.
#[derive(Clone, PartialEq)]
pub struct DestinationConfig {
    pub name: String,
    pub url: url::Url,
    /// `None`: every provider.
    pub providers: Option<Vec<ProviderName>>,
    /// The decoded Standard Webhooks key deliveries are signed with.
    pub signing_key: Secret,
    pub timeout: Duration,
    pub retry_delays: Vec<Duration>,
    pub max_in_flight: usize,
    pub rate_limit_per_min: Option<u32>,
    pub ordered: bool,
    pub pause_after_failures: u32,
    pub alert_ratio: f64,
    pub alert_url: Option<url::Url>,
}

/// Its URL as hookgate shows URLs, its alert URL (a secret: a chat service's webhook URL) not
/// at all.
impl std::fmt::Debug for DestinationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DestinationConfig")
            .field("name", &self.name)
            .field("url", &crate::shown_url::Shown(&self.url))
            .field("providers", &self.providers)
            .field("signing_key", &self.signing_key)
            .field("timeout", &self.timeout)
            .field("retry_delays", &self.retry_delays)
            .field("max_in_flight", &self.max_in_flight)
            .field("rate_limit_per_min", &self.rate_limit_per_min)
            .field("ordered", &self.ordered)
            .field("pause_after_failures", &self.pause_after_failures)
            .field("alert_ratio", &self.alert_ratio)
            .field("alert_url", &self.alert_url.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// A reader that pulls events after its durable cursor.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerConfig {
    pub name: String,
    /// `None`: every provider.
    pub providers: Option<Vec<ProviderName>>,
}

/// Whether an output (destination or consumer) wants a provider's events.
pub fn wants(providers: &Option<Vec<ProviderName>>, provider: &str) -> bool {
    providers
        .as_ref()
        .is_none_or(|list| list.iter().any(|p| p.as_str() == provider))
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
    /// `[provider.sync]`: the sync API the poller fills gaps from.
    pub sync: Option<SyncConfig>,
}

impl Config {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name.as_str() == name)
    }

    pub fn destination(&self, name: &str) -> Option<&DestinationConfig> {
        self.destinations.iter().find(|d| d.name == name)
    }

    pub fn consumer(&self, name: &str) -> Option<&ConsumerConfig> {
        self.consumers.iter().find(|c| c.name == name)
    }

    /// A digest of what gateways sharing a store must agree on (see `peers.rs`): each
    /// provider's name, event id rule and whether it polls; each destination's name, URL,
    /// providers, order and retry schedule; each consumer; retention and the dedup window; on
    /// JetStream, the replicas and the lease time. Secrets stay out of it.
    pub fn shared_fingerprint(&self) -> String {
        use sha2::Digest as _;
        let mut shared = String::new();
        for p in &self.providers {
            let polls = p.sync.is_some();
            shared += &format!("provider {} {:?} polls={polls}\n", p.name, p.event_id);
        }
        for d in &self.destinations {
            shared += &format!(
                "destination {} {} {:?} ordered={} {:?}\n",
                d.name, d.url, d.providers, d.ordered, d.retry_delays
            );
        }
        for c in &self.consumers {
            shared += &format!("consumer {} {:?}\n", c.name, c.providers);
        }
        shared += &format!(
            "retention {:?} dedup_window {:?}\n",
            self.store.retention, self.store.dedup_window
        );
        // The last gateway to start sets the buckets' replicas and the leases' lifetime.
        if let StoreBackend::JetStream(jetstream) = &self.store.backend {
            shared += &format!(
                "jetstream replicas={} lease_time={:?}\n",
                jetstream.replicas, jetstream.lease_time
            );
        }
        let digest = sha2::Sha256::digest(shared.as_bytes());
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}
