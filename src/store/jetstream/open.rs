//! Connecting to the servers, creating (or updating) the stream and the buckets, and following
//! the stream's last sequence for the events other gateways store.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use async_nats::jetstream::kv;
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};
use async_nats::ServerAddr;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{advance, layout, storage, JetStreamStore};
use crate::config::{JetStreamConfig, NatsAuth};
use crate::event::Seq;
use crate::metrics::Metrics;
use crate::store::slow_commit::SlowCommits;
use crate::store::StoreError;

/// JetStream's own duplicate window for `Nats-Msg-Id` (its default), or `dedup_window` when
/// shorter: within it a copy is answered with the first one's seq without a look at the
/// stream, so it must not outlive an event the sweep may delete.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long a start waits for a JetStream that is not ready (a cluster electing leaders).
const OPEN_PATIENCE: Duration = Duration::from_secs(120);
/// How often a gateway asks the stream for its last sequence, to see other gateways' events.
pub const FOLLOW_INTERVAL: Duration = Duration::from_millis(100);

/// How to reach the servers: the name, the connect timeout, the credentials and TLS.
async fn connect_options(config: &JetStreamConfig) -> std::io::Result<async_nats::ConnectOptions> {
    let text =
        |secret: &crate::config::Secret| String::from_utf8_lossy(secret.expose()).into_owned();
    let options = async_nats::ConnectOptions::new()
        .name("hookgate")
        .connection_timeout(Duration::from_secs(5));
    let mut options = match &config.auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(text(token)),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), text(password))
        }
        NatsAuth::NKey(seed) => options.nkey(text(seed)),
        NatsAuth::Credentials(path) => options.credentials_file(path).await?,
    };
    if let Some(tls) = &config.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &tls.client {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    Ok(options)
}

impl JetStreamStore {
    /// Connects, and creates the stream and the bucket if they are missing (an existing
    /// stream's settings are updated to these).
    pub async fn open(
        config: &JetStreamConfig,
        dedup_window: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<JetStreamStore, StoreError> {
        let servers = config
            .servers
            .iter()
            .map(|server| server.parse::<ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(storage)?;
        let shown: Vec<String> = config.servers.iter().map(|s| without_userinfo(s)).collect();
        let unreachable = |err: &dyn std::fmt::Display| {
            StoreError::Storage(Arc::new(std::io::Error::other(format!(
                "cannot connect to the NATS servers {}: {err}",
                shown.join(", ")
            ))))
        };
        // Each (re)connection may be to a server with another `max_payload`: the next commit
        // reads it again (`JetStreamStore::max_payload`).
        let connected = Arc::new(AtomicBool::new(true));
        let told = connected.clone();
        let options = connect_options(config)
            .await
            .map_err(|err| unreachable(&err))?
            .event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    told.store(true, Ordering::Release);
                }
                async {}
            });
        let client = options
            .connect(servers)
            .await
            .map_err(|err| unreachable(&err))?;
        let info = client.server_info();
        let version = info.version;
        if !supported(&version) {
            return Err(StoreError::Storage(Arc::new(std::io::Error::other(
                format!(
                "nats-server {version} is too old for the JetStream store: it needs 2.10 or later"
            ),
            ))));
        }
        let js = jetstream::new(client.clone());
        // A cluster that is electing leaders or catching up after a restart times its requests
        // out: wait for it rather than fail the start.
        let started = Instant::now();
        let (stream, kv, leases) = loop {
            match set_up(&js, config, dedup_window).await {
                Ok(handles) => break handles,
                Err(err) if is_not_ready(&*err) && started.elapsed() < OPEN_PATIENCE => {
                    tracing::warn!(error = %crate::error_chain::error_chain(&*err), "JetStream is not ready for the store yet; asking again in 1 s.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(err) => return Err(StoreError::Storage(Arc::from(err))),
            }
        };
        let last = stream.cached_info().state.last_sequence;
        let last_seq = Arc::new(watch::Sender::new(Seq(last)));
        let went_back = CancellationToken::new();
        let stream_answers = Arc::new(AtomicBool::new(true));
        let slow_counted = metrics.commits_slow.clone();
        // Every publish is bound by its caller's deadline (`publish_within`), which may be up
        // to an hour (`ack_deadline_ms`).
        let mut publisher = js.clone();
        publisher.set_timeout(Duration::from_secs(3600));
        let store = JetStreamStore {
            client,
            js,
            publisher,
            max_payload: AtomicUsize::new(0),
            connected,
            stream,
            kv,
            leases,
            lease_time: lapse_time(config.lease_time),
            last_seq,
            sync_revisions: Mutex::default(),
            open: AtomicBool::new(true),
            metrics,
            sweep_from: AtomicU64::new(0),
            dedup_from: AtomicU64::new(0),
            slow: Mutex::new(SlowCommits::new(
                crate::config::DEFAULT_SLOW_COMMIT,
                slow_counted,
            )),
            went_back: went_back.clone(),
            stream_answers: stream_answers.clone(),
            unreadable: Mutex::default(),
        };
        store.move_outputs_back_to_the_end().await?;
        let follower = Arc::downgrade(&store.last_seq);
        let stream = store.stream.clone();
        tokio::spawn(follow(stream, follower, went_back, stream_answers));
        Ok(store)
    }

    /// Logs the publishes slower than `bound` (`[store] slow_commit`; zero: never).
    pub fn with_slow_commit(self, bound: Duration) -> Self {
        let counted = self.metrics.commits_slow.clone();
        JetStreamStore {
            slow: Mutex::new(SlowCommits::new(bound, counted)),
            ..self
        }
    }
}

/// A server's URL as shown in errors: without the `user:password@` a URL may carry.
fn without_userinfo(server: &str) -> String {
    match server.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => server.to_string(),
        },
        None => server
            .rsplit_once('@')
            .map_or(server.to_string(), |(_, host)| format!("***@{host}")),
    }
}

