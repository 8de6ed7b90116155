//! Cluster mode's acceptance tests: two `hookgate serve` processes on one 3-node JetStream
//! cluster (real nats-server processes on loopback, stream and buckets with 3 replicas), with
//! signed Standard Webhooks load on both gateways. A sender retries a 503 with the same event
//! id, as real senders do.
//!
//! 1. The stream leader is killed with SIGKILL mid-load: every acked event is stored exactly
//!    once, at the seq it was acked with, also on the killed replica once it is back; the
//!    gateways answer 200 or 503 + Retry-After meanwhile, never 500; the stall is reported.
//! 2. Every NATS server is killed with SIGKILL and restarted: nothing acked is lost, and the
//!    destination receives every event.
//! 3. The same event posted to both gateways at once, 10,000 times: stored once, one
//!    `accepted` and one `duplicate`, both with the same seq; after JetStream's short
//!    `Nats-Msg-Id` window, a copy still answers `duplicate`.
//!
//! 4. With `sync_interval: always`, every server's store on crashfs (`common/crashfs.rs`): each
//!    round, every server is killed and loses power at once, as a journaling file system keeps a
//!    disk (each file keeps a random part of what was written since its last fsync), then
//!    restarts: nothing acked is lost or moved.
//!
//! The tests take one cluster each and run one at a time (they measure stalls).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::crashfs::{CrashFs, Metadata, Mounted};
use common::load::{assert_kept, Load};
use common::nats::{NatsCluster, SyncInterval, CLUSTER_SIZE};
use common::stub::Stub;
use common::{provider, sign, toml_str, wait_until, Api, Gateway};
use rand::Rng;

const SECRET: &str = "whsec_Y2x1c3Rlci1tb2RlLXRlc3Qtc2VjcmV0";
const STREAM: &str = "HOOKGATE";
/// How long the tests give the cluster to elect leaders and catch up.
const SETTLE: Duration = Duration::from_secs(60);

/// One cluster test at a time: they share the machine's two cores and measure stalls.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A gateway on the cluster: provider `sw` (Standard Webhooks), stream with 3 replicas, plus
/// `extra` config.
fn node(cluster: &NatsCluster, extra: &str) -> Gateway {
    node_on(&cluster.urls(), extra)
}

/// A gateway on the cluster of these client URLs.
fn node_on(urls: &[String], extra: &str) -> Gateway {
    let servers: Vec<String> = urls.iter().map(|url| toml_str(url)).collect();
    Gateway::builder()
        .config(&provider("sw", "standard-webhooks", &[SECRET], ""))
        .config(&format!(
            "\n[store]\nbackend = \"jetstream\"\nservers = [{}]\nreplicas = 3\n",
            servers.join(", ")
        ))
        .config(extra)
        // A gateway listens once the stream and buckets answer; after a restart of the cluster
        // that waits for its elections (4-9 s each) and 10 s JetStream request timeouts.
        .start_timeout(SETTLE)
        .start()
}

fn body(id: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","type":"order.paid","pad":"{}"}}"#,
        "x".repeat(900)
    )
    .into_bytes()
}

/// A gateway's answer to one post.
struct Answer {
    status: u16,
    /// The ack's status (`accepted` or `duplicate`) and seq, for a 200.
    ack: Option<(String, u64)>,
    retry_after: bool,
}

/// Posts one signed event.
fn post(api: &Api, id: &str) -> Result<Answer, String> {
    let body = body(id);
    let headers = sign::standard_headers(SECRET, id, &body);
    let reply = api
        .try_post("sw", &headers, &body)
        .map_err(|err| err.to_string())?;
    Ok(Answer {
        status: reply.status,
        ack: (reply.status == 200).then(|| reply.ack()),
        retry_after: reply.header("retry-after").is_some(),
    })
}

/// What a load saw: every acked id with its status and seq and when, and every refusal.
#[derive(Default)]
struct Seen {
    acks: Vec<(String, String, u64, Instant)>,
    refused: BTreeMap<u16, usize>,
    unexpected: Vec<String>,
}

/// Senders posting unique ids to both gateways until stopped, each retrying a 503 with the
/// same id until it is acked.
struct Senders {
    seen: Mutex<Seen>,
    stop: AtomicBool,
}

impl Senders {
    fn new() -> Senders {
        Senders {
            seen: Mutex::default(),
            stop: AtomicBool::new(false),
        }
    }

