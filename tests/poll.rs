//! The gap-filling poller end to end, against a fake vendor sync API (Alcméon's shape: actions
//! from `min_action_id` on, inclusive, in `{"data": [...]}`): webhooks deliver most actions, the
//! poller fills the rest, and every action is stored exactly once, through 500s, a 429 with
//! `Retry-After`, a malformed page, a page slower than the timeout, and a restart mid-poll.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::sign::{mac, Alg};
use common::stub::{Stub, StubRequest};
use common::{provider, wait_until, Gateway};
use serde_json::{json, Value};

const SECRET: &str = "alcmeon-app-secret-0123";

/// One action as the sync API lists it.
fn action(id: u64) -> Value {
    json!({"id": id, "type": "message_received", "task": {"id": id * 10, "conversation": {"id": format!("c-{id}")}}})
}

/// The same action as the webhook notifies it: the notification id, and the action.
fn notification(id: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": id, "action": action(id)})).expect("json")
}

fn send_webhook(gw: &Gateway, id: u64) {
    send_signed(gw, &notification(id));
}

fn send_signed(gw: &Gateway, body: &[u8]) {
    let signed = [b"/hooks/alcmeon ".as_slice(), body].concat();
    let signature = hex::encode(mac(Alg::Sha256, SECRET.as_bytes(), &signed));
    let headers = vec![
        ("X-Alcmeon-Webhook-Signature".to_string(), signature),
        ("Content-Type".to_string(), "application/json".to_string()),
    ];
    let reply = gw.post("alcmeon", &headers, body);
    assert_eq!(reply.status, 200, "webhook: {}", reply.text());
}

/// A stub's answer: status, headers, body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// An actions request as the fake API saw it: when it arrived, its `min_action_id`, the status
/// answered (0 until answered).
type Request = (Instant, Option<u64>, u16);

/// What the fake API does with its `n`th request for actions (1-based).
type Fault = fn(n: usize, request: &StubRequest) -> Option<Answer>;

/// The fake vendor: actions `1..=produced`, listed from `min_action_id` on (inclusive), `limit`
/// at a time; a token endpoint that counts its calls; faults injected by request number.
struct Vendor {
    stub: Stub,
    produced: Arc<AtomicU64>,
    token_calls: Arc<AtomicUsize>,
    /// Every actions request: when it arrived, its `min_action_id`, the status answered (0 until
    /// answered).
    cursors: Arc<Mutex<Vec<Request>>>,
}

impl Vendor {
    fn start(produced: u64, token_lifetime_s: u64, fault: Fault) -> Vendor {
        let produced = Arc::new(AtomicU64::new(produced));
        let token_calls = Arc::new(AtomicUsize::new(0));
        let cursors = Arc::new(Mutex::new(Vec::new()));
        let actions = Arc::new(AtomicUsize::new(0));
        let (p, t, c) = (produced.clone(), token_calls.clone(), cursors.clone());
        let stub = Stub::start_with_headers(move |request| {
            let json_type = vec![("Content-Type".to_string(), "application/json".to_string())];
            if request.path.starts_with("/token") {
                let n = t.fetch_add(1, Ordering::SeqCst) + 1;
                let body = json!({"access_token": format!("tok-{n}"), "token_type": "bearer", "expires_in": token_lifetime_s});
                return (200, json_type, body.to_string().into_bytes());
            }
            let url = url::Url::parse(&format!("http://vendor{}", request.path)).expect("url");
            let param = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| v.parse::<u64>().ok())
            };
            let cursor = param("min_action_id");
            // Recorded on arrival; the status once answered.
            let index = {
                let mut cursors = c.lock().expect("lock");
                cursors.push((Instant::now(), cursor, 0));
                cursors.len() - 1
            };
            let answer = respond(
                request,
                &actions,
                fault,
                &p,
                &t,
                cursor,
                param("limit"),
                json_type,
            );
            c.lock().expect("lock")[index].2 = answer.0;
            answer
        });
        Vendor {
            stub,
            produced,
            token_calls,
            cursors,
        }
    }

    fn url(&self) -> String {
        self.stub.url.clone()
    }

    fn cursors(&self) -> Vec<Request> {
        self.cursors.lock().expect("lock").clone()
    }
}

