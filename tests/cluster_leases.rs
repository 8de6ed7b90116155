//! Cluster mode's leases with real gateways: two `hookgate serve` processes share one JetStream
//! store (a real nats-server), and the one holding a lease is killed with SIGKILL.
//!
//! - An ordered destination: the other gateway takes the deliveries over within the lease time;
//!   every event (stored through either gateway) arrives, first arrivals in seq order, and an
//!   event whose retries were under way at the kill is dead exactly once.
//! - A poller: the other gateway takes polling over within the lease time; the sync cursor never
//!   moves back; every action is stored exactly once.
//!
//! And, on two stores opened on one server as two gateways open theirs: each sees the events
//! the other stored, and a poller's stale write of the sync cursor fails. Two gateways with
//! other configs count each other until a reload makes them agree.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::nats::NatsServer;
use common::stub::Stub;
use common::{provider, toml_str, wait_until, Gateway};
use hookgate::event::{EventId, ProviderName, Seq};
use hookgate::store::{Committed, NewEvent};
use serde_json::{json, Value};

const LEASE: Duration = Duration::from_secs(2);
const WHSEC: &str = "whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x";

fn jetstream(nats: &NatsServer) -> String {
    format!(
        "\n[store]\nbackend = \"jetstream\"\nservers = [{}]\nlease_time = \"{}s\"\n",
        toml_str(&nats.url()),
        LEASE.as_secs()
    )
}

fn node(nats: &NatsServer, config: &str) -> Gateway {
    Gateway::builder()
        .config(config)
        .config(&jetstream(nats))
        .start()
}

/// The node whose admin API says `here` is true for the named thing, if exactly one does.
fn holder(nodes: &[&Gateway], here: impl Fn(&Gateway) -> bool) -> Option<usize> {
    let holding: Vec<usize> = (0..nodes.len()).filter(|&i| here(nodes[i])).collect();
    (holding.len() == 1).then(|| holding[0])
}

fn delivering_here(gw: &Gateway) -> bool {
    gw.admin_json("/v1/destinations")["destinations"][0]["delivering_here"] == json!(true)
}

fn polling_here(gw: &Gateway) -> bool {
    gw.admin_json("/v1/providers/p/sync")["polling_here"] == json!(true)
}