    /// `per_gateway` threads on each gateway, while `main` runs.
    fn run_while(&self, gateways: &[&Gateway], per_gateway: usize, main: impl FnOnce()) {
        std::thread::scope(|s| {
            let _stop = common::SetOnDrop(vec![&self.stop]);
            for (g, gw) in gateways.iter().enumerate() {
                for t in 0..per_gateway {
                    let api = gw.api();
                    s.spawn(move || self.send(&api, &format!("g{g}-t{t}")));
                }
            }
            main();
        });
    }

    fn send(&self, api: &Api, thread: &str) {
        for n in 0.. {
            let id = format!("evt-{thread}-{n}");
            loop {
                match post(api, &id) {
                    Ok(Answer {
                        ack: Some((status, seq)),
                        ..
                    }) => {
                        let mut seen = self.seen.lock().unwrap();
                        seen.acks.push((id.clone(), status, seq, Instant::now()));
                        break;
                    }
                    Ok(Answer {
                        status: 503,
                        retry_after: true,
                        ..
                    }) => {
                        *self.seen.lock().unwrap().refused.entry(503).or_default() += 1;
                        // The sender retries the same event (after a short pause here).
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Ok(Answer {
                        status,
                        retry_after,
                        ..
                    }) => {
                        let mut seen = self.seen.lock().unwrap();
                        *seen.refused.entry(status).or_default() += 1;
                        seen.unexpected
                            .push(format!("{id}: {status} (Retry-After: {retry_after})"));
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    Err(err) => {
                        self.seen
                            .lock()
                            .unwrap()
                            .unexpected
                            .push(format!("{id}: {err}"));
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }

    fn acked_since(&self, since: Instant) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.acks.iter().filter(|ack| ack.3 > since).count()
    }

    /// The longest time without an ack from `since` on (to the last ack).
    fn longest_gap_since(&self, since: Instant) -> Duration {
        let seen = self.seen.lock().unwrap();
        let mut times: Vec<Instant> = seen.acks.iter().map(|ack| ack.3).collect();
        times.sort();
        let mut previous = since;
        let mut longest = Duration::ZERO;
        for time in times.into_iter().filter(|time| *time > since) {
            longest = longest.max(time - previous);
            previous = time;
        }
        longest
    }

    /// Asserts that the store holds every acked id once, at its acked seq, and nothing twice;
    /// returns how many events it holds.
    fn assert_all_stored(&self, gw: &Gateway) -> usize {
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.unexpected.is_empty(),
            "answers other than 200 and 503 + Retry-After: {:?}",
            &seen.unexpected[..seen.unexpected.len().min(10)]
        );
        // A gateway sees the events the other stored within its next look at the stream.
        let highest = seen.acks.iter().map(|ack| ack.2).max().unwrap_or(0);
        wait_until(Duration::from_secs(5), "the gateway sees every ack", || {
            highest == 0 || gw.api().event(highest).is_some()
        });
        let events = gw.all_events(None);
        let mut seqs_of: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for event in &events {
            let id = event["event_id"].as_str().unwrap().to_string();
            seqs_of
                .entry(id)
                .or_default()
                .push(event["seq"].as_u64().unwrap());
        }
        let twice: Vec<_> = seqs_of.iter().filter(|(_, seqs)| seqs.len() > 1).collect();
        assert!(twice.is_empty(), "ids stored twice: {twice:?}");
        let wrong: Vec<_> = seen
            .acks
            .iter()
            .filter(|(id, _, seq, _)| seqs_of.get(id) != Some(&vec![*seq]))
            .collect();
        assert!(
            wrong.is_empty(),
            "{} of {} acked events lost or at another seq: {:?}",
            wrong.len(),
            seen.acks.len(),
            &wrong[..wrong.len().min(10)]
        );
        events.len()
    }
}

#[test]
fn killing_the_stream_leader_mid_load_loses_no_acked_event() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    let a = node(&cluster, "");
    let b = node(&cluster, "");
    let senders = Senders::new();
    let mut killed = None;
    let mut killed_at = Instant::now();
    senders.run_while(&[&a, &b], 4, || {
        wait_until(SETTLE, "acks before the kill", || {
            senders.acked_since(killed_at) >= 500
        });
        let leader = cluster
            .stream_leader(STREAM)
            .expect("the stream has a leader");
        killed_at = Instant::now();
        cluster.kill(leader);
        killed = Some(leader);
        eprintln!("killed the stream leader n{leader}");
        // Load goes on until acks have flowed again for a while.
        wait_until(SETTLE, "acks after the kill", || {
            senders.acked_since(killed_at + Duration::from_secs(1)) >= 500
        });
        let resumed = Instant::now();
        wait_until(SETTLE, "acks after the stall", || {
            senders.acked_since(resumed) >= 500
        });
    });
    let stall = senders.longest_gap_since(killed_at);
    let refused = senders.seen.lock().unwrap().refused.clone();
    let new_leader = cluster.stream_leader(STREAM);
    eprintln!(
        "stall after the leader's kill: {stall:?}; refusals {refused:?}; new leader {new_leader:?}"
    );
    assert!(
        new_leader.is_some() && new_leader != killed,
        "{new_leader:?}"
    );
    // nats-server's election timeout is random between 4 and 9 s; then the gateways' clients
    // find the new leader. Measured here: 4-8.5 s.
    assert!(stall <= Duration::from_secs(15), "stall {stall:?}");

    let killed = killed.unwrap();
    cluster.restart(killed);
    let state = wait_recovered(&cluster, &[&a, &b]);
    let stored = senders.assert_all_stored(&a);
    assert_eq!(senders.assert_all_stored(&b), stored);
    // The restarted replica holds what the others hold: every message, no more.
    assert_eq!(state["messages"].as_u64(), Some(stored as u64), "{state}");
    let replica = cluster.stream_on(killed, STREAM).unwrap();
    assert_eq!(replica["messages"], state["messages"], "{replica}");
    assert_eq!(replica["bytes"], state["bytes"], "{replica}");
    assert_eq!(replica["last_seq"], state["last_seq"], "{replica}");
    let acked = senders.seen.lock().unwrap().acks.len();
    eprintln!("{acked} acked, {stored} stored");
}

/// Waits until every replica of the stream and of both buckets holds the same state, and both
/// gateways read the store again (until the buckets' replicas answer direct gets, a gateway's
/// admin API answers 503); returns the stream's state.
fn wait_recovered(cluster: &NatsCluster, gateways: &[&Gateway]) -> serde_json::Value {
    let state = cluster.wait_caught_up(STREAM, SETTLE);
    for bucket in ["state", "leases"] {
        cluster.wait_caught_up(&format!("KV_{STREAM}_{bucket}"), SETTLE);
    }
    for gw in gateways {
        wait_until(SETTLE, "the gateway reads the store", || {
            gw.admin_get("/v1/events?limit=1000").status == 200
        });
    }
    state
}

#[test]
fn killing_every_nats_server_loses_no_acked_event() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    let delivered: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let seen = delivered.clone();
    let downstream = Stub::start(move |request| {
        let seq = request.header("hookgate-seq").unwrap().parse().unwrap();
        seen.lock().unwrap().insert(seq);
        (204, "text/plain", Vec::new())
    });
    let destination = format!(
        "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nsigning_secret = \"{SECRET}\"\n\
         retry_delays = [\"200ms\", \"500ms\", \"1s\", \"2s\", \"5s\"]\n",
        downstream.url
    );
    let a = node(&cluster, &destination);
    let b = node(&cluster, &destination);
    let senders = Senders::new();
    let start = Instant::now();
    senders.run_while(&[&a, &b], 3, || {
        wait_until(SETTLE, "acks before the kill", || {
            senders.acked_since(start) >= 400
        });
        cluster.kill_all();
        let killed_at = Instant::now();
        eprintln!("killed every nats-server");
        std::thread::sleep(Duration::from_secs(1));
        cluster.restart_all();
        wait_until(SETTLE, "acks after the restart", || {
            senders.acked_since(killed_at + Duration::from_secs(1)) >= 400
        });
        eprintln!(
            "longest time without an ack: {:?}",
            senders.longest_gap_since(killed_at)
        );
    });
    wait_recovered(&cluster, &[&a, &b]);
    let stored = senders.assert_all_stored(&a);
    assert_eq!(senders.assert_all_stored(&b), stored);
    // Deliveries went on after the restart: every stored event reaches the destination.
    let seqs: BTreeSet<u64> = a
        .all_events(None)
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    wait_until(SETTLE, "every stored event delivered", || {
        seqs.is_subset(&delivered.lock().unwrap())
    });
    let acked = senders.seen.lock().unwrap().acks.len();
    eprintln!("{acked} acked, {stored} stored and delivered");
}

#[test]
fn the_same_event_posted_to_both_gateways_at_once_is_stored_once() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let cluster = NatsCluster::start(dir.path());
    let a = node(&cluster, "");
    let b = node(&cluster, "");
    const EVENTS: usize = 10_000;
    const PAIRS: usize = 8;
    // Each pair of threads posts the same events, one to each gateway, released together.
    type Answers = BTreeMap<String, Vec<Result<(String, u64), String>>>;
    let answers: Mutex<Answers> = Mutex::default();
    std::thread::scope(|s| {
        for pair in 0..PAIRS {
            let barrier = Arc::new(Barrier::new(2));
            for gw in [&a, &b] {
                let (api, barrier, answers) = (gw.api(), barrier.clone(), &answers);
                s.spawn(move || {
                    for n in (pair..EVENTS).step_by(PAIRS) {
                        let id = format!("evt-{n}");
                        barrier.wait();
                        // A failure is kept, not panicked on: the other thread waits for this one.
                        let answer = match post(&api, &id) {
                            // The seq a duplicate answer names is readable through the gateway
                            // that answered, at once (it was not, for up to 100 ms, when the
                            // other gateway had stored it).
                            Ok(Answer {
                                ack: Some((status, seq)),
                                ..
                            }) if status == "duplicate" => {
                                match api.admin_get(&format!("/v1/events/{seq}")).status {
                                    200 => Ok((status, seq)),
                                    other => Err(format!("duplicate of {seq}: GET {other}")),
                                }
                            }
                            Ok(Answer { ack: Some(ack), .. }) => Ok(ack),
                            Ok(Answer { status, .. }) => Err(format!("status {status}")),
                            Err(err) => Err(err),
                        };
                        answers.lock().unwrap().entry(id).or_default().push(answer);
                    }
                });
            }
        }
    });
    let answers = answers.into_inner().unwrap();
    assert_eq!(answers.len(), EVENTS);
    for (id, pair) in &answers {
        let mut pair: Vec<(String, u64)> = pair
            .iter()
            .map(|answer| answer.clone().unwrap_or_else(|err| panic!("{id}: {err}")))
            .collect();
        pair.sort();
        assert_eq!(pair.len(), 2, "{id}: {pair:?}");
        assert_eq!(pair[0].0, "accepted", "{id}: {pair:?}");
        assert_eq!(pair[1].0, "duplicate", "{id}: {pair:?}");
        assert_eq!(pair[0].1, pair[1].1, "{id}: {pair:?}");
    }
    let events = a.all_events(None);
    assert_eq!(events.len(), EVENTS);
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|event| event["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), EVENTS);

    // Past JetStream's own duplicate window (shortened here to 1 s on the running stream),
    // the stream's one-message-per-subject rule still answers a copy `duplicate`.
    set_duplicate_window(&cluster, Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(1500));
    let first_seq = answers["evt-7"][0].clone().unwrap().1;
    for gw in [&a, &b] {
        let answer = post(&gw.api(), "evt-7").unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(answer.ack, Some(("duplicate".to_string(), first_seq)));
    }
    assert_eq!(a.all_events(None).len(), EVENTS);
}

/// Changes the running stream's `Nats-Msg-Id` duplicate window.
fn set_duplicate_window(cluster: &NatsCluster, window: Duration) {
    let url = cluster.urls()[0].clone();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut stream = js.get_stream(STREAM).await.unwrap();
        let mut config = stream.info().await.unwrap().config.clone();
        config.duplicate_window = window;
        let updated = js.update_stream(config).await.unwrap();
        assert_eq!(updated.config.duplicate_window, window);
    });
}