/// How long a lease entry lives without renewal: two thirds of `lease_time`, so that with the
/// waits of [`crate::lease`] (a twelfth of it) and the server's expiry (measured at up to a few
/// hundred milliseconds), another gateway takes a dead one's work over within `lease_time`.
fn lapse_time(lease_time: Duration) -> Duration {
    lease_time * 2 / 3
}

type SetUpError = Box<dyn std::error::Error + Send + Sync>;

/// The settings of an existing stream (made by an operator) under which a 200 would not mean
/// what it says, or retention could not work: kept in silence, a memory stream lost every event
/// at the servers' restart, and `no_ack` answered every webhook 503.
fn unsafe_settings(settings: &stream::Config) -> Vec<&'static str> {
    [
        (
            settings.storage != StorageType::File,
            "storage is memory (events are lost when the servers restart)",
        ),
        (settings.no_ack, "no_ack (publishes are never acknowledged)"),
        (settings.sealed, "sealed (nothing can be stored)"),
        (
            settings.deny_delete,
            "deny_delete (retention cannot remove events)",
        ),
        (
            settings.mirror.is_some(),
            "a mirror (it cannot be published to)",
        ),
        (
            settings.sources.as_ref().is_some_and(|s| !s.is_empty()),
            "sources (other streams' messages would pass for events)",
        ),
        (
            settings.subject_transform.is_some(),
            "a subject transform (the dedup subjects would change)",
        ),
    ]
    .into_iter()
    .filter_map(|(set, said)| set.then_some(said))
    .collect()
}