#[allow(clippy::too_many_arguments)]
fn respond(
    request: &StubRequest,
    actions: &AtomicUsize,
    fault: Fault,
    produced: &AtomicU64,
    token_calls: &AtomicUsize,
    cursor: Option<u64>,
    limit: Option<u64>,
    json_type: Vec<(String, String)>,
) -> Answer {
    let authorization = request.header("authorization").unwrap_or_default();
    let bearer_ok = authorization == format!("Bearer tok-{}", token_calls.load(Ordering::SeqCst));
    let basic_ok = authorization.starts_with("Basic ");
    if !(bearer_ok || basic_ok) {
        return (401, Vec::new(), Vec::new());
    }
    let n = actions.fetch_add(1, Ordering::SeqCst) + 1;
    if let Some(answer) = fault(n, request) {
        return answer;
    }
    let from = cursor.unwrap_or(1).max(1);
    let last = produced.load(Ordering::SeqCst);
    let data: Vec<Value> = (from..=last)
        .take(limit.unwrap_or(u64::MAX) as usize)
        .map(action)
        .collect();
    (
        200,
        json_type,
        json!({ "data": data }).to_string().into_bytes(),
    )
}

fn sync_provider(vendor: &Vendor, sync: &str, auth: &str) -> String {
    let extra = format!(
        "[provider.sync]\npreset = \"alcmeon\"\nurl = \"{}/actions\"\n{sync}\n[provider.sync.auth]\n{auth}\n",
        vendor.url()
    );
    provider("alcmeon", "alcmeon", &[SECRET], &extra)
}

fn oauth(vendor: &Vendor) -> String {
    format!(
        "type = \"oauth\"\ntoken_url = \"{}/token\"\nclient_id = \"hookgate\"\nclient_secret = \"client-secret\"\n",
        vendor.url()
    )
}

const BASIC: &str = "user = \"instance-42\"\npassword = \"app-secret\"\n";

/// Stored events of `alcmeon`, counted per event id.
fn stored(gw: &Gateway) -> BTreeMap<u64, (usize, String)> {
    let mut counts: BTreeMap<u64, (usize, String)> = BTreeMap::new();
    for event in gw.all_events(Some("alcmeon")) {
        let id = event["event_id"].as_str().expect("id");
        if id.starts_with("sha256:") {
            continue; // a notification without an id: no action
        }
        let id: u64 = id.parse().expect("numeric id");
        let source = event["source"].as_str().expect("source").to_string();
        counts.entry(id).or_insert((0, source)).0 += 1;
    }
    counts
}

fn sync_status(gw: &Gateway) -> Value {
    gw.admin_json("/v1/providers/alcmeon/sync")
}

fn faults(n: usize, _: &StubRequest) -> Option<Answer> {
    match n {
        5 => Some((
            429,
            vec![("Retry-After".into(), "1".into())],
            b"slow down".to_vec(),
        )),
        9 => Some((200, Vec::new(), b"<html>maintenance</html>".to_vec())),
        13 => {
            std::thread::sleep(Duration::from_millis(1500)); // longer than the 1 s timeout
            None
        }
        n if n % 7 == 0 => Some((500, Vec::new(), b"oops".to_vec())),
        _ => None,
    }
}

#[test]
fn webhooks_and_polls_store_every_action_exactly_once() {
    let vendor = Vendor::start(0, 3600, faults);
    // This fake API answers from the cursor on, inclusive.
    let sync = "interval = \"200ms\"\ntimeout = \"1s\"\nlimit_param = \"limit\"\npage_size = 100\nmax_pages_per_round = 3\nstart_cursor = 1\ncursor_inclusive = true\n";
    let gw = Gateway::start(&sync_provider(&vendor, sync, &oauth(&vendor)));

    let started = Instant::now();
    let mut delivered = 0;
    for id in 1..=1000u64 {
        vendor.produced.store(id, Ordering::SeqCst);
        if matches!(id % 10, 3 | 6 | 9) {
            continue; // lost webhook: 30 %
        }
        send_webhook(&gw, id);
        delivered += 1;
        if id % 10 == 1 {
            send_webhook(&gw, id); // a sender's retry
        }
        if id % 50 == 0 {
            std::thread::sleep(Duration::from_millis(60));
        }
    }
    assert_eq!(delivered, 700);
    wait_until(Duration::from_secs(40), "every action stored", || {
        stored(&gw).len() == 1000
    });
    let counts = stored(&gw);
    let twice: Vec<_> = counts.iter().filter(|(_, (n, _))| *n != 1).collect();
    assert!(twice.is_empty(), "stored more than once: {twice:?}");
    assert_eq!(
        counts.keys().copied().collect::<Vec<_>>(),
        (1..=1000).collect::<Vec<_>>()
    );
    let polled = counts.values().filter(|(_, s)| s == "poll").count();
    assert!(
        polled >= 300,
        "the 300 lost webhooks came by poll: {polled}"
    );
    assert_eq!(
        gw.metric("hookgate_poll_items_new_total", &[("provider", "alcmeon")]),
        Some(polled as f64)
    );
    wait_until(
        Duration::from_secs(10),
        "the cursor past the last action",
        || sync_status(&gw)["cursor"] == "1001",
    );

    let cursors = vendor.cursors();
    // The cursor never moved back, and nothing was skipped: every request starts at or after 1.
    assert!(
        cursors.iter().all(|(_, c, _)| c.is_some()),
        "start_cursor = 1"
    );
    let after_429 = cursors
        .iter()
        .position(|(_, _, status)| *status == 429)
        .expect("a 429 was answered");
    let waited = cursors[after_429 + 1].0 - cursors[after_429].0;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After honoured: {waited:?}"
    );
    let statuses: BTreeSet<u16> = cursors.iter().map(|(_, _, s)| *s).collect();
    assert!(statuses.contains(&500), "{statuses:?}");
    for kind in ["rate_limited", "status", "malformed", "transport"] {
        assert!(
            gw.metric("hookgate_poll_errors_total", &[("kind", kind)])
                .unwrap_or(0.0)
                >= 1.0,
            "{kind} errors counted"
        );
    }
    assert!(sync_status(&gw)["last_success_at"].is_string());
    assert!(
        cursors.len() > 10,
        "many polls ({}) in {:?}",
        cursors.len(),
        started.elapsed()
    );
    assert_eq!(
        vendor.token_calls.load(Ordering::SeqCst),
        1,
        "one token per token lifetime, not per poll"
    );
}