/// How long after `killed_at` the other gateway took the work over (`taken` turned true);
/// panics unless that is within the lease time (and the admin API's answer).
fn taken_over(killed_at: Instant, taken: impl Fn() -> bool) -> Duration {
    while !taken() {
        assert!(
            killed_at.elapsed() < LEASE * 3,
            "no gateway took the work over within {:?}",
            LEASE * 3
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = killed_at.elapsed();
    assert!(
        took <= LEASE,
        "taken over {took:?} after the kill, lease {LEASE:?}"
    );
    took
}

/// What the downstream saw: each request's seq, in arrival order, with its arrival time.
type Arrivals = Arc<Mutex<Vec<(u64, Instant)>>>;

#[test]
fn an_ordered_destination_moves_to_the_other_gateway_when_its_deliverer_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    // The downstream takes 10 ms per event and refuses the poison event every time.
    let downstream = Stub::start(move |request| {
        let seq = request.header("hookgate-seq").unwrap().parse().unwrap();
        seen.lock().unwrap().push((seq, Instant::now()));
        std::thread::sleep(Duration::from_millis(10));
        if String::from_utf8_lossy(&request.body).contains("poison") {
            (500, "text/plain", b"cannot take it".to_vec())
        } else {
            (204, "text/plain", Vec::new())
        }
    });
    let config = provider("p", "none", &[], "event_id = \"json:/id\"")
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nsigning_secret = \"{WHSEC}\"\n\
             timeout = \"1s\"\nretry_delays = [\"300ms\", \"300ms\", \"300ms\"]\n",
            downstream.url
        );
    let mut a = node(&nats, &config);
    let mut b = node(&nats, &config);
    wait_until(LEASE * 3, "one gateway delivers", || {
        holder(&[&a, &b], delivering_here).is_some()
    });

    // 120 events, through both gateways; number 60 is refused until it is dead.
    const EVENTS: u64 = 120;
    const POISON: u64 = 60;
    let mut poison_seq = 0;
    for i in 1..=EVENTS {
        let gw = if i % 2 == 0 { &a } else { &b };
        let kind = if i == POISON { "poison" } else { "order" };
        let body = format!(r#"{{"id":"evt-{i}","kind":"{kind}"}}"#);
        let reply = gw.post("p", &[], body.as_bytes());
        assert_eq!(reply.status, 200, "event {i}: {}", reply.text());
        if i == POISON {
            poison_seq = reply.ack().1;
        }
    }
    // Kill the deliverer while the poison event is being retried.
    wait_until(
        Duration::from_secs(30),
        "the poison event's first attempt",
        || {
            arrivals
                .lock()
                .unwrap()
                .iter()
                .any(|(seq, _)| *seq == poison_seq)
        },
    );
    let deliverer = holder(&[&a, &b], delivering_here).expect("one deliverer");
    let killed_at = Instant::now();
    let before_kill = arrivals.lock().unwrap().len();
    let survivor = if deliverer == 0 {
        a.kill();
        &b
    } else {
        b.kill();
        &a
    };

    let takeover = taken_over(killed_at, || delivering_here(survivor));
    eprintln!("the other gateway delivers {takeover:?} after the kill (lease {LEASE:?})");
    wait_until(
        Duration::from_secs(30),
        "every event delivered or dead",
        || {
            let delivered: BTreeSet<u64> =
                arrivals.lock().unwrap().iter().map(|(s, _)| *s).collect();
            delivered.len() as u64 == EVENTS
                && survivor.admin_json("/v1/dead")["dead"]
                    .as_array()
                    .unwrap()
                    .len()
                    == 1
        },
    );
    let arrivals = arrivals.lock().unwrap().clone();

    // First arrivals in seq order; before the kill, one deliverer: no arrival out of order.
    let mut first = Vec::new();
    let mut seen = BTreeSet::new();
    for (seq, _) in &arrivals {
        if seen.insert(*seq) {
            first.push(*seq);
        }
    }
    assert!(first.windows(2).all(|w| w[0] < w[1]), "{first:?}");
    assert!(
        arrivals[..before_kill].windows(2).all(|w| w[0].0 <= w[1].0),
        "{arrivals:?}"
    );
    // The events after the poison one waited for it: it was dead before they were sent.
    let dead = survivor.admin_json("/v1/dead");
    let dead = dead["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["seq"], json!(poison_seq));
    wait_until(
        Duration::from_secs(5),
        "every event done for the destination",
        || survivor.admin_json("/v1/destinations")["destinations"][0]["cursor"] == json!(EVENTS),
    );
}

/// A reload that restarts the forwarders, on the gateway delivering to an ordered destination:
/// the destination never gets two requests at once, and one gateway delivers afterwards. (The
/// reload started the new forwarder before stopping the old; both held the lease, as one
/// process holds it, and the old one's stop then gave it up to the other gateway.)
#[test]
fn a_reload_of_the_delivering_gateway_never_delivers_twice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let in_flight = Arc::new(AtomicU64::new(0));
    let most = Arc::new(AtomicU64::new(0));
    let (now, max) = (in_flight.clone(), most.clone());
    let downstream = Stub::start(move |_| {
        max.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
        now.fetch_sub(1, Ordering::SeqCst);
        (204, "text/plain", Vec::new())
    });
    let (a, b) = two_delivering(&nats, &downstream, "timeout = \"1s\"\n");
    let nodes = [&a, &b];
    const EVENTS: usize = 400; // ~8 s of deliveries
    for i in 0..EVENTS {
        let body = format!(r#"{{"id":"evt-{i}"}}"#);
        assert_eq!(nodes[i % 2].post("p", &[], body.as_bytes()).status, 200);
    }
    // Five reloads of whichever gateway delivers, each with another timeout for the destination:
    // the forwarders restart.
    let (mut reloads, started) = (0, Instant::now());
    while reloads < 5 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{reloads} reloads"
        );
        let Some(deliverer) = holder(&nodes, delivering_here).map(|i| nodes[i]) else {
            std::thread::sleep(LEASE / 4);
            continue;
        };
        let round = reloads;
        reloads += 1;
        let text = std::fs::read_to_string(deliverer.config_path()).unwrap();
        let timeout = format!("timeout = \"{}s\"", round + 2);
        let lines: Vec<&str> = text
            .lines()
            .map(|line| {
                if line.starts_with("timeout = ") {
                    timeout.as_str()
                } else {
                    line
                }
            })
            .collect();
        std::fs::write(deliverer.config_path(), lines.join("\n")).unwrap();
        let before = deliverer.logs().matches("Config reloaded.").count();
        deliverer.signal(nix::sys::signal::Signal::SIGHUP);
        wait_until(Duration::from_secs(10), "the reload", || {
            deliverer.logs().matches("Config reloaded.").count() > before
        });
        assert!(deliverer
            .logs()
            .lines()
            .rfind(|line| line.contains("Config reloaded."))
            .is_some_and(|line| line.contains("destinations_restarted=true")));
        std::thread::sleep(LEASE / 2);
    }
    // The reloads came while deliveries went on.
    assert!(
        downstream.calls() < EVENTS,
        "{} delivered",
        downstream.calls()
    );
    wait_until(Duration::from_secs(60), "every event delivered", || {
        downstream.calls() >= EVENTS
            && nodes.iter().any(|gw| {
                gw.admin_json("/v1/destinations")["destinations"][0]["cursor"] == json!(EVENTS)
            })
    });
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "an ordered destination got two requests at once"
    );
    std::thread::sleep(LEASE);
    assert!(
        holder(&nodes, delivering_here).is_some(),
        "one gateway delivers"
    );
}

