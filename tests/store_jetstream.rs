//! The JetStream backend beyond the conformance suite: a gateway (the real binary) on a real
//! nats-server stores, deduplicates and serves webhooks; with its server gone, a webhook is
//! answered 503, never 500; acknowledged events survive a `kill -9` of the server. And a
//! measurement of commit latency on one node (ignored; run it
//! with `cargo test --release --test store_jetstream -- --ignored --nocapture`).
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use common::nats::NatsServer;
use common::{provider, sign, toml_str, Gateway};
use hookgate::event::{EventId, ProviderName, Seq};
use hookgate::store::{Change, Committed, Cutoffs, DeadRecord, Mark, NewEvent};

fn jetstream_store(nats: &NatsServer) -> String {
    format!(
        "\n[store]\nbackend = \"jetstream\"\nservers = [{}]\n",
        toml_str(&nats.url())
    )
}

fn gateway(nats: &NatsServer, whsec: &str) -> Gateway {
    Gateway::builder()
        .server("ack_deadline_ms = 1000")
        .config(&provider("std", "standard-webhooks", &[whsec], ""))
        .config(&jetstream_store(nats))
        .start()
}

#[test]
fn a_gateway_on_jetstream_stores_deduplicates_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let whsec = sign::whsec("jetstream");
    let gw = gateway(&nats, &whsec);
    let body = br#"{"type":"order.created","id":"ord_1"}"#;
    let headers = sign::standard_headers(&whsec, "msg_1", body);
    assert_eq!(
        gw.post("std", &headers, body).ack(),
        ("accepted".to_string(), 1)
    );
    assert_eq!(
        gw.post("std", &headers, body).ack(),
        ("duplicate".to_string(), 1)
    );
    let other = sign::standard_headers(&whsec, "msg_2", b"{}");
    assert_eq!(
        gw.post("std", &other, b"{}").ack(),
        ("accepted".to_string(), 2)
    );
    assert_eq!(gw.metric("hookgate_events_stored_total", &[]), Some(2.0));
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(1.0));
    let events = gw.all_events(None);
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event_id"], "msg_1");
    assert_eq!(events[0]["provider"], "std");
    let stored = base64::engine::general_purpose::STANDARD
        .decode(events[0]["body_base64"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored, body);
}

#[test]
fn a_publish_held_up_by_a_stalled_server_is_logged_as_slow() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let whsec = sign::whsec("jetstream");
    let gw = Gateway::builder()
        .server("ack_deadline_ms = 5000")
        .config(&provider("std", "standard-webhooks", &[&whsec], ""))
        .config(&format!(
            "{}slow_commit = \"200ms\"\n",
            jetstream_store(&nats)
        ))
        .start();
    let post = |id: &str| {
        let body = format!(r#"{{"id":"{id}"}}"#);
        let headers = sign::standard_headers(&whsec, id, body.as_bytes());
        gw.post("std", &headers, body.as_bytes()).ack().0
    };
    assert_eq!(post("quick"), "accepted");
    // The server stops for 600 ms; the post goes out 100 ms into it and waits for its ack.
    std::thread::scope(|s| {
        s.spawn(|| nats.stall(Duration::from_millis(600)));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(post("stalled"), "accepted");
    });

    common::wait_until(Duration::from_secs(10), "a slow publish logged", || {
        gw.logs().contains("A publish was slow")
    });
    let logs = gw.logs();
    let lines: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("A publish was slow"))
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "only the stalled publish was slow: {lines:?}"
    );
    let ack_ms: f64 = lines[0]
        .split(" ack_ms=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no ack_ms in {}", lines[0]));
    assert!(
        ack_ms >= 300.0,
        "the stall is in the ack wait: {}",
        lines[0]
    );
    assert!(
        lines[0].contains("outcome=\"accepted\"") || lines[0].contains("outcome=accepted"),
        "{}",
        lines[0]
    );
    assert_eq!(gw.metric("hookgate_commits_slow_total", &[]), Some(1.0));
}

#[test]
fn without_its_nats_server_a_webhook_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let whsec = sign::whsec("jetstream-down");
    let gw = gateway(&nats, &whsec);
    let headers = sign::standard_headers(&whsec, "msg_1", b"{}");
    assert_eq!(gw.post("std", &headers, b"{}").status, 200);
    drop(nats);
    let headers = sign::standard_headers(&whsec, "msg_2", b"{}");
    let started = Instant::now();
    let reply = gw.post("std", &headers, b"{}");
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        started.elapsed()
    );
}