/// Set when the page at 151 is being answered, slowly (before the answer is recorded).
static SLOW_PAGE_IN_FLIGHT: AtomicBool = AtomicBool::new(false);

fn slow_at_151(_: usize, request: &StubRequest) -> Option<Answer> {
    if request.path.contains("min_action_id=151")
        && !SLOW_PAGE_IN_FLIGHT.swap(true, Ordering::SeqCst)
    {
        std::thread::sleep(Duration::from_secs(3));
    }
    None
}

#[test]
fn a_restart_mid_poll_resumes_from_the_durable_cursor() {
    let vendor = Vendor::start(300, 3600, slow_at_151);
    let sync = "interval = \"200ms\"\ntimeout = \"10s\"\nlimit_param = \"limit\"\npage_size = 50\nmax_pages_per_round = 100\ncursor_inclusive = true\n";
    let mut gw = Gateway::start(&sync_provider(&vendor, sync, BASIC));
    wait_until(Duration::from_secs(10), "the slow page requested", || {
        SLOW_PAGE_IN_FLIGHT.load(Ordering::SeqCst)
    });
    assert_eq!(
        sync_status(&gw)["cursor"],
        "151",
        "three pages of 50 are durable"
    );
    let before = vendor.cursors().len();
    gw.restart(); // SIGKILL while the page at 151 is in flight
    wait_until(
        Duration::from_secs(10),
        "a request after the restart",
        || vendor.cursors().len() > before,
    );
    let (_, first, _) = vendor.cursors()[before];
    assert_eq!(first, Some(151), "resumed from the durable cursor");
    wait_until(Duration::from_secs(20), "all 300 actions", || {
        stored(&gw).len() == 300
    });
    assert!(stored(&gw).values().all(|(n, _)| *n == 1));
    let first_request = vendor.cursors()[0].1;
    assert_eq!(first_request, None, "nothing received: from the beginning");
}

fn no_faults(_: usize, _: &StubRequest) -> Option<Answer> {
    None
}

/// The preset takes `min_action_id` as exclusive (the next cursor is the highest id): against
/// an API that answers from the cursor on, the action at the cursor comes back with each page
/// and is not committed again; every action is stored once, none skipped.
#[test]
fn the_preset_s_exclusive_cursor_against_an_inclusive_api_stores_every_action_once() {
    let vendor = Vendor::start(250, 3600, no_faults);
    let sync = "interval = \"200ms\"\nlimit_param = \"limit\"\npage_size = 100\n";
    let gw = Gateway::start(&sync_provider(&vendor, sync, BASIC));
    wait_until(Duration::from_secs(20), "every action", || {
        stored(&gw).len() == 250
    });
    wait_until(Duration::from_secs(10), "the cursor at the last", || {
        sync_status(&gw)["cursor"] == "250"
    });
    assert!(stored(&gw).values().all(|(n, _)| *n == 1));
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
}