/// A pause posted to the gateway that does not deliver stops the one that does within a second
/// or two, though it is busy retrying the head of an ordered queue (it read the flag only when
/// it had nothing to deliver).
#[test]
fn a_pause_through_the_other_gateway_stops_a_busy_deliverer() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let downstream = Stub::start(|_| (503, "text/plain", b"down".to_vec()));
    // Retried every 100 ms for 10 s, never probing.
    let delays = vec!["\"100ms\""; 100].join(", ");
    let extra = format!("retry_delays = [{delays}]\npause_after_failures = 1000\n");
    let (a, b) = two_delivering(&nats, &downstream, &extra);
    let nodes = [&a, &b];
    for i in 0..3 {
        let body = format!(r#"{{"id":"evt-{i}"}}"#);
        assert_eq!(a.post("p", &[], body.as_bytes()).status, 200);
    }
    wait_until(Duration::from_secs(5), "retries under way", || {
        downstream.calls() >= 3
    });
    let deliverer = holder(&nodes, delivering_here).expect("one deliverer");
    let other = nodes[1 - deliverer];
    assert_eq!(
        other
            .admin_post("/v1/destinations/crm/pause", &json!({}))
            .status,
        200
    );
    std::thread::sleep(Duration::from_secs(2));
    let after_pause = downstream.calls();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        downstream.calls(),
        after_pause,
        "attempts went on 2 s after the pause"
    );
    assert_eq!(
        nodes[deliverer].admin_json("/v1/destinations")["destinations"][0]["paused"],
        json!(true)
    );
    // Resumed through the deliverer: the gateway that delivers nothing says so too (it showed
    // its own last pause for ever).
    let resume = nodes[deliverer].admin_post("/v1/destinations/crm/resume", &json!({}));
    assert_eq!(resume.status, 200);
    assert_eq!(
        other.admin_json("/v1/destinations")["destinations"][0]["paused"],
        json!(false)
    );
    let paused = other.metric("hookgate_destination_paused", &[("destination", "crm")]);
    assert_eq!(paused, Some(0.0));
}

/// Two gateways with provider `p` and destination `crm` (`extra` added to it) at `downstream`,
/// once one of them delivers.
fn two_delivering(nats: &NatsServer, downstream: &Stub, extra: &str) -> (Gateway, Gateway) {
    let config = provider("p", "none", &[], "event_id = \"json:/id\"")
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nsigning_secret = \"{WHSEC}\"\n{extra}",
            downstream.url
        );
    let (a, b) = (node(nats, &config), node(nats, &config));
    wait_until(LEASE * 3, "one gateway delivers", || {
        holder(&[&a, &b], delivering_here).is_some()
    });
    (a, b)
}

/// Provider `p`, polling `api` every 100 ms from action 1 on, `page_size` actions a page.
fn polled_provider(api: &Stub, page_size: u32) -> String {
    let sync = format!(
        "[provider.sync]\npreset = \"alcmeon\"\nurl = \"{}/actions\"\ninterval = \"100ms\"\n\
         limit_param = \"limit\"\npage_size = {page_size}\nstart_cursor = 1\ncursor_inclusive = true\n[provider.sync.auth]\nuser = \"instance-42\"\npassword = \"app-secret\"\n",
        api.url
    );
    provider("p", "alcmeon", &["alcmeon-app-secret-0123"], &sync)
}

