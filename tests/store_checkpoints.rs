//! Checkpoints do not hold the senders. While a checkpoint keeps sled closed (`[store]
//! checkpoint_mb`; made 3 s longer here by the test hook), a new event is acknowledged from the
//! checkpoint journal and a copy of it answers `duplicate` with its seq; a copy of an event from
//! before, whose dedup needs sled, and a reader wait for sled, then find what they should. A
//! copy of an event whose claim is in a sealed dedup run is answered from the run's file,
//! without waiting. Once sled is open again, events go on being acknowledged from the journal
//! while it is applied to sled.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{provider, sign, wait_until, Api, Gateway, Reply};

const SLOW_ENV: &str = "HOOKGATE_TEST_SLOW_CHECKPOINT_MS";
const SLOW_APPLY_ENV: &str = "HOOKGATE_TEST_SLOW_APPLY_MS";

fn post(api: &Api, id: &str, pad: usize) -> Reply {
    let body = format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(pad));
    api.post("p", &sign::headers(&[("X-Id", id)]), body.as_bytes())
}

/// How many complete dedup run files `dir` holds.
fn run_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |files| {
        files
            .flatten()
            .filter(|file| file.path().extension().is_some_and(|ext| ext == "run"))
            .count()
    })
}

fn metric(gw: &Gateway, name: &str) -> f64 {
    gw.metric(name, &[]).unwrap_or(0.0)
}

/// A gateway whose checkpoints come every 1 MiB committed and keep sled closed 3 s longer.
fn slow_checkpoints() -> common::GatewayBuilder {
    Gateway::builder()
        .server("ack_deadline_ms = 20000")
        .config(&format!(
            "{}\n[store]\ncheckpoint_mb = 1\n[limits]\nper_address_rps = 0\n",
            provider("p", "none", &[], "event_id = \"header:X-Id\"")
        ))
        .env(SLOW_ENV, "3000")
}

/// 1.2 MB: the checkpoint starts once the batch that crosses 1 MiB is answered.
fn start_checkpoint(api: &Api, name: &str) {
    for i in 0..6 {
        assert_eq!(
            post(api, &format!("{name}-{i}"), 200_000).ack().0,
            "accepted"
        );
    }
}

/// A failed fdatasync of the journal (events acknowledged while a checkpoint keeps sled closed)
/// stops the gateway before any later ack, as one of sled's log does; what was acknowledged
/// before is stored at its seq after a restart. (The fault could not be injected: the stop
/// held by reading only.)
#[test]
fn a_failed_journal_fsync_stops_the_gateway_before_any_later_ack() {
    let mut gw = slow_checkpoints()
        .env("HOOKGATE_TEST_FAIL_JOURNAL_FSYNC_AFTER", "2")
        .start();
    let api = gw.api();
    start_checkpoint(&api, "big");
    let mut acked = Vec::new();
    let mut refused = false;
    for i in 0..6 {
        let id = format!("j-{i}");
        match api.try_post("p", &sign::headers(&[("X-Id", &id)]), br#"{}"#) {
            Ok(reply) if reply.status == 200 => {
                assert!(!refused, "{id} acknowledged after the failed fsync");
                acked.push((id, reply.ack().1));
            }
            _ => refused = true,
        }
    }
    assert!(refused, "every post acknowledged; {}", gw.logs());
    assert_eq!(acked.len(), 2, "two journaled before the fault: {acked:?}");
    let status = gw.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{status:?}");
    assert!(
        gw.logs().contains("fdatasync of the journal failed"),
        "{}",
        gw.logs()
    );
    gw.restart();
    let stored = gw.api().ids_by_seq();
    for (id, seq) in &acked {
        assert_eq!(stored.get(seq), Some(id), "acked {id} as {seq}");
    }
}

#[test]
fn events_are_acknowledged_while_a_checkpoint_keeps_sled_closed() {
    let mut gw = slow_checkpoints().start();
    let api = gw.api();
    let (_, before) = post(&api, "before", 10).ack();
    start_checkpoint(&api, "big");

    let (status, x) = post(&api, "x", 10).ack();
    assert_eq!(status, "accepted");
    assert_eq!(post(&api, "x", 10).ack(), ("duplicate".into(), x));
    assert_eq!(
        metric(&gw, "hookgate_store_checkpoints_total"),
        0.0,
        "x was answered once the checkpoint was over, not while sled was closed"
    );
    assert!(metric(&gw, "hookgate_store_journaled_events_total") >= 1.0);

    // A copy of an event from before: its dedup claim is in sled, so it waits for it.
    assert_eq!(post(&api, "before", 10).ack(), ("duplicate".into(), before));
    assert_eq!(metric(&gw, "hookgate_store_checkpoints_total"), 1.0);
    assert!(metric(&gw, "hookgate_store_checkpoint_held_total") >= 1.0);
    // A reader finds the journaled event (sled holds it by the time readers get it back).
    assert_eq!(api.event(x).unwrap()["event_id"], "x");

    gw.restart();
    let api = gw.api();
    let stored = api.ids_by_seq();
    assert_eq!(stored.get(&x).map(String::as_str), Some("x"));
    assert_eq!(stored.get(&before).map(String::as_str), Some("before"));
    assert_eq!(stored.len(), 8, "{stored:?}");
    assert_eq!(post(&api, "x", 10).ack(), ("duplicate".into(), x));
}