/// A page of 5,000 actions with no page size (the preset's, after an outage): the ids seen at
/// the cursor no longer fit sled's largest value (24 KiB) whole; the newest are kept, and the
/// cursor moves on (every write of it failed, and the poller fetched that page again for good).
#[test]
fn a_page_of_thousands_of_items_moves_the_cursor() {
    let vendor = Vendor::start(5_000, 3600, no_faults);
    let sync = "interval = \"200ms\"\nstart_cursor = \"0\"\n";
    let gw = Gateway::start(&sync_provider(&vendor, sync, BASIC));
    wait_until(Duration::from_secs(60), "every action", || {
        stored(&gw).len() == 5_000
    });
    wait_until(Duration::from_secs(10), "the cursor at the last", || {
        sync_status(&gw)["cursor"] == "5000"
    });
    let status = sync_status(&gw);
    assert_eq!(status["last_error"], Value::Null, "{status}");
    assert!(stored(&gw).values().all(|(n, _)| *n == 1));
}

/// A page over `max_page_bytes` fails its rounds as `page_too_large`, named; raised, the page is
/// read (the 32 MiB bound was fixed: a backlog of an API with no page size was never read).
#[test]
fn a_page_over_max_page_bytes_is_named_and_read_once_it_is_raised() {
    let vendor = Stub::start(|_| {
        let pad = "x".repeat(2 << 20);
        let page = json!({"data": [{"id": 1, "pad": pad}]});
        (200, "application/json", page.to_string().into_bytes())
    });
    let sync = |most: u32| {
        format!(
            "[provider.sync]\nurl = \"{}/actions\"\ncursor_param = \"after\"\nitems = \"/data\"\nitem_id = \"/id\"\ninterval = \"200ms\"\nstart_cursor = 0\nmax_page_bytes = {most}\n",
            vendor.url
        )
    };
    let mut gw = Gateway::start(&provider("feed", "none", &[], &sync(1 << 20)));
    let feed = [("provider", "feed"), ("kind", "page_too_large")];
    wait_until(Duration::from_secs(10), "a page too large", || {
        gw.metric("hookgate_poll_errors_total", &feed) >= Some(1.0)
    });
    let status = gw.admin_json("/v1/providers/feed/sync");
    assert!(
        status["last_error"].to_string().contains("max_page_bytes"),
        "{status}"
    );
    assert!(gw.all_events(Some("feed")).is_empty());
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let raised = config.replace("max_page_bytes = 1048576", "max_page_bytes = 4194304");
    std::fs::write(gw.config_path(), raised).unwrap();
    gw.restart();
    wait_until(Duration::from_secs(10), "the page read", || {
        gw.all_events(Some("feed")).len() == 1
    });
}

/// Gives `gw`'s `alcmeon` provider the sync API of `vendor` (the preset with `sync`'s lines),
/// and restarts it.
fn add_sync_and_restart(gw: &mut Gateway, vendor: &Vendor, sync: &str) {
    let config = std::fs::read_to_string(gw.config_path()).expect("config");
    let extra = format!(
        "[provider.sync]\npreset = \"alcmeon\"\nurl = \"{}/actions\"\n{sync}\n[provider.sync.auth]\n{BASIC}\n",
        vendor.url()
    );
    std::fs::write(gw.config_path(), format!("{config}\n{extra}")).expect("write config");
    gw.restart();
}

/// Under the preset's exclusive cursor, the first cursor is the highest webhook id itself: an
/// API that answers from it on gives that action again, which is not committed again (a
/// duplicate while its dedup key lived, then stored and delivered a second time).
#[test]
fn the_first_exclusive_cursor_does_not_commit_the_highest_webhook_again() {
    let vendor = Vendor::start(15, 3600, no_faults);
    let mut gw = Gateway::start(&provider("alcmeon", "alcmeon", &[SECRET], ""));
    for id in [5, 12] {
        send_webhook(&gw, id);
    }
    add_sync_and_restart(&mut gw, &vendor, "interval = \"1h\"\n");
    wait_until(Duration::from_secs(10), "the first round", || {
        stored(&gw).len() == 5
    });
    assert_eq!(vendor.cursors()[0].1, Some(12), "the highest id received");
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
}

