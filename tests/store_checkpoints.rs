//! Checkpoints do not hold the senders. While a checkpoint keeps sled closed (`[store]
//! checkpoint_mb`; made 3 s longer here by the test hook), a new event is acknowledged from the
//! checkpoint journal and a copy of it answers `duplicate` with its seq; a copy of an event from
//! before, whose dedup needs sled, and a reader wait for sled, then find what they should.
#![allow(clippy::unwrap_used)]

mod common;

use common::{provider, sign, Api, Gateway, Reply};

const SLOW_ENV: &str = "HOOKGATE_TEST_SLOW_CHECKPOINT_MS";

fn post(api: &Api, id: &str, pad: usize) -> Reply {
    let body = format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(pad));
    api.post("p", &sign::headers(&[("X-Id", id)]), body.as_bytes())
}

fn metric(gw: &Gateway, name: &str) -> f64 {
    gw.metric(name, &[]).unwrap_or(0.0)
}

#[test]
fn events_are_acknowledged_while_a_checkpoint_keeps_sled_closed() {
    let mut gw = Gateway::builder()
        .server("ack_deadline_ms = 20000")
        .config(&format!(
            "{}\n[store]\ncheckpoint_mb = 1\n[limits]\nper_address_rps = 0\n",
            provider("p", "none", &[], "event_id = \"header:X-Id\"")
        ))
        .env(SLOW_ENV, "3000")
        .start();
    let api = gw.api();
    let (_, before) = post(&api, "before", 10).ack();
    // 1.2 MB: the checkpoint starts once the batch that crosses 1 MiB is answered.
    for i in 0..6 {
        assert_eq!(post(&api, &format!("big-{i}"), 200_000).ack().0, "accepted");
    }

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