/// Creates the stream and the two buckets, or updates them to the settings hookgate relies on,
/// and returns them. An existing stream keeps the settings hookgate does not set (limits and
/// placement an operator gave it), and every one keeps its replicas when it has more than
/// `replicas`: one gateway's config must not lower what the others' acks count on. One with
/// [`unsafe_settings`] is refused.
async fn set_up(
    js: &jetstream::Context,
    config: &JetStreamConfig,
    dedup_window: Duration,
) -> Result<(stream::Stream, kv::Store, kv::Store), SetUpError> {
    let existing = existing_config(js, &config.stream).await?;
    if let Some(unsafe_settings) = existing
        .as_ref()
        .map(unsafe_settings)
        .filter(|s| !s.is_empty())
    {
        return Err(format!(
            "the stream {} exists with settings hookgate cannot keep its promises on: {}. Make \
             it again without them (back it up and restore it into a new one), or name another \
             stream in [store] stream",
            config.stream,
            unsafe_settings.join("; ")
        )
        .into());
    }
    let mut settings = existing.unwrap_or_else(|| stream::Config {
        name: config.stream.clone(),
        storage: StorageType::File,
        ..Default::default()
    });
    settings.subjects = vec![layout::EVENTS.to_string()];
    settings.max_messages_per_subject = 1;
    settings.discard = DiscardPolicy::New;
    settings.discard_new_per_subject = true;
    settings.duplicate_window = DUPLICATE_WINDOW.min(dedup_window);
    settings.allow_direct = true;
    settings.num_replicas = replicas(&settings.name, settings.num_replicas, config.replicas);
    // Nothing but hookgate's retention removes events: a `max_age` (set "to match retention")
    // or a work-queue or interest policy (a reader's ack) would remove undelivered and dead
    // ones too.
    if settings.max_age != Duration::ZERO {
        tracing::warn!(stream = %settings.name, max_age = ?settings.max_age, "The stream had a max_age, which removes events whether they were delivered or not: unset. hookgate removes them once every output is done with them ([store] retention).");
        settings.max_age = Duration::ZERO;
    }
    match settings.retention {
        stream::RetentionPolicy::Limits => {}
        stream::RetentionPolicy::Interest => {
            tracing::warn!(stream = %settings.name, "The stream's interest policy removed the events its readers acknowledged, delivered to hookgate's outputs or not: set to limits.");
            settings.retention = stream::RetentionPolicy::Limits;
        }
        // The servers refuse to change it (error 10052): said, and left.
        stream::RetentionPolicy::WorkQueue => {
            tracing::error!(stream = %settings.name, "The stream has the work-queue policy: a NATS consumer that reads it directly and acknowledges an event removes it, delivered to hookgate's outputs or not, and the servers cannot change the policy. Make the stream again with the limits policy (back it up and restore it into a new one).");
        }
    }
    js.create_or_update_stream(settings).await?;
    let stream = js.get_stream(&config.stream).await?;
    let bucket = |name: String, max_age: Duration| async move {
        let existing = existing_config(js, &format!("KV_{name}")).await?;
        let has = existing
            .as_ref()
            .map_or(0, |existing| existing.num_replicas);
        let num_replicas = replicas(&name, has, config.replicas);
        // A lease entry lives the bucket's max_age, which the gateway started last set: one
        // with a longer lease_time, renewing at its own pace, kept delivering seconds after
        // another took its lapsed lease. Never lowered here: each gateway renews at least as
        // often as entries lapse; a takeover after a crash waits the longest.
        let max_age = match existing.map(|existing| existing.max_age) {
            Some(longer) if max_age != Duration::ZERO && longer > max_age => {
                tracing::warn!(bucket = %name, entries_live = ?longer, entries_live_here = ?max_age, "The lease bucket's entries live longer than this gateway's lease_time asks (two thirds of it; another gateway's lease_time is longer): kept, and a task of a gateway that died is taken over after that long. Once every gateway has the same lease_time, set the bucket's max_age to two thirds of it (nats kv edit).");
                longer
            }
            _ => max_age,
        };
        let bucket = js
            .create_or_update_key_value(kv::Config {
                bucket: name,
                history: 1,
                max_age,
                storage: StorageType::File,
                num_replicas,
                ..Default::default()
            })
            .await?;
        Ok::<_, SetUpError>(bucket)
    };
    let kv = bucket(layout::bucket(&config.stream), Duration::ZERO).await?;
    let leases = bucket(
        layout::lease_bucket(&config.stream),
        lapse_time(config.lease_time),
    )
    .await?;
    Ok((stream, kv, leases))
}