#[test]
fn the_first_cursor_follows_the_highest_webhook_id_and_poll_now_runs_a_round() {
    let vendor = Vendor::start(20, 3600, no_faults);
    let mut gw = Gateway::start(&provider("alcmeon", "alcmeon", &[SECRET], ""));
    for id in [5, 12, 9] {
        send_webhook(&gw, id);
    }
    // A notification without an id is stored under its body's hash, which is no action id.
    send_signed(
        &gw,
        &serde_json::to_vec(&json!({"type": "ping"})).expect("json"),
    );
    // The same provider, now with its sync API.
    let sync =
        "interval = \"1h\"\nlimit_param = \"limit\"\npage_size = 100\ncursor_inclusive = true\n";
    add_sync_and_restart(&mut gw, &vendor, sync);
    wait_until(Duration::from_secs(10), "the first round", || {
        stored(&gw).len() == 11
    });
    assert_eq!(
        vendor.cursors()[0].1,
        Some(13),
        "just after the highest id received"
    );
    let ids: Vec<u64> = stored(&gw).keys().copied().collect();
    assert_eq!(ids, [5, 9, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    assert_eq!(gw.all_events(Some("alcmeon")).len(), 12, "and the ping");

    vendor.produced.store(25, Ordering::SeqCst);
    let reply = gw.admin_post("/v1/providers/alcmeon/sync", &json!({}));
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert_eq!(
        (body["finished"].clone(), body["cursor"].clone()),
        (json!(true), json!("26"))
    );
    assert_eq!(stored(&gw).len(), 16, "the round ran before the answer");
    assert_eq!(gw.admin_get("/v1/providers/nope/sync").status, 404);
    assert_eq!(
        gw.admin_get_with("/v1/providers/alcmeon/sync", None).status,
        401
    );
}

/// In `next_pointer` mode a cursor is the API's page token: the first round starts at the
/// first page, not at a webhook's event id (sent as `page_token=evt-9`, which the API refused
/// or misread on every round, for good).
#[test]
fn in_next_pointer_mode_the_first_round_asks_for_the_first_page_whatever_webhooks_came() {
    let vendor = Stub::start(|request| {
        let page = if request.path.contains("page_token") {
            json!({"data": [], "next": null})
        } else {
            json!({"data": [{"id": "evt-1"}], "next": null})
        };
        (200, "application/json", page.to_string().into_bytes())
    });
    let mut gw = Gateway::start(&provider("feed", "none", &[], "event_id = \"json:/id\"\n"));
    let body = br#"{"id":"evt-9"}"#;
    assert_eq!(gw.post("feed", &[], body).ack().0, "accepted");
    let config = std::fs::read_to_string(gw.config_path()).expect("config");
    let sync = format!(
        "[provider.sync]\nurl = \"{}/events\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"1h\"\n",
        vendor.url
    );
    std::fs::write(gw.config_path(), format!("{config}\n{sync}")).expect("write config");
    gw.restart();
    wait_until(Duration::from_secs(10), "the first page's item", || {
        gw.all_events(Some("feed")).len() == 2
    });
    let paths: Vec<String> = vendor.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, ["/events"], "{paths:?}");
}

/// A next page's URL kept as the cursor is shown as every URL is, by the sync API and the
/// console: made whole from a sync URL holding a user and password, it was shown with them (and
/// a key a vendor's next link repeats in its query with it).
#[test]
fn a_cursor_that_is_a_url_is_shown_without_its_credentials() {
    let vendor = Stub::start(|request| {
        let page = if request.path.contains("page=2") {
            json!({"data": [], "next": null})
        } else {
            json!({"data": [{"id": "a-1"}], "next": "/actions?page=2&api_key=LINKED-SECRET"})
        };
        (200, "application/json", page.to_string().into_bytes())
    });
    let url = vendor
        .url
        .replacen("http://", "http://svc:hunter2-password@", 1);
    let sync = format!(
        "[provider.sync]\nurl = \"{url}/actions?api_key=SUPERSECRETKEY\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"1h\"\n"
    );
    let gw = Gateway::start(&provider("feed", "none", &[], &sync));
    let status = || gw.admin_json("/v1/providers/feed/sync");
    wait_until(Duration::from_secs(10), "the cursor", || {
        status()["cursor"]
            .as_str()
            .is_some_and(|c| c.contains("/actions?page="))
    });
    // No number: no series (the first round's 0, from the beginning, stayed).
    let feed = [("provider", "feed")];
    assert_eq!(gw.metric("hookgate_poll_cursor", &feed), None);
    let mut console = common::console::ConsoleClient::new(&gw.api().admin_url);
    console.sign_in();
    let page = console.get("/console/consumers").text();
    assert!(page.contains("/actions?page="), "{page}");
    for shown in [
        status().to_string(),
        gw.admin_json("/v1/pollers").to_string(),
        page,
    ] {
        for secret in ["hunter2", "SUPERSECRETKEY", "LINKED-SECRET"] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
    }
}

fn always_down(_: usize, _: &StubRequest) -> Option<Answer> {
    Some((500, Vec::new(), b"down".to_vec()))
}

/// A sync API down since the start has its age exported, and a reload does not reset it (the
/// series appeared only after a first success, and went at each reload: the alert on it went
/// quiet while the vendor stayed down).
#[test]
fn a_sync_api_down_from_the_start_shows_a_growing_age_across_a_reload() {
    let vendor = Vendor::start(10, 3600, always_down);
    let gw = Gateway::start(&sync_provider(&vendor, "interval = \"100ms\"\n", BASIC));
    let age = || {
        gw.metric(
            "hookgate_poll_seconds_since_success",
            &[("provider", "alcmeon")],
        )
    };
    wait_until(Duration::from_secs(10), "an age of a second", || {
        age().is_some_and(|age| age >= 1.0)
    });
    let before = age().unwrap();
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let changed = text.replace("interval = \"100ms\"", "interval = \"200ms\"");
    assert_ne!(text, changed);
    std::fs::write(gw.config_path(), changed).unwrap();
    let reloads = || gw.logs().matches("Config reloaded.").count();
    let seen = reloads();
    gw.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the reload", || reloads() > seen);
    // The new poller exports it once it runs, a moment after the line.
    wait_until(Duration::from_secs(10), "the age after the reload", || {
        age().is_some()
    });
    let after = age().unwrap();
    assert!(after >= before, "{after} < {before}: reset by the reload");
    assert_eq!(sync_status(&gw)["last_success_ms"], Value::Null);
}

/// A credential in the token URL's query stays out of the log and the sync API's view when the
/// token request fails (the error named the URL whole).
#[test]
fn a_failed_token_request_does_not_show_the_token_url() {
    let vendor = Vendor::start(10, 3600, no_faults);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let auth = format!(
        "type = \"oauth\"\ntoken_url = \"http://127.0.0.1:{port}/token?key=token-credential\"\nclient_id = \"hookgate\"\nclient_secret = \"client-secret\"\n"
    );
    let gw = Gateway::start(&sync_provider(&vendor, "interval = \"100ms\"\n", &auth));
    let status = || gw.admin_json("/v1/providers/alcmeon/sync");
    wait_until(
        Duration::from_secs(10),
        "the token request's failure",
        || {
            status()["last_error"]["message"]
                .as_str()
                .is_some_and(|message| message.contains("token request failed"))
        },
    );
    assert!(
        !status().to_string().contains("token-credential"),
        "{}",
        status()
    );
    assert!(!gw.logs().contains("token-credential"), "{}", gw.logs());
}

/// The last page of a next_pointer chain is fetched again every round; its items are committed
/// once. Committed every round, each was a duplicate only while its dedup key lived (7 days by
/// default), then stored and delivered again, every dedup_window, for as long as the page
/// stayed the last (the duplicates counter shows each such commit).
#[test]
fn a_last_page_fetched_every_round_commits_its_items_once() {
    // The last page grows by one item after five rounds.
    let rounds = Arc::new(AtomicUsize::new(0));
    let counted = rounds.clone();
    let vendor = Stub::start(move |_| {
        let ids = if counted.fetch_add(1, Ordering::SeqCst) < 5 {
            vec!["x1", "x2"]
        } else {
            vec!["x1", "x2", "x3"]
        };
        let items: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
        let page = json!({"data": items, "next": null});
        (200, "application/json", page.to_string().into_bytes())
    });
    let sync = format!(
        "[provider.sync]\nurl = \"{}/events\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"100ms\"\n",
        vendor.url
    );
    let mut gw =
        Gateway::start(&(provider("feed", "none", &[], "event_id = \"json:/id\"\n") + &sync));
    wait_until(Duration::from_secs(10), "ten rounds", || {
        vendor.calls() >= 10
    });
    assert_eq!(gw.metric("hookgate_events_stored_total", &[]), Some(3.0));
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
    // What was seen from the cursor is durable: a restart commits nothing again either.
    gw.restart();
    let calls = vendor.calls();
    wait_until(Duration::from_secs(10), "ten more rounds", || {
        vendor.calls() >= calls + 10
    });
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
    assert_eq!(gw.all_events(Some("feed")).len(), 3);
}

/// A last page of 1,000 UUIDs, fetched again every round, is remembered whole: its ids, kept as
/// they were, did not fit sled's 24 KiB cursor (about 600 did), and the rest were committed
/// every round, stored and delivered again once their dedup keys expired.
#[test]
fn a_last_page_of_a_thousand_uuids_commits_its_items_once() {
    let items: Vec<Value> = (0..1_000)
        .map(|n| json!({ "id": format!("{n:08x}-6b1c-4f0e-9a3d-2c5e8f7a1b4d") }))
        .collect();
    let page = json!({"data": items, "next": null})
        .to_string()
        .into_bytes();
    let vendor = Stub::start(move |_| (200, "application/json", page.clone()));
    let sync = format!(
        "[provider.sync]\nurl = \"{}/events\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"100ms\"\n",
        vendor.url
    );
    let gw = Gateway::start(&(provider("feed", "none", &[], "event_id = \"json:/id\"\n") + &sync));
    wait_until(Duration::from_secs(20), "five rounds", || {
        vendor.calls() >= 5
    });
    assert_eq!(gw.metric("hookgate_events_stored_total", &[]), Some(1000.0));
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
}

/// An item without an id is skipped, said (log, `kind="item_without_id"`, the last error), and
/// the others are stored: it failed the page as malformed, round after round, and the poller
/// never got past it.
#[test]
fn an_item_without_an_id_is_skipped_and_said() {
    let page = json!({"data": [{"id": "a-1"}, {"id": null}, {"id": "a-3"}], "next": null});
    let page = page.to_string().into_bytes();
    let vendor = Stub::start(move |_| (200, "application/json", page.clone()));
    let sync = format!(
        "[provider.sync]\nurl = \"{}/events\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"100ms\"\n",
        vendor.url
    );
    let gw = Gateway::start(&(provider("feed", "none", &[], "event_id = \"json:/id\"\n") + &sync));
    wait_until(Duration::from_secs(10), "two items stored", || {
        gw.all_events(Some("feed")).len() == 2
    });
    let skipped = gw.metric(
        "hookgate_poll_errors_total",
        &[("provider", "feed"), ("kind", "item_without_id")],
    );
    assert!(skipped >= Some(1.0), "{skipped:?}");
    let status = gw.admin_json("/v1/providers/feed/sync");
    let error = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("1 item(s) skipped"), "{status}");
    wait_until(Duration::from_secs(5), "the skip logged", || {
        gw.logs().contains("Polled items without an id")
    });
}

