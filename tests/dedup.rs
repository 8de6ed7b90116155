//! Deduplication: concurrent copies of one event, and each way of deriving the event id.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Barrier;

use common::sign;
use common::{provider, Gateway};

#[test]
fn concurrent_copies_of_one_event_are_stored_once() {
    let whsec = sign::whsec("concurrent");
    let gw = Gateway::start(&provider("std", "standard-webhooks", &[&whsec], ""));
    let body = br#"{"type":"order.created","id":"ord_1"}"#;
    let headers = sign::standard_headers(&whsec, "msg_same", body);
    const COPIES: usize = 200;
    let barrier = Barrier::new(COPIES);
    let acks: Vec<(String, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..COPIES)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    gw.post("std", &headers, body).ack()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<_> = acks.iter().filter(|(s, _)| s == "accepted").collect();
    assert_eq!(accepted.len(), 1, "acks: {acks:?}");
    let seq = accepted[0].1;
    for (status, other) in &acks {
        assert!(status == "accepted" || status == "duplicate", "{status}");
        assert_eq!(*other, seq, "a copy got another seq");
    }
    let events = gw.all_events(None);
    assert_eq!(events.len(), 1, "stored: {events:?}");
    assert_eq!(events[0]["seq"], seq);
    assert_eq!(events[0]["event_id"], "msg_same");
    assert_eq!(
        gw.metric("hookgate_duplicates_total", &[]),
        Some((COPIES - 1) as f64)
    );
    assert_eq!(gw.metric("hookgate_events_stored_total", &[]), Some(1.0));
}

