//! A slow commit is logged with the time of each part of it (`[store] slow_commit`), so that a
//! slow disk is named as such; fast ones are not logged.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{provider, sign, wait_until, Gateway};

/// Slows every fdatasync of the store's log by this many milliseconds (a test hook).
const SLOW_FSYNC_ENV: &str = "HOOKGATE_TEST_SLOW_FSYNC_MS";

fn config() -> String {
    provider("p", "none", &[], "event_id = \"header:X-Id\"")
}

fn post(gw: &Gateway, id: &str) {
    let body = format!(r#"{{"id":"{id}"}}"#);
    let reply = gw
        .api()
        .post("p", &sign::headers(&[("X-Id", id)]), body.as_bytes());
    assert_eq!(reply.ack().0, "accepted", "{id}");
}

/// The number after `field=` in `line`.
fn field(line: &str, field: &str) -> f64 {
    line.split(&format!(" {field}="))
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in: {line}"))
}

fn slow_lines(gw: &Gateway) -> Vec<String> {
    gw.logs()
        .lines()
        .filter(|line| line.contains("A commit was slow"))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_slow_fdatasync_is_named_in_the_slow_commit_line() {
    let gw = Gateway::builder()
        .config(&format!("{}\n[store]\nslow_commit = \"200ms\"\n", config()))
        .env(SLOW_FSYNC_ENV, "300")
        .start();
    post(&gw, "a");

    // The line comes right after the answer.
    wait_until(Duration::from_secs(10), "a slow commit logged", || {
        !slow_lines(&gw).is_empty()
    });
    let lines = slow_lines(&gw);
    let line = lines.last().unwrap();
    assert!(field(line, "fdatasync_ms") >= 300.0, "{line}");
    assert!(field(line, "total_ms") >= 300.0, "{line}");
    assert!(
        field(line, "apply_ms") < 300.0 && field(line, "flush_ms") < 300.0,
        "the wait is put on the fdatasync, not the other parts: {line}"
    );
    assert_eq!(field(line, "requests"), 1.0, "{line}");
    assert!(gw.api().metric("hookgate_commits_slow_total", &[]).unwrap() >= 1.0);
}

#[test]
fn a_request_queued_behind_a_slow_commit_is_told_apart() {
    // The first commit takes ~500 ms (not slow); the second request comes 100 ms into it, so it
    // waits ~400 ms behind it, then ~500 ms for its own.
    let gw = Gateway::builder()
        .config(&format!("{}\n[store]\nslow_commit = \"700ms\"\n", config()))
        .env(SLOW_FSYNC_ENV, "500")
        .start();
    std::thread::scope(|s| {
        s.spawn(|| post(&gw, "first"));
        std::thread::sleep(Duration::from_millis(100));
        s.spawn(|| post(&gw, "second"));
    });

    wait_until(Duration::from_secs(10), "a slow commit logged", || {
        !slow_lines(&gw).is_empty()
    });
    let lines = slow_lines(&gw);
    assert_eq!(lines.len(), 1, "only the second batch was slow: {lines:?}");
    let line = &lines[0];
    assert_eq!(field(line, "requests"), 1.0, "{line}");
    assert!(field(line, "behind_ms") >= 200.0, "{line}");
    assert!(
        field(line, "waited_ms") >= field(line, "behind_ms"),
        "{line}"
    );
    assert!(field(line, "fdatasync_ms") >= 500.0, "{line}");
}

#[test]
fn commits_under_the_bound_are_not_logged() {
    // A bound no commit on a working disk reaches, and a store that syncs as fast as it can.
    let gw = Gateway::builder()
        .config(&format!("{}\n[store]\nslow_commit = \"30s\"\n", config()))
        .start();
    for i in 0..20 {
        post(&gw, &format!("e{i}"));
    }
    assert!(slow_lines(&gw).is_empty(), "{}", gw.logs());
    assert_eq!(
        gw.api().metric("hookgate_commits_slow_total", &[]),
        Some(0.0)
    );
}

/// An ack that cannot be made durable within `ack_deadline_ms` (the disk's fsync never returns)
/// is 503 with `Retry-After`, at the deadline, never a 200; after a restart the sender's retry
/// stores the event once.
#[test]
fn a_commit_not_durable_by_the_deadline_is_503_and_the_retry_stores_it_once() {
    // The store's open syncs once: the first commit's sync never returns.
    let mut gw = Gateway::builder()
        .server("ack_deadline_ms = 1000")
        .config(&config())
        .env("HOOKGATE_TEST_HANG_FSYNC_AFTER", "1")
        .start();
    let body = br#"{"id":"hung-1"}"#;
    let headers = sign::headers(&[("X-Id", "hung-1")]);
    let started = std::time::Instant::now();
    let reply = gw.api().post("p", &headers, body);
    let took = started.elapsed();
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert_eq!(reply.json()["error"], "unavailable", "{}", reply.text());
    assert!(reply.headers.contains_key("retry-after"));
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(
        gw.metric(
            "hookgate_rejections_total",
            &[("cause", "store_unavailable")]
        ) >= Some(1.0),
        "{}",
        gw.api().metrics_text()
    );
    gw.kill();
    let mut gw = Gateway::builder()
        .server("ack_deadline_ms = 1000")
        .config(&config())
        .data_dir(gw.data_dir())
        .start();
    let (status, seq) = gw.api().post("p", &headers, body).ack();
    assert!(status == "accepted" || status == "duplicate", "{status}");
    let stored: Vec<u64> = gw
        .all_events(None)
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(stored, [seq], "stored once");
    gw.kill();
}

/// A slow disk (each fdatasync 1.5 s, under the ack deadline) keeps the gateway ready: webhooks
/// are acknowledged, so a load balancer must not drop it (a readiness probe that went through
/// the committer said "not ready" whenever a commit took a second, each probe an fsync too).
#[test]
fn a_slow_disk_within_the_ack_deadline_is_still_ready() {
    let gw = Gateway::builder()
        .config(&config())
        .env(SLOW_FSYNC_ENV, "1500")
        .start();
    let commits = || gw.metric("hookgate_commits_total", &[]);
    let before = commits();
    std::thread::scope(|s| {
        let posting = s.spawn(|| post(&gw, "slow-1"));
        std::thread::sleep(Duration::from_millis(300));
        for _ in 0..5 {
            assert_eq!(gw.request("GET", "/readyz", b"").status, 200);
        }
        posting.join().unwrap();
    });
    // The probes committed nothing.
    assert!(
        commits() <= before.map(|n| n + 1.0),
        "{before:?} -> {:?}",
        commits()
    );
}

/// A request answered 503 at its deadline leaves its event queued for the committer, body and
/// all: those bodies stay counted in `max_body_bytes_in_flight` until the committer drops them,
/// so senders retrying into a stalled disk get 503 `busy` at once instead of piling up bodies
/// (8,192 queued of up to `max_body_bytes` each) outside the ceiling.
#[test]
fn bodies_queued_behind_a_stalled_disk_stay_counted_in_the_body_budget() {
    const BODY: usize = 100 * 1024;
    let gw = Gateway::builder()
        .server(&format!("ack_deadline_ms = 200\nmax_body_bytes = {BODY}"))
        .config(&format!(
            "{}\n[limits]\nmax_body_bytes_in_flight = {}\n",
            config(),
            4 * BODY
        ))
        .env("HOOKGATE_TEST_HANG_FSYNC_AFTER", "1")
        .start();
    let api = gw.api();
    let mut causes = Vec::new();
    for n in 0..12 {
        let id = format!("stalled-{n}");
        let mut body = format!(r#"{{"id":"{id}","pad":""#).into_bytes();
        body.resize(BODY - 2, b'x');
        body.extend_from_slice(b"\"}");
        let reply = api.post("p", &sign::headers(&[("X-Id", &id)]), &body);
        assert_eq!(reply.status, 503, "{id}: {}", reply.text());
        causes.push(
            reply.json()["error"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    // Each body stays counted (its event queued), so no more than four are ever held: the
    // later requests are refused for the budget.
    let busy = causes.iter().filter(|cause| *cause == "busy").count();
    assert!(busy >= 8, "{causes:?}");
    let refused = |cause| gw.metric("hookgate_rejections_total", &[("cause", cause)]);
    assert_eq!(refused("body_bytes_in_flight"), Some(busy as f64));
}