/// An existing stream's settings; `None` when there is no such stream.
async fn existing_config(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<stream::Config>, SetUpError> {
    use async_nats::jetstream::context::GetStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    match js.get_stream(name).await {
        Ok(stream) => Ok(Some(stream.cached_info().config.clone())),
        Err(err)
            if matches!(err.kind(), GetStreamErrorKind::JetStream(ref source)
                if source.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            Ok(None)
        }
        Err(err) => Err(err.into()),
    }
}

/// The replicas `name` gets: `configured`, or what it `has` when that is more (said once).
fn replicas(name: &str, has: usize, configured: usize) -> usize {
    if has > configured {
        tracing::warn!(
            stream = name,
            replicas = has,
            configured,
            "The stream has more replicas than [store] replicas asks for: it keeps them (lower them on the servers, knowingly)."
        );
    }
    has.max(configured)
}

/// Whether a set-up error says JetStream could not answer yet (a request timed out, or it is
/// unavailable), as while a cluster elects leaders, rather than that the settings are refused.
fn is_not_ready(err: &(dyn std::error::Error + 'static)) -> bool {
    use async_nats::jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
        GetStreamError, GetStreamErrorKind,
    };
    let mut next = Some(err);
    while let Some(err) = next {
        let not_ready = if let Some(err) = err.downcast_ref::<CreateStreamError>() {
            matches!(
                err.kind(),
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable
            )
        } else if let Some(err) = err.downcast_ref::<GetStreamError>() {
            matches!(err.kind(), GetStreamErrorKind::Request)
        } else if let Some(err) = err.downcast_ref::<CreateKeyValueError>() {
            matches!(err.kind(), CreateKeyValueErrorKind::TimedOut)
        } else {
            false
        };
        if not_ready {
            return true;
        }
        next = err.source();
    }
    false
}

/// Follows the stream's last sequence, so that events other gateways stored reach this one's
/// readers (dispatchers wait on `last_seq`). The stream's state counts only stored messages: in
/// a cluster, those its replicas' quorum has, as a publish ack does. A last sequence below
/// `last_seq` as it was when asked, twice in a row, is a stream that went back (`went_back.rs`).
/// Ends with the store.
async fn follow(
    stream: stream::Stream,
    last_seq: Weak<watch::Sender<Seq>>,
    went_back: CancellationToken,
    answers: Arc<AtomicBool>,
) {
    let mut failing = false;
    let mut behind = false;
    loop {
        tokio::time::sleep(FOLLOW_INTERVAL).await;
        let Some(sender) = last_seq.upgrade() else {
            return;
        };
        // Read before the request: acks that come in while it is answered are past its answer.
        let seen = sender.borrow().0;
        let info = stream.get_info().await;
        let from_a_leader = info.as_ref().is_ok_and(super::went_back::from_a_leader);
        answers.store(from_a_leader, std::sync::atomic::Ordering::SeqCst);
        match info {
            // A leaderless stream's members answer with their own state (nats-server), which
            // may lag what was acknowledged: neither followed nor compared.
            Ok(_) if !from_a_leader => behind = false,
            Ok(info) => {
                failing = false;
                let end = info.state.last_sequence;
                if end < seen && behind {
                    super::went_back::declare(&went_back, &info.config.name, seen, end);
                }
                behind = end < seen;
                advance(&sender, end);
            }
            Err(err) => {
                behind = false;
                if !failing {
                    failing = true;
                    tracing::warn!(error = %err, "Cannot read the stream's last sequence; other gateways' events wait.");
                }
            }
        }
    }
}

/// nats-server 2.10 or later: tested with 2.10.26 and 2.15.1; against Debian's 2.9.10 the
/// client cannot read the answer to the stream's creation.
fn supported(version: &str) -> bool {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_in_server_urls_are_not_shown() {
        assert_eq!(
            super::without_userinfo("nats://user:pass@10.0.0.1:4222"),
            "nats://***@10.0.0.1:4222"
        );
        assert_eq!(super::without_userinfo("tok@host:4222"), "***@host:4222");
        assert_eq!(
            super::without_userinfo("nats://10.0.0.1:4222"),
            "nats://10.0.0.1:4222"
        );
    }

    #[test]
    fn a_stream_keeps_more_replicas_than_configured() {
        assert_eq!(super::replicas("HOOKGATE", 3, 1), 3);
        assert_eq!(super::replicas("HOOKGATE", 1, 3), 3);
        assert_eq!(super::replicas("HOOKGATE", 0, 1), 1);
    }

    #[test]
    fn server_versions() {
        assert!(super::supported("2.10.26"));
        assert!(super::supported("2.15.1"));
        assert!(super::supported("3.0.0"));
        assert!(!super::supported("2.9.10"));
        assert!(!super::supported("garbage"));
    }
}