/// An operator sets the cursor (`PUT /v1/providers/{name}/sync/cursor`): the next round polls
/// from it, a number, a text or `null` (the beginning). Once a cursor was stored nothing moved it
/// but polling (sync.md told operators to set `start_cursor` back, which the stored cursor
/// overrode), so a cursor that had gone wrong stayed wrong.
#[test]
fn an_operator_sets_the_cursor_and_the_next_round_polls_from_it() {
    let vendor = Vendor::start(20, 3600, no_faults);
    let gw = Gateway::start(&sync_provider(&vendor, "interval = \"1h\"\n", BASIC));
    wait_until(Duration::from_secs(10), "every action", || {
        stored(&gw).len() == 20
    });
    let path = "/v1/providers/alcmeon/sync/cursor";
    let set = gw.admin_put(path, &json!({"cursor": 5}));
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(set.json()["cursor"], "5");
    let before = vendor.cursors().len();
    let polled = gw.admin_post("/v1/providers/alcmeon/sync", &json!({}));
    assert_eq!(polled.status, 200, "{}", polled.text());
    assert_eq!(
        vendor.cursors()[before].1,
        Some(5),
        "{:?}",
        vendor.cursors()
    );
    assert_eq!(stored(&gw).len(), 20, "the items from 5 on are duplicates");

    assert_eq!(gw.admin_put(path, &json!({"cursor": null})).status, 200);
    let before = vendor.cursors().len();
    gw.admin_post("/v1/providers/alcmeon/sync", &json!({}));
    assert_eq!(vendor.cursors()[before].1, None, "{:?}", vendor.cursors());

    for bad in [
        json!({"cursor": true}),
        json!({"cursor": ""}),
        json!({"at": 3}),
        json!({}),
    ] {
        assert_eq!(gw.admin_put(path, &bad).status, 400, "{bad}");
    }
    assert_eq!(
        gw.admin_put("/v1/providers/nope/sync/cursor", &json!({"cursor": 1}))
            .status,
        404
    );
}