#[test]
fn a_gateway_started_while_the_cluster_has_no_quorum_waits_for_it() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    let first = node(&cluster, "");
    drop(first);
    // One node of three: no leader for anything until another comes back.
    cluster.kill_all();
    cluster.restart(0);
    let started = Instant::now();
    let urls = cluster.urls();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs(3));
            cluster.restart(1);
            cluster.restart(2);
        });
        let gw = node_on(&urls, "");
        let body = body("after-quorum");
        let headers = sign::standard_headers(SECRET, "after-quorum", &body);
        assert_eq!(gw.post("sw", &headers, &body).status, 200);
        assert!(
            gw.logs()
                .contains("JetStream is not ready for the store yet"),
            "{}",
            gw.logs()
        );
        eprintln!(
            "the gateway answered 200 {:?} after its start",
            started.elapsed()
        );
    });
}

/// A stop asked for while a gateway waits at start for its cluster to have a quorum (up to two
/// minutes) ends it at once: the SIGTERM was left for after the start, and systemd killed the
/// gateway 30 s later.
#[test]
fn a_sigterm_while_waiting_for_a_quorum_at_start_stops_the_gateway() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = NatsCluster::start(dir.path());
    cluster.kill_all();
    cluster.restart(0);
    let servers: Vec<String> = cluster.urls().iter().map(|url| toml_str(url)).collect();
    let config = common::config_toml(
        &dir.path().join("data"),
        "",
        &format!(
            "{}\n[store]\nbackend = \"jetstream\"\nservers = [{}]\nreplicas = 3\n",
            provider("sw", "standard-webhooks", &[SECRET], ""),
            servers.join(", ")
        ),
    );
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = std::process::Command::new(common::hookgate_bin())
        .args(["serve", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let logged = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.try_wait().unwrap().is_none(), "waiting for a quorum");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if stopped.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            panic!("still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    // The open waiting for NATS ended with the stop (blocked on in the blocking pool, it
    // outlived the runtime and panicked as the runtime shut down).
    let logged = logged.join().unwrap();
    assert!(logged.contains("Stopped while starting."), "{logged}");
    assert!(!logged.contains("panicked"), "{logged}");
}

/// Rounds of load through one gateway on a cluster whose servers fsync before every ack, each
/// ended by killing every server and a power loss of all three disks at once.
#[test]
fn with_sync_always_a_power_loss_of_every_server_loses_no_acked_event() {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let disks: Vec<CrashFs> = (0..CLUSTER_SIZE).map(|_| CrashFs::new()).collect();
    let store = |node: usize| dir.path().join(format!("n{node}"));
    let mount_all = || -> Vec<Mounted> {
        (0..CLUSTER_SIZE)
            .map(|node| {
                std::fs::create_dir_all(store(node)).unwrap();
                disks[node].mount(&store(node))
            })
            .collect()
    };
    let mut mounts = mount_all();
    let mut cluster = NatsCluster::start_with(dir.path(), SyncInterval::Always);
    assert_eq!(cluster.dir(), dir.path(), "the cluster started off crashfs");
    let by_header = format!(
        "{}\n[limits]\nper_address_rps = 0\n",
        provider("p", "none", &[], "event_id = \"header:X-Id\"")
    );
    let gw = node(&cluster, &by_header);
    let mut rng = rand::thread_rng();
    let mut acked: Vec<(String, u64)> = Vec::new();
    for round in 0..4 {
        let load = Load {
            prefix: format!("r{round}-"),
            ..Load::default()
        };
        let load_for = Duration::from_millis(rng.gen_range(500..2000));
        std::thread::scope(|s| {
            for thread in 0..4 {
                let (api, load) = (gw.api(), &load);
                s.spawn(move || load.run(&api, thread, SETTLE));
            }
            std::thread::sleep(load_for);
            cluster.kill_all();
            load.stop.store(true, Ordering::Relaxed);
        });
        let unexpected = load.unexpected.lock().unwrap().clone();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
        let new_acks = load.acked.lock().unwrap().clone();
        for mounted in mounts.drain(..) {
            mounted.unmount();
        }
        // As ext4 (`data=ordered`) or XFS keep a disk through a power loss. Under stricter
        // models nats-server 2.15.1 did not come back: with directory changes kept but no data
        // not fsynced, a node would not start (`raft: snapshot corrupt`); with directories as of
        // their own fsync, a bucket's replicas did not agree again within a minute.
        let losses: Vec<_> = disks
            .iter()
            .map(|disk| disk.lose_power_with(&mut rng, &[Metadata::Journaled]))
            .collect();
        eprintln!(
            "round {round}: {} acked; power lost: {losses:?}",
            new_acks.len()
        );
        mounts = mount_all();
        cluster.restart_all();
        wait_recovered(&cluster, &[&gw]);
        acked.extend(new_acks);
        assert_kept(
            &gw.ids_by_seq(),
            acked.iter().map(|(id, seq)| (id.as_str(), *seq)),
            &BTreeMap::new(),
            &format!("round {round}, after a power loss of every server"),
        );
    }
    assert!(acked.len() >= 100, "only {} acks", acked.len());
    drop(cluster);
}