#[test]
fn a_copy_of_an_event_in_a_sealed_run_is_answered_while_sled_is_closed() {
    let mut gw = slow_checkpoints()
        .env("HOOKGATE_TEST_DEDUP_RUN_KEYS", "300")
        .start();
    let api = gw.api();
    let old: Vec<u64> = (0..700)
        .map(|i| post(&api, &format!("old-{i}"), 10).ack().1)
        .collect();
    // Two runs sealed (0-299 and 300-599, each with its file); 600-699 still in the log.
    let runs = gw.data_dir().join("dedup-runs");
    wait_until(Duration::from_secs(20), "two sealed runs' files", || {
        run_files(&runs) == 2
    });
    start_checkpoint(&api, "big");

    for i in [0, 150, 299, 300, 599] {
        assert_eq!(
            post(&api, &format!("old-{i}"), 10).ack(),
            ("duplicate".into(), old[i]),
            "old-{i}"
        );
    }
    let (status, new) = post(&api, "new", 10).ack();
    assert_eq!(status, "accepted");
    assert_eq!(
        metric(&gw, "hookgate_store_checkpoints_total"),
        0.0,
        "answered while sled was closed"
    );
    assert_eq!(metric(&gw, "hookgate_store_checkpoint_held_total"), 0.0);

    // One whose claim is in the log of recent claims still waits for sled.
    assert_eq!(
        post(&api, "old-650", 10).ack(),
        ("duplicate".into(), old[650])
    );
    assert_eq!(metric(&gw, "hookgate_store_checkpoints_total"), 1.0);
    assert_eq!(metric(&gw, "hookgate_store_checkpoint_held_total"), 1.0);

    gw.restart();
    let api = gw.api();
    let stored = api.ids_by_seq();
    assert_eq!(stored.len(), 700 + 6 + 1, "every event stored once");
    assert_eq!(stored.get(&new).map(String::as_str), Some("new"));
    for i in [0, 299, 599, 699] {
        assert_eq!(
            post(&api, &format!("old-{i}"), 10).ack(),
            ("duplicate".into(), old[i])
        );
    }

    // The copies lost, or a store sealed before them: written again from sled after a start.
    gw.terminate();
    std::fs::remove_dir_all(&runs).unwrap();
    gw.restart();
    wait_until(
        Duration::from_secs(20),
        "the runs' files written again",
        || run_files(&runs) >= 2,
    );
    start_checkpoint(&gw.api(), "bigger");
    assert_eq!(
        post(&gw.api(), "old-100", 10).ack(),
        ("duplicate".into(), old[100])
    );
    assert_eq!(
        metric(&gw, "hookgate_store_checkpoints_total"),
        0.0,
        "answered while sled was closed"
    );
    assert_eq!(metric(&gw, "hookgate_store_checkpoint_held_total"), 0.0);
}