#[test]
fn a_short_lived_token_is_fetched_once_per_lifetime() {
    let vendor = Vendor::start(10, 2, no_faults);
    let sync = "interval = \"100ms\"\n";
    let auth = oauth(&vendor) + "refresh_before = \"1s\"\n";
    let gw = Gateway::start(&sync_provider(&vendor, sync, &auth));
    std::thread::sleep(Duration::from_millis(3500));
    let polls = vendor.cursors().len();
    let tokens = vendor.token_calls.load(Ordering::SeqCst);
    assert!(polls >= 15, "polls: {polls}");
    // Renewed every second (2 s lifetime, 1 s ahead): about 4 in 3.5 s, never one per poll.
    assert!(
        (2..=6).contains(&tokens),
        "token calls: {tokens} for {polls} polls"
    );
    assert!(vendor.cursors().iter().all(|(_, _, status)| *status == 200));
    assert_eq!(stored(&gw).len(), 10);
}

#[test]
fn a_token_said_to_live_forever_is_used_and_the_gateway_lives_on() {
    // `expires_in` is a number of seconds: 2^64 - 1 is a valid answer, and was an overflow.
    let vendor = Vendor::start(10, u64::MAX, no_faults);
    let sync = "interval = \"100ms\"\n";
    let gw = Gateway::start(&sync_provider(&vendor, sync, &oauth(&vendor)));
    wait_until(
        Duration::from_secs(10),
        "every action and more polls",
        || stored(&gw).len() == 10 && vendor.cursors().len() >= 5,
    );
    assert_eq!(vendor.token_calls.load(Ordering::SeqCst), 1);
    assert!(vendor.cursors().iter().all(|(_, _, status)| *status == 200));
    assert_eq!(gw.admin_get("/healthz").status, 200, "still serving");
}