/// Actions `1..=produced` from `min_action_id` on (inclusive), `limit` at a time (Alcméon's sync
/// API, as this fake answers it).
fn vendor(produced: Arc<AtomicU64>) -> Stub {
    Stub::start(move |request| {
        let url = url::Url::parse(&format!("http://vendor{}", request.path)).unwrap();
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.parse::<u64>().ok())
        };
        let from = param("min_action_id").unwrap_or(1).max(1);
        let limit = param("limit").unwrap_or(u64::MAX);
        let last = produced.load(Ordering::SeqCst);
        let data: Vec<Value> = (from..=last)
            .take(limit as usize)
            .map(|id| json!({"id": id, "type": "message_received"}))
            .collect();
        (
            200,
            "application/json",
            json!({ "data": data }).to_string().into_bytes(),
        )
    })
}

#[test]
fn a_poller_moves_to_the_other_gateway_when_its_leaseholder_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let produced = Arc::new(AtomicU64::new(0));
    let api = vendor(produced.clone());
    let config = polled_provider(&api, 20);
    let mut a = node(&nats, &config);
    let mut b = node(&nats, &config);
    let nodes = [&a, &b];
    wait_until(LEASE * 3, "one gateway polls", || {
        holder(&nodes, polling_here).is_some()
    });

    // The vendor produces 400 actions over about 4 s; the poller's cursor is sampled meanwhile.
    const ACTIONS: u64 = 400;
    let producer = {
        let produced = produced.clone();
        std::thread::spawn(move || {
            for _ in 0..ACTIONS / 10 {
                produced.fetch_add(10, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let cursor_of = |gw: &Gateway| -> Option<u64> {
        let status = gw.admin_json("/v1/providers/p/sync");
        (status["polling_here"] == json!(true))
            .then(|| status["cursor"].as_str().and_then(|c| c.parse().ok()))
            .flatten()
    };
    let mut cursors = Vec::new();
    wait_until(Duration::from_secs(10), "half the actions polled", || {
        cursors.extend(nodes.iter().filter_map(|gw| cursor_of(gw)));
        cursors.last().is_some_and(|c| *c > ACTIONS / 2)
    });
    let poller = holder(&nodes, polling_here).expect("one poller");
    let killed_at = Instant::now();
    let survivor = if poller == 0 {
        a.kill();
        &b
    } else {
        b.kill();
        &a
    };
    let takeover = taken_over(killed_at, || polling_here(survivor));
    eprintln!("the other gateway polls {takeover:?} after the kill (lease {LEASE:?})");
    producer.join().unwrap();
    wait_until(Duration::from_secs(30), "every action polled", || {
        if let Some(cursor) = cursor_of(survivor) {
            cursors.push(cursor);
        }
        survivor.all_events(Some("p")).len() as u64 >= ACTIONS
    });
    assert!(
        cursors.windows(2).all(|w| w[0] <= w[1]),
        "the cursor moved back: {cursors:?}"
    );
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for event in survivor.all_events(Some("p")) {
        *counts
            .entry(event["event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len() as u64, ACTIONS);
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
}

/// A poller whose write of the cursor fails because another gateway moved it meanwhile (the
/// lease lapsed and came back, or a write whose answer was lost) reads it again and goes on
/// from there: before, it went on from its own stale cursor, every write failing, until restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poller_whose_cursor_was_moved_elsewhere_goes_on_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let produced = Arc::new(AtomicU64::new(0));
    let api = vendor(produced.clone());
    let config = polled_provider(&api, 1000);
    let gw = tokio::task::block_in_place(|| node(&nats, &config));
    let status = || tokio::task::block_in_place(|| gw.admin_json("/v1/providers/p/sync"));
    let mut waited = Instant::now();
    while status()["cursor"] != json!("1") {
        assert!(
            waited.elapsed() < LEASE * 3,
            "the first cursor: {}",
            status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Another gateway moves the cursor on, as one that held the lease meanwhile would.
    let other = nats.store(LEASE);
    assert_eq!(
        other.sync_cursor("p").await.unwrap(),
        Some(br#"{"cursor":"1"}"#.to_vec())
    );
    other
        .set_sync_cursor("p", br#"{"cursor":"51"}"#.to_vec())
        .await
        .unwrap();
    // This gateway reads 51 at its next round, and asks from it. Only then are there actions
    // to fetch: a round that read 1 before the move, fetching after actions were produced,
    // would store 1..=50 (its write of the cursor then fails, but the items are stored).
    waited = Instant::now();
    let asked_from_51 = || {
        api.requests()
            .iter()
            .any(|r| r.path.contains("min_action_id=51"))
    };
    while !asked_from_51() {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "never asked from 51"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    produced.store(100, Ordering::SeqCst);
    waited = Instant::now();
    while status()["cursor"] != json!("101") {
        assert!(
            waited.elapsed() < Duration::from_secs(10),
            "the poller goes on: {}",
            status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored: serde_json::Value =
        serde_json::from_slice(&other.sync_cursor("p").await.unwrap().unwrap()).unwrap();
    assert_eq!(stored["cursor"], "101", "{stored}");
    let asked: Vec<String> = api.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        asked.iter().any(|path| path.contains("min_action_id=51")),
        "{asked:?}"
    );
    // 51..=100: a round reads the stored cursor first (1..=50 are the other gateway's to
    // store, as one that moved the cursor past them would have).
    let events = tokio::task::block_in_place(|| gw.all_events(Some("p")));
    assert_eq!(events.len(), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_reads_the_events_the_other_stored() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let (a, b) = (nats.store(LEASE), nats.store(LEASE));
    let mut last_seq = a.last_seq();
    let event = NewEvent::poll(
        ProviderName::parse("p").unwrap(),
        EventId::new("from-b".to_string()).unwrap(),
        None,
        Bytes::from_static(b"{}"),
    );
    let Committed::Accepted(seq) = b.commit(event, Duration::from_secs(5)).await.unwrap() else {
        panic!("a duplicate on an empty stream");
    };
    tokio::time::timeout(
        Duration::from_secs(2),
        last_seq.wait_for(|last| *last >= seq),
    )
    .await
    .expect("the other gateway's event reaches last_seq")
    .unwrap();
    let events = a.events_after(Seq(0), 10, None).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_id, "from-b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_poller_cannot_move_the_sync_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let (a, b) = (nats.store(LEASE), nats.store(LEASE));
    assert_eq!(a.sync_cursor("gh").await.unwrap(), None);
    a.set_sync_cursor("gh", b"10".to_vec()).await.unwrap();
    // b takes over: it reads the cursor and moves it on.
    assert_eq!(b.sync_cursor("gh").await.unwrap(), Some(b"10".to_vec()));
    b.set_sync_cursor("gh", b"20".to_vec()).await.unwrap();
    // a has not seen 20: its write (of a page it had fetched from 10) fails.
    let stale = a.set_sync_cursor("gh", b"15".to_vec()).await;
    assert!(stale.is_err(), "{stale:?}");
    assert_eq!(b.sync_cursor("gh").await.unwrap(), Some(b"20".to_vec()));
    // Two gateways that both saw no cursor: one creates it, the other fails.
    assert_eq!(a.sync_cursor("new").await.unwrap(), None);
    assert_eq!(b.sync_cursor("new").await.unwrap(), None);
    a.set_sync_cursor("new", b"1".to_vec()).await.unwrap();
    assert!(b.set_sync_cursor("new", b"2".to_vec()).await.is_err());
    // Once it has read the cursor again, a may write.
    assert_eq!(a.sync_cursor("gh").await.unwrap(), Some(b"20".to_vec()));
    a.set_sync_cursor("gh", b"30".to_vec()).await.unwrap();
    assert_eq!(b.sync_cursor("gh").await.unwrap(), Some(b"30".to_vec()));
}

/// Two gateways on one store, one with a consumer the other lacks: each counts the other in
/// `hookgate_gateways_disagreeing` within the lease time; once the second reloads the first's
/// config (SIGHUP), both count none.
#[test]
fn gateways_with_other_configs_are_counted_until_they_agree() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let shared = provider("p", "none", &[], "");
    let first = node(&nats, &shared);
    let second = node(
        &nats,
        &format!("{shared}\n[[consumer]]\nname = \"extra\"\n"),
    );
    let disagreeing = |gw: &Gateway| gw.metric("hookgate_gateways_disagreeing", &[]);
    wait_until(LEASE * 3, "both gateways count the other", || {
        disagreeing(&first) == Some(1.0) && disagreeing(&second) == Some(1.0)
    });
    let config = std::fs::read_to_string(second.config_path()).unwrap();
    let same = config.replace("\n[[consumer]]\nname = \"extra\"\n", "\n");
    assert_ne!(config, same);
    std::fs::write(second.config_path(), same).unwrap();
    second.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(LEASE * 3, "both gateways agree again", || {
        disagreeing(&first) == Some(0.0) && disagreeing(&second) == Some(0.0)
    });
}
