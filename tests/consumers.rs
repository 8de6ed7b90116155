//! Pull consumers: `GET /v1/consumers/{name}/events` (long poll) and
//! `POST /v1/consumers/{name}/ack`, against the real binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{provider, Api, Gateway, Reply, ADMIN_TOKEN};

/// A `[[consumer]]` table (`providers` omitted when None: every provider).
fn consumer(name: &str, providers: Option<&[&str]>) -> String {
    let providers = providers.map_or(String::new(), |list| {
        let quoted: Vec<String> = list.iter().map(|p| format!("\"{p}\"")).collect();
        format!("providers = [{}]\n", quoted.join(", "))
    });
    format!("\n[[consumer]]\nname = \"{name}\"\n{providers}")
}

/// Two open providers, `a` and `b`, then `consumers`.
fn start(consumers: &str) -> Gateway {
    let providers = provider("a", "none", &[], "") + &provider("b", "none", &[], "");
    Gateway::start(&(providers + consumers))
}

/// Posts a distinct JSON event to `provider`; returns its seq.
fn post(api: &Api, provider: &str, n: u32) -> u64 {
    let body = format!(r#"{{"provider":"{provider}","n":{n}}}"#);
    let (status, seq) = api.post(provider, &[], body.as_bytes()).ack();
    assert_eq!(status, "accepted");
    seq
}

/// `GET /v1/consumers/{name}/events?{query}`; panics unless 200.
fn read(api: &Api, name: &str, query: &str) -> Value {
    let path = format!("/v1/consumers/{name}/events?{query}");
    let reply = api.admin_get(&path);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.json()
}

/// The seqs of a read's events.
fn seqs(page: &Value) -> Vec<u64> {
    page["events"]
        .as_array()
        .expect("events array")
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect()
}

/// `POST /v1/consumers/{name}/ack` with `body` and `token` (None: no Authorization header).
fn ack_with(api: &Api, name: &str, body: &str, token: Option<&str>) -> Reply {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut request = client
        .post(format!("{}/v1/consumers/{name}/ack", api.admin_url))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().unwrap().to_vec(),
    }
}

/// Acks `seq`; panics unless 200; returns the cursor.
fn ack(api: &Api, name: &str, seq: u64) -> u64 {
    let reply = ack_with(api, name, &format!(r#"{{"seq":{seq}}}"#), Some(ADMIN_TOKEN));
    assert_eq!(reply.status, 200, "ack {seq}: {}", reply.text());
    reply.json()["cursor"].as_u64().expect("cursor")
}

/// Reads for `name` with `query` while another thread posts an event to `provider` 300 ms in:
/// the page, how long the read took, and the posted event's seq.
fn read_while_posting(
    gw: &Gateway,
    name: &str,
    query: &str,
    provider: &str,
) -> (Value, Duration, u64) {
    let api = gw.api();
    let provider = provider.to_string();
    let poster = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        post(&api, &provider, 1)
    });
    let started = Instant::now();
    let page = read(gw, name, query);
    let elapsed = started.elapsed();
    (page, elapsed, poster.join().unwrap())
}

#[test]
fn events_are_read_again_until_acknowledged_across_restarts() {
    let mut gw = start(&consumer("reader", None));
    let posted: Vec<u64> = (0..5).map(|n| post(&gw, "a", n)).collect();
    assert_eq!(posted, [1, 2, 3, 4, 5]);

    let first = read(&gw, "reader", "limit=3");
    assert_eq!(seqs(&first), [1, 2, 3]);
    assert_eq!(first["cursor"], 0);
    // Each event is the same JSON as `/v1/events/{seq}` gives.
    for event in first["events"].as_array().unwrap() {
        let seq = event["seq"].as_u64().unwrap();
        assert_eq!(Some(event.clone()), gw.event(seq));
    }
    assert_eq!(first["events"][0]["json"], json!({"provider": "a", "n": 0}));

    gw.restart();
    let again = read(&gw, "reader", "limit=3");
    assert_eq!(again, first, "the same events before any ack");

    assert_eq!(ack(&gw, "reader", 3), 3);
    let next = read(&gw, "reader", "limit=3");
    assert_eq!(seqs(&next), [4, 5]);
    assert_eq!(next["cursor"], 3);

    // The cursor never moves back: an older ack is accepted and changes nothing.
    assert_eq!(ack(&gw, "reader", 2), 3);
    assert_eq!(ack(&gw, "reader", 3), 3);

    // In the metrics too, beside the newest seq: a consumer that stops acking shows.
    let reader = [("consumer", "reader")];
    assert_eq!(gw.metric("hookgate_consumer_cursor", &reader), Some(3.0));
    assert_eq!(gw.metric("hookgate_store_last_seq", &[]), Some(5.0));

    // The cursor is durable, through a SIGKILL.
    gw.restart();
    let after_restart = read(&gw, "reader", "");
    assert_eq!(seqs(&after_restart), [4, 5]);
    assert_eq!(after_restart["cursor"], 3);

    assert_eq!(ack(&gw, "reader", 5), 5);
    let done = read(&gw, "reader", "wait_ms=0");
    assert_eq!(seqs(&done), Vec::<u64>::new());
    assert_eq!(done["cursor"], 5);
    assert_eq!(post(&gw, "b", 6), 6);
    assert_eq!(seqs(&read(&gw, "reader", "")), [6]);
}