#[test]
fn a_next_url_on_another_origin_is_not_followed() {
    // Another server on loopback: the page chain must never reach it.
    let elsewhere = Stub::start(|_| (200, "application/json", br#"{"data":[]}"#.to_vec()));
    let target = format!("{}/events?page=3", elsewhere.url);
    let vendor = Stub::start(move |request| {
        // Page 1 links to page 2 on the same origin, page 2 to another server.
        let own = format!("http://{}", request.header("host").expect("a Host header"));
        let (ids, next) = if request.path.contains("page=2") {
            (["a-3"], target.clone())
        } else {
            (["a-1"], format!("{own}/events?page=2"))
        };
        let page = json!({"data": ids.map(|id| json!({"id": id})), "next": next});
        (200, "application/json", page.to_string().into_bytes())
    });
    let sync = format!(
        "[provider.sync]\nurl = \"{}/events?access_key=query-credential\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"200ms\"\n[provider.sync.auth]\ntype = \"header\"\nname = \"X-Api-Key\"\nvalue = \"vendor-credential\"\n",
        vendor.url
    );
    let gw = Gateway::start(&provider("feed", "none", &[], &sync));
    let cross_origin = || {
        gw.metric(
            "hookgate_poll_errors_total",
            &[("provider", "feed"), ("kind", "cross_origin")],
        )
        .unwrap_or(0.0)
    };
    wait_until(
        Duration::from_secs(10),
        "the chain to stop, three times",
        || cross_origin() >= 3.0 || elsewhere.calls() > 0,
    );
    assert_eq!(
        elsewhere.calls(),
        0,
        "the other origin was sent: {:?}",
        elsewhere.requests()
    );
    // The same-origin page was followed, with the credential, and its items are stored.
    let paths: Vec<String> = vendor.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p.contains("page=2")), "{paths:?}");
    assert!(vendor
        .requests()
        .iter()
        .all(|r| r.header("x-api-key") == Some("vendor-credential")));
    let ids: BTreeSet<String> = gw
        .all_events(Some("feed"))
        .iter()
        .map(|e| e["event_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids, BTreeSet::from(["a-1".to_string(), "a-3".to_string()]));
    // The refusal shows where poller errors do, naming the origins only; the cursor stays on
    // the last page followed.
    let status = gw.admin_json("/v1/providers/feed/sync");
    // A credential in the sync URL's query is not shown, nor logged.
    assert_eq!(
        status["url"],
        format!("{}/events?access_key=***", vendor.url)
    );
    assert!(!gw.logs().contains("query-credential"), "{}", gw.logs());
    let error = status["last_error"]["message"].as_str().unwrap_or_default();
    assert!(
        error.contains(&elsewhere.url)
            && error.contains("not followed")
            && !error.contains("page=3"),
        "{status}"
    );
    // (Shown as every URL is: its query's values masked.)
    assert!(
        status["cursor"]
            .as_str()
            .unwrap_or_default()
            .ends_with("/events?page=***"),
        "{status}"
    );
    // Page 2, fetched again each round, had its items committed again each time (duplicates
    // while their dedup keys lived, then stored and delivered again): they are seen from it.
    assert_eq!(gw.metric("hookgate_duplicates_total", &[]), Some(0.0));
}