#[test]
fn event_id_from_a_json_pointer() {
    let gw = Gateway::start(&signed_json_ids("/data/id"));
    let first = post_signed(&gw, br#"{"data":{"id":"m-1"},"v":1}"#);
    assert_eq!(first.0, "accepted");
    // The id is in the signed body: a copy with other bytes is the same event.
    let retry = post_signed(&gw, br#"{"v":2,"data":{"id":"m-1"}}"#);
    assert_eq!(retry, ("duplicate".to_string(), first.1));
    let number = post_signed(&gw, br#"{"data":{"id":42}}"#);
    assert_eq!(number.0, "accepted");
    assert_eq!(gw.event(number.1).unwrap()["event_id"], "42");
    // No such field: the body's sha256 is the id.
    let body = br#"{"data":{}}"#;
    let fallback = post_signed(&gw, body);
    assert_eq!(fallback.0, "accepted");
    let expected = format!("sha256:{}", sign::sha256_hex(body));
    assert_eq!(gw.event(fallback.1).unwrap()["event_id"], expected);
    assert_eq!(gw.event(first.1).unwrap()["event_id"], "m-1");
    assert_eq!(gw.all_events(None).len(), 3);
}

#[test]
fn under_none_an_id_counts_only_with_its_body() {
    // Nothing is signed: anyone may send `{"id":"m-1",...}`, so the id alone cannot make the
    // genuine event a duplicate.
    let gw = Gateway::start(&provider("p", "none", &[], "event_id = \"json:/id\""));
    let genuine = br#"{"id":"m-1","v":1}"#;
    let first = gw.post("p", &[], genuine).ack();
    assert_eq!(first.0, "accepted");
    assert_eq!(
        gw.post("p", &[], genuine).ack(),
        ("duplicate".to_string(), first.1),
        "the sender's retry"
    );
    let other = gw.post("p", &[], br#"{"id":"m-1","v":2}"#).ack();
    assert_eq!(other.0, "accepted", "the same id with another body");
    assert_eq!(gw.event(other.1).unwrap()["event_id"], "m-1");
}

#[test]
fn event_id_from_a_header_overrides_the_scheme() {
    let gw = Gateway::start(&provider(
        "gh",
        "github",
        &["s"],
        "event_id = \"header:X-Id\"",
    ));
    let send = |x_id: &str, delivery: &str, body: &[u8]| {
        let mut headers = sign::github_headers("s", delivery, body);
        headers.push(("X-Id".into(), x_id.into()));
        gw.post("gh", &headers, body).ack()
    };
    let first = send("abc", "delivery-1", b"one");
    assert_eq!(first.0, "accepted");
    assert_eq!(gw.event(first.1).unwrap()["event_id"], "abc");
    let same_header = send("abc", "delivery-2", b"one");
    assert_eq!(same_header, ("duplicate".to_string(), first.1));
    // X-Id is outside GitHub's signature: with another body it is another event.
    let other_body = send("abc", "delivery-1", b"two");
    assert_eq!(other_body.0, "accepted");
    assert_eq!(gw.event(other_body.1).unwrap()["event_id"], "abc");
    let other_header = send("xyz", "delivery-1", b"one");
    assert_eq!(other_header.0, "accepted");
    // Without the header, the scheme's own id (X-GitHub-Delivery) applies.
    let headers = sign::github_headers("s", "delivery-3", b"three");
    let fallback = gw.post("gh", &headers, b"three").ack();
    assert_eq!(gw.event(fallback.1).unwrap()["event_id"], "delivery-3");
}

#[test]
fn a_replayed_capture_cannot_claim_a_future_delivery_id() {
    let gw = Gateway::start(&provider("gh", "github", &["s"], ""));
    let send = |delivery: &str, body: &[u8]| {
        gw.post("gh", &sign::github_headers("s", delivery, body), body)
            .ack()
    };
    let a = br#"{"action":"opened","number":1}"#;
    let b = br#"{"action":"opened","number":2}"#;
    let c = br#"{"action":"opened","number":3}"#;
    let genuine_a = send("D1", a);
    let genuine_b = send("DB", b);
    assert_eq!(
        (genuine_a.0.as_str(), genuine_b.0.as_str()),
        ("accepted", "accepted")
    );
    // The attack: B's captured request, its signature valid, replayed under D2, the delivery
    // id of an event GitHub has not sent yet.
    let replay = send("D2", b);
    // The genuine event D2, body C, is stored, not taken for a duplicate of the replay.
    let genuine_c = send("D2", c);
    assert_eq!(genuine_c.0, "accepted", "replay was {replay:?}");
    assert_ne!(genuine_c.1, replay.1);
    let event = gw.event(genuine_c.1).unwrap();
    assert_eq!(event["event_id"], "D2");
    assert_eq!(common::event_body(&event), c);
    // GitHub's own retries (same delivery id, same body) are still duplicates.
    assert_eq!(send("D2", c), ("duplicate".to_string(), genuine_c.1));
    assert_eq!(send("D1", a), ("duplicate".to_string(), genuine_a.1));
}

#[test]
fn sha256_of_the_body_when_nothing_else_applies() {
    let gw = Gateway::start(&provider("p", "none", &[], ""));
    let body = b"same bytes twice";
    let first = gw.post("p", &[], body).ack();
    assert_eq!(first.0, "accepted");
    assert_eq!(
        gw.post("p", &[], body).ack(),
        ("duplicate".to_string(), first.1)
    );
    assert_eq!(gw.post("p", &[], b"other bytes").ack().0, "accepted");
    let event = gw.event(first.1).unwrap();
    assert_eq!(
        event["event_id"],
        format!("sha256:{}", sign::sha256_hex(body))
    );
}

#[test]
fn the_same_event_id_under_two_providers_is_two_events() {
    let config = provider("a", "none", &[], "event_id = \"header:X-Id\"")
        + &provider("b", "none", &[], "event_id = \"header:X-Id\"");
    let gw = Gateway::start(&config);
    let headers = sign::headers(&[("X-Id", "shared-id")]);
    let a = gw.post("a", &headers, b"{}").ack();
    let b = gw.post("b", &headers, b"{}").ack();
    assert_eq!((a.0.as_str(), b.0.as_str()), ("accepted", "accepted"));
    assert_ne!(a.1, b.1);
    assert_eq!(gw.all_events(Some("a")).len(), 1);
    assert_eq!(gw.all_events(Some("b")).len(), 1);
}

/// A provider whose bodies are signed (generic HMAC-SHA256, hex, in `X-Sig`), its ids at
/// `pointer`.
fn signed_json_ids(pointer: &str) -> String {
    let extra = format!("header = \"X-Sig\"\nevent_id = \"json:{pointer}\"");
    provider("p", "hmac", &["vendor-key"], &extra)
}

/// POSTs `body` to `p` signed as [`signed_json_ids`] expects; the ack.
fn post_signed(gw: &Gateway, body: &[u8]) -> (String, u64) {
    let tag = hex::encode(sign::mac(sign::Alg::Sha256, b"vendor-key", body));
    gw.post("p", &sign::headers(&[("X-Sig", &tag)]), body).ack()
}

#[test]
fn numeric_ids_are_kept_as_written() {
    let gw = Gateway::start(&signed_json_ids("/id"));
    let bodies: [&[u8]; 4] = [
        br#"{"id":100000000000000000000001}"#,
        br#"{"id":100000000000000000000002}"#,
        br#"{"id":1.0}"#,
        br#"{"id":1e0}"#,
    ];
    let acks: Vec<(String, u64)> = bodies.iter().map(|b| post_signed(&gw, b)).collect();
    assert!(acks.iter().all(|(s, _)| s == "accepted"), "{acks:?}");
    let ids: Vec<String> = acks
        .iter()
        .map(|(_, seq)| {
            gw.event(*seq).unwrap()["event_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        ids,
        [
            "100000000000000000000001",
            "100000000000000000000002",
            "1.0",
            "1e0"
        ]
    );
    // A retry of the first, with its number written the same way, is a duplicate.
    let retry = post_signed(&gw, br#"{"retry":1, "id": 100000000000000000000001}"#);
    assert_eq!(retry, ("duplicate".to_string(), acks[0].1));
}