/// Once sled is open again, the journal is applied a step at a time (each made 3 s longer here):
/// the copy of an event from before, held while sled was closed, is answered before the first
/// step; a new event arriving during a step is journaled and answered before the next, and a
/// copy of one applied meanwhile is told by sled. Killed
/// with SIGKILL while the journal is still being applied, the gateway restarts with every
/// acknowledged event stored once, under the seq it was acknowledged with.
#[test]
fn events_are_acknowledged_while_the_journal_is_applied() {
    let mut gw = slow_checkpoints().env(SLOW_APPLY_ENV, "3000").start();
    let api = gw.api();
    let (_, before) = post(&api, "before", 10).ack();
    start_checkpoint(&api, "big");
    let (status, x) = post(&api, "x", 10).ack();
    assert_eq!(status, "accepted");
    assert_eq!(metric(&gw, "hookgate_store_checkpoints_total"), 0.0);

    // Held while sled was closed; told by sled as soon as it is open, before the first step.
    assert_eq!(post(&api, "before", 10).ack(), ("duplicate".into(), before));
    assert_eq!(metric(&gw, "hookgate_store_checkpoints_total"), 1.0);
    assert_eq!(metric(&gw, "hookgate_store_checkpoint_held_total"), 1.0);
    let journaled = metric(&gw, "hookgate_store_journaled_events_total");

    // The first step (x's frame) is being applied: y waits for it, then is journaled.
    let (status, y) = post(&api, "y", 10).ack();
    assert_eq!((status.as_str(), y), ("accepted", x + 1));
    assert_eq!(
        metric(&gw, "hookgate_store_journaled_events_total"),
        journaled + 1.0,
        "y was acknowledged from the journal, while it was applied"
    );
    // y's frame is being applied: a copy of x (in sled now) and a new event z wait for that step.
    let (copy_of_x, z) = std::thread::scope(|s| {
        let copy = s.spawn(|| post(&api, "x", 10).ack());
        let z = s.spawn(|| post(&api, "z", 10).ack());
        (copy.join().unwrap(), z.join().unwrap())
    });
    assert_eq!(copy_of_x, ("duplicate".into(), x));
    let (status, z) = z;
    assert_eq!((status.as_str(), z), ("accepted", y + 1));
    assert_eq!(
        metric(&gw, "hookgate_store_journaled_events_total"),
        journaled + 2.0
    );
    assert!(
        !gw.logs().contains("Store checkpointed"),
        "z's frame is being applied"
    );

    // SIGKILL before the journal is applied and emptied.
    gw.restart();
    assert!(
        gw.logged_at_last_start("journal_events") >= 1,
        "the start applied the journal"
    );
    let api = gw.api();
    let stored = api.ids_by_seq();
    assert_eq!(stored.get(&before).map(String::as_str), Some("before"));
    assert_eq!(stored.get(&x).map(String::as_str), Some("x"));
    assert_eq!(stored.get(&y).map(String::as_str), Some("y"));
    assert_eq!(stored.get(&z).map(String::as_str), Some("z"));
    assert_eq!(stored.len(), 10, "every event stored once: {stored:?}");
    for (id, seq) in [("x", x), ("y", y), ("z", z)] {
        assert_eq!(post(&api, id, 10).ack(), ("duplicate".into(), seq));
    }
}

/// Reading stored events also checkpoints sled, once `[store] checkpoint_read_mb` of them were
/// read since it was opened: sled 0.34 keeps what readers pull in until it is reopened. Reads of
/// the newest 4,096 events do not count (the committer keeps their leaves resident anyway). The
/// log line says why it came (`read_mb`), and what is read stays the same across it.
#[test]
fn reading_stored_events_checkpoints_sled() {
    let gw = Gateway::builder()
        .config(&format!(
            "{}\n[store]\ncheckpoint_mb = 0\ncheckpoint_read_mb = 1\n[limits]\nper_address_rps = 0\n",
            provider("p", "none", &[], "event_id = \"header:X-Id\"")
        ))
        .start();
    let api = gw.api();
    let post = |id: String, pad: &str| {
        let body = format!(r#"{{"id":"{id}","pad":"{pad}"}}"#);
        let reply = api.post("p", &sign::headers(&[("X-Id", &id)]), body.as_bytes());
        assert_eq!(reply.ack().0, "accepted");
    };
    // 40 bodies of 20 KB that compress poorly (~0.8 MB), then 4,100 small ones after them.
    for i in 0..40u32 {
        let pad: String = (0..20_000u32)
            .map(|n| {
                let bits = n.wrapping_mul(2_654_435_761).rotate_left(i) >> 27;
                char::from(b'a' + (bits % 26) as u8)
            })
            .collect();
        post(format!("big{i}"), &pad);
    }
    for i in 0..4_100 {
        post(format!("small{i}"), "");
    }
    let recent = |gw: &Gateway| {
        gw.admin_json("/v1/events?after=100&limit=1000")["events"]
            .as_array()
            .unwrap()
            .len()
    };
    // The newest events alone, read over and over, count for nothing.
    for _ in 0..20 {
        assert_eq!(recent(&gw), 1000);
    }
    assert_eq!(metric(&gw, "hookgate_store_checkpoints_total"), 0.0);
    let first = gw.all_events(Some("p"));
    assert_eq!(first.len(), 4_140);
    for _ in 0..2 {
        assert_eq!(gw.all_events(Some("p")), first);
    }
    wait_until(Duration::from_secs(10), "a checkpoint", || {
        metric(&gw, "hookgate_store_checkpoints_total") >= 1.0
    });
    assert!(gw.logs().contains("read_mb=1"), "{}", gw.logs());
    assert_eq!(gw.all_events(Some("p")), first);
}