#[test]
fn a_consumer_reads_only_the_providers_it_wants() {
    let gw = start(&(consumer("only_b", Some(&["b"])) + &consumer("all", None)));
    for n in 0..6 {
        post(&gw, if n % 2 == 0 { "a" } else { "b" }, n);
    }
    let page = read(&gw, "only_b", "");
    assert_eq!(seqs(&page), [2, 4, 6]);
    assert!(page["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["provider"] == "b"));
    assert_eq!(seqs(&read(&gw, "all", "")), [1, 2, 3, 4, 5, 6]);

    // `limit` counts wanted events only; the cursors are separate.
    assert_eq!(seqs(&read(&gw, "only_b", "limit=2")), [2, 4]);
    assert_eq!(ack(&gw, "only_b", 4), 4);
    assert_eq!(seqs(&read(&gw, "only_b", "limit=2")), [6]);
    assert_eq!(seqs(&read(&gw, "all", "limit=2")), [1, 2]);
    // Acking an unwanted event's seq is fine: it moves past it.
    assert_eq!(ack(&gw, "only_b", 5), 5);
    assert_eq!(seqs(&read(&gw, "only_b", "")), [6]);
}

/// A consumer's read looks at a bounded number of events (10,240) and says how far it looked
/// (`scanned`):
/// acking that skips what the consumer does not want, and a long poll looks on by itself.
/// (A read scanned every event after the cursor, each time: with a backlog of other providers'
/// events, every read of a quiet consumer cost as much as the whole backlog.)
#[test]
fn a_read_looks_at_a_bounded_number_of_events_and_says_how_far() {
    const OTHERS: u32 = 11_000;
    let consumers = consumer("only_b", Some(&["b"]))
        + &consumer("late_b", Some(&["b"]))
        + &consumer("poll_b", Some(&["b"]));
    let gw = start(&format!("\n[limits]\nper_address_rps = 0\n{consumers}"));
    let first = post(&gw, "b", 0);
    let api = gw.api();
    std::thread::scope(|threads| {
        for thread in 0..4 {
            let api = api.clone();
            threads.spawn(move || {
                for n in (thread..OTHERS).step_by(4) {
                    post(&api, "a", n + 1);
                }
            });
        }
    });
    let second = post(&gw, "b", OTHERS + 1);

    let page = read(&gw, "only_b", "limit=100");
    assert_eq!(seqs(&page), [first]);
    let scanned = page["scanned"].as_u64().expect("scanned");
    assert!(
        (first + 10_000..second).contains(&scanned),
        "looked through {scanned}, not to {second}"
    );
    // Acking how far it looked, the next read goes on from there.
    assert_eq!(ack(&gw, "only_b", scanned), scanned);
    let page = read(&gw, "only_b", "limit=100");
    assert_eq!(seqs(&page), [second]);
    assert_eq!(page["scanned"], json!(second));

    // Past the first event, an answer at once finds none in what it may look at, and moves the
    // cursor past them (they are none of this consumer's), so that a consumer acking only what
    // it receives goes on at its next read (it got the same empty page for ever).
    assert_eq!(ack(&gw, "late_b", first), first);
    let page = read(&gw, "late_b", "");
    assert_eq!(seqs(&page), Vec::<u64>::new());
    let scanned = page["scanned"].as_u64().unwrap();
    assert!(scanned < second, "{scanned}");
    assert_eq!(page["cursor"], json!(scanned));
    assert_eq!(seqs(&read(&gw, "late_b", "")), [second]);
    // A long poll looks on by itself until it finds the wanted one.
    assert_eq!(ack(&gw, "poll_b", first), first);
    let started = Instant::now();
    let page = read(&gw, "poll_b", "wait_ms=20000");
    assert_eq!(seqs(&page), [second]);
    assert!(started.elapsed() < Duration::from_secs(10));

    // The events API's provider filter reads past any number of other events.
    let page = gw.admin_json("/v1/events?provider=b&limit=100");
    assert_eq!(
        (seqs(&page), page["next_after"].clone()),
        (vec![first, second], json!(null))
    );
}

#[test]
fn a_long_poll_answers_as_soon_as_a_wanted_event_is_committed() {
    let gw = start(&consumer("only_b", Some(&["b"])));
    let (page, elapsed, seq) = read_while_posting(&gw, "only_b", "wait_ms=5000", "b");
    assert_eq!(seqs(&page), [seq]);
    assert!(
        elapsed < Duration::from_millis(2500),
        "the long poll took {elapsed:?}"
    );
    assert!(elapsed >= Duration::from_millis(250), "{elapsed:?}");
}

#[test]
fn a_long_poll_answers_empty_when_the_wait_ends() {
    let gw = start(&consumer("only_b", Some(&["b"])));
    // Nothing at all.
    let started = Instant::now();
    let page = read(&gw, "only_b", "wait_ms=500");
    let elapsed = started.elapsed();
    assert_eq!(page, json!({"events": [], "cursor": 0, "scanned": 0}));
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(3000), "{elapsed:?}");

    // An event the consumer does not want does not end the wait.
    let (page, elapsed, _) = read_while_posting(&gw, "only_b", "wait_ms=1000", "a");
    assert_eq!(seqs(&page), Vec::<u64>::new());
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");

    // Without wait_ms, an empty read answers at once.
    let started = Instant::now();
    assert_eq!(seqs(&read(&gw, "only_b", "")), Vec::<u64>::new());
    // At once: well under the shortest wait above (500 ms), with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn bad_acks_unknown_consumers_and_missing_tokens_are_refused() {
    let gw = start(&consumer("reader", None));
    // Nothing stored yet: only 0 can be acknowledged.
    assert_eq!(ack(&gw, "reader", 0), 0);
    let beyond = ack_with(&gw, "reader", r#"{"seq":1}"#, Some(ADMIN_TOKEN));
    assert_eq!(beyond.status, 400, "{}", beyond.text());

    post(&gw, "a", 1);
    post(&gw, "a", 2);
    let beyond = ack_with(&gw, "reader", r#"{"seq":3}"#, Some(ADMIN_TOKEN));
    assert_eq!(beyond.status, 400, "{}", beyond.text());
    assert_eq!(beyond.json(), json!({"error": "bad_request"}));
    assert_eq!(
        read(&gw, "reader", "")["cursor"],
        0,
        "a refused ack moves nothing"
    );
    for body in [
        r#"{"seq":-1}"#,
        r#"{"seq":"1"}"#,
        "{}",
        "seq=1",
        r#"{"seq":1,"x":2}"#,
    ] {
        let reply = ack_with(&gw, "reader", body, Some(ADMIN_TOKEN));
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
    }
    assert_eq!(ack(&gw, "reader", 2), 2);

    let unknown = gw.admin_get("/v1/consumers/nobody/events");
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    let unknown = ack_with(&gw, "nobody", r#"{"seq":1}"#, Some(ADMIN_TOKEN));
    assert_eq!(unknown.status, 404, "{}", unknown.text());

    let anonymous = gw.admin_get_with("/v1/consumers/reader/events", None);
    assert_eq!(anonymous.status, 401);
    let wrong = gw.admin_get_with("/v1/consumers/reader/events", Some("not-the-token"));
    assert_eq!(wrong.status, 401);
    let anonymous = ack_with(&gw, "reader", r#"{"seq":1}"#, None);
    assert_eq!(anonymous.status, 401);
    let anonymous = ack_with(&gw, "nobody", r#"{"seq":1}"#, None);
    assert_eq!(
        anonymous.status, 401,
        "no token is 401 before the name is looked up"
    );

    let bad_query = gw.admin_get("/v1/consumers/reader/events?limit=x");
    assert_eq!(bad_query.status, 400);
    assert_eq!(read(&gw, "reader", "")["cursor"], 2);
}

/// A page holds at most 16 MiB of bodies (but its first event, whatever its size): a consumer's
/// page and the admin listing both held `limit` bodies, up to 1,000 of `max_body_bytes` (1 GiB
/// at the default 1 MiB, and their base64 and parsed JSON besides). The rest comes on the next
/// page: the consumer acknowledges what it got, the listing names `next_after`.
#[test]
fn a_page_holds_a_bounded_size_of_bodies_and_the_rest_comes_next() {
    let providers = provider("a", "none", &[], "") + &consumer("big", None);
    let gw = Gateway::builder()
        .server("max_body_bytes = 4194304")
        .config(&providers)
        .start();
    let api = gw.api();
    // Six bodies of 3.5 MiB: five reach 16 MiB.
    for n in 0..6u8 {
        let mut body = vec![b'x'; 3_500_000];
        body[0] = b'a' + n;
        assert_eq!(api.post("a", &[], &body).ack().0, "accepted");
    }
    let page = read(&api, "big", "limit=100");
    assert_eq!(seqs(&page), [1, 2, 3, 4, 5]);
    ack(&api, "big", 5);
    assert_eq!(seqs(&read(&api, "big", "limit=100")), [6]);

    let listing = api.admin_json("/v1/events?limit=100");
    assert_eq!(listing["events"].as_array().unwrap().len(), 5);
    assert_eq!(listing["next_after"], 5);
    let rest = api.admin_json("/v1/events?limit=100&after=5");
    assert_eq!(seqs(&rest), [6]);
    assert_eq!(rest["next_after"], Value::Null);
}

/// The gateway's peak resident memory (`VmHWM`), in KiB.
fn peak_rss_kib(gw: &Gateway) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A page's JSON bodies are shown as they came, never built into trees: 16 bodies of 1 MiB of
/// small objects took ~1.5 GiB as `serde_json::Value`s in one answer (and every read of the
/// page, after a restart too, took as much again). A number keeps its digits.
#[test]
fn a_page_of_json_bodies_is_shown_as_sent_at_a_bounded_cost() {
    let gw = start(&consumer("c", None));
    let api = gw.api();
    let objects = vec![r#"{"":0}"#; 149_000].join(",");
    for n in 0..16 {
        let body = format!(r#"{{"n":{n},"big":100000000000000000000001,"l":[{objects}]}}"#);
        assert!(body.len() <= 1 << 20);
        assert_eq!(api.post("a", &[], body.as_bytes()).ack().0, "accepted");
    }
    let before = peak_rss_kib(&gw);
    let reply = api.admin_get("/v1/consumers/c/events?limit=100");
    assert_eq!(reply.status, 200);
    let grew_mib = (peak_rss_kib(&gw) - before) / 1024;
    assert!(grew_mib < 200, "the read took {grew_mib} MiB more");
    let text = reply.text();
    assert!(text.contains(r#""big":100000000000000000000001,"#));
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(seqs(&page).len(), 16);
    assert_eq!(page["events"][3]["json"]["n"], 3);
}

/// A reload that changes a consumer's providers during its long poll: the poll looks with the
/// new ones, from the cursor again (with the old filter it answered only the event that woke
/// it, and the events of the newly wanted provider stored before it, which the old filter had
/// looked past, were acknowledged with it without ever being read).
#[test]
fn a_long_poll_overtaken_by_a_reload_reads_with_the_new_providers_from_the_cursor() {
    let gw = start(&consumer("c", Some(&["a"])));
    let api = gw.api();
    let before: Vec<u64> = (0..3).map(|n| post(&api, "b", n)).collect();
    let polling = {
        let api = gw.api();
        std::thread::spawn(move || read(&api, "c", "wait_ms=15000"))
    };
    std::thread::sleep(Duration::from_millis(500));
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let widened = config.replace("providers = [\"a\"]", "providers = [\"a\", \"b\"]");
    assert_ne!(config, widened);
    std::fs::write(gw.config_path(), widened).unwrap();
    gw.signal(nix::sys::signal::Signal::SIGHUP);
    common::wait_until(Duration::from_secs(10), "the reload", || {
        gw.logs().contains("Config reloaded.")
    });
    let woke = post(&api, "a", 9);
    let page = polling.join().unwrap();
    let mut expected = before;
    expected.push(woke);
    assert_eq!(seqs(&page), expected, "{page}");
}