/// An event of provider `p` with no content type.
fn event(id: String, body: String) -> NewEvent {
    NewEvent::poll(
        ProviderName::parse("p").unwrap(),
        EventId::new(id).unwrap(),
        None,
        Bytes::from(body),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_kill_9_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let store = nats.store(Duration::from_secs(10));
    let mut tasks = Vec::new();
    for task in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..50 {
                let event = event(format!("id-{task}-{i}"), format!("body {task} {i}"));
                match store.commit(event, Duration::from_secs(10)).await {
                    Ok(Committed::Accepted(seq)) => acked.push((seq, format!("body {task} {i}"))),
                    other => panic!("{other:?}"),
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for task in tasks {
        acked.extend(task.await.unwrap());
    }
    nats.kill_hard();
    drop(store);
    let nats = NatsServer::start(dir.path());
    let store = nats.store(Duration::from_secs(10));
    assert_eq!(store.last_seq().borrow().0, 400, "last_seq after the crash");
    for (seq, body) in &acked {
        let event = store.event(*seq).await.unwrap();
        assert_eq!(
            event.map(|e| e.body),
            Some(body.clone().into_bytes()),
            "seq {seq}"
        );
    }
    store.close().await;
}

/// A sweep looks at 512 events at most: one that stopped there having removed some says so
/// (`more`), for the sweeper to go on at once; the one that reaches the end does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_stopped_at_its_bound_asks_for_the_next_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let store = nats.store(Duration::from_secs(10));
    for i in 0..600 {
        let event = event(format!("old-{i}"), format!("body {i}")).received_at(1_000);
        let committed = store.commit(event, Duration::from_secs(10)).await.unwrap();
        assert!(matches!(committed, Committed::Accepted(_)), "{committed:?}");
    }
    let cutoffs = Cutoffs {
        events_ms: 2_000,
        dedup_ms: 0,
    };
    let outputs = Arc::new(Vec::new());
    let first = store.sweep(cutoffs, outputs.clone()).await.unwrap();
    assert_eq!((first.events, first.more), (512, true), "{first:?}");
    let second = store.sweep(cutoffs, outputs.clone()).await.unwrap();
    assert_eq!((second.events, second.more), (88, false), "{second:?}");
    let third = store.sweep(cutoffs, outputs).await.unwrap();
    assert_eq!((third.events, third.more), (0, false), "{third:?}");
    store.close().await;
}

/// Commit latency on one node (R1, the server's default sync every 2 minutes): sequential
/// commits, then 16 tasks at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_commit_latency_on_one_node() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let store = nats.store(Duration::from_secs(10));
    let body = Bytes::from(vec![b'x'; 1024]);
    let event = move |i: usize| {
        NewEvent::poll(
            ProviderName::parse("p").unwrap(),
            EventId::new(format!("id-{i}")).unwrap(),
            Some("application/json".into()),
            body.clone(),
        )
    };
    const N: usize = 5_000;
    let mut latencies = Vec::with_capacity(N);
    for i in 0..N {
        let started = Instant::now();
        let committed = store.commit(event(i), Duration::from_secs(5)).await;
        assert!(matches!(committed, Ok(Committed::Accepted(_))));
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "sequential 1 KiB commits: p50 {:?}, p99 {:?}, max {:?}",
        latencies[N / 2],
        latencies[N * 99 / 100],
        latencies[N - 1]
    );
    const TASKS: usize = 16;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let event = event.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..N / TASKS {
                let begun = Instant::now();
                let committed = store
                    .commit(event(N + task * N + i), Duration::from_secs(5))
                    .await;
                assert!(matches!(committed, Ok(Committed::Accepted(_))));
                latencies.push(begun.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let n = latencies.len();
    println!(
        "{TASKS} tasks: {:.0} commits/s, p50 {:?}, p99 {:?}",
        n as f64 / elapsed.as_secs_f64(),
        latencies[n / 2],
        latencies[n * 99 / 100]
    );
    // Reading it all back, a page of 1,000 at a time (as the admin API and dispatchers do).
    let stored = store.last_seq().borrow().0;
    let started = Instant::now();
    let (mut after, mut read) = (Seq(0), 0);
    loop {
        let page = store.events_after(after, 1000, None).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Seq(last.seq);
        read += page.len();
    }
    assert_eq!(read as u64, stored);
    println!(
        "reads: {:.0} events/s in pages of 1,000",
        read as f64 / started.elapsed().as_secs_f64()
    );
    store.close().await;
}

/// What a destination's cursor move costs beside the dead events it keeps (R1, one node): 200
/// moves with 0, 2,000 and 20,000 dead records (one seq in 50 dead), and counting them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_cursor_moves_beside_dead_events() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start(dir.path());
    let store = nats.store(Duration::from_secs(10));
    let dead = |seq: u64| {
        Change::Dead(
            Seq(seq),
            DeadRecord {
                at_ms: 1_764_720_000_000,
                attempts: 8,
                error: "HTTP 503 from https://crm.example.com/ingest: upstream unavailable".into(),
            },
        )
    };
    let mut cursor = 1_000_000;
    let mut kept = 0;
    for wanted in [0, 2_000, 20_000] {
        while kept < wanted {
            let batch: Vec<Change> = (kept..wanted.min(kept + 1_000))
                .map(|i| dead(i * 50))
                .collect();
            kept += batch.len() as u64;
            store.change("crm", batch).await.unwrap();
        }
        const MOVES: u32 = 200;
        let started = Instant::now();
        for _ in 0..MOVES {
            cursor += 1;
            store
                .change("crm", vec![Change::Cursor(Seq(cursor))])
                .await
                .unwrap();
        }
        println!(
            "cursor moves beside {kept} dead events: {:?} each",
            started.elapsed() / MOVES
        );
        let started = Instant::now();
        assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), kept);
        println!("counting them: {:?}", started.elapsed());
    }
    store.close().await;
}
