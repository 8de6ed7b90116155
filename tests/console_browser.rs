//! The console in a real headless Chromium, through WebDriver: sign in, find an event by id,
//! open it and see it dead at a downstream that fails, replay it once the downstream is fixed
//! and see it delivered, pause and resume the destination (and that a paused one sends
//! nothing); and a form on another origin cannot pause it. With `HOOKGATE_CONSOLE_SCREENSHOTS`
//! set to a directory, it also takes the pictures in docs/console/.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::browser::Browser;
use common::stub::Stub;
use common::{provider, sign, wait_until, Gateway, ADMIN_TOKEN};

const WAIT: Duration = Duration::from_secs(10);
const GITHUB_SECRET: &str = "browser-github-secret";

fn state(gateway: &Gateway, seq: u64) -> String {
    gateway.event(seq).unwrap()["deliveries"]["crm"]
        .as_str()
        .unwrap()
        .to_string()
}

fn paused(gateway: &Gateway) -> bool {
    gateway.admin_json("/v1/destinations")["destinations"][0]["paused"]
        .as_bool()
        .unwrap()
}

#[test]
fn an_operator_finds_replays_pauses_and_resumes_in_a_browser() {
    let healthy = Arc::new(AtomicBool::new(false));
    // The console's address is known only once the gateway runs: the stub reads it then.
    let console_url = Arc::new(std::sync::OnceLock::<String>::new());
    let url_for_stub = console_url.clone();
    let stub = {
        let healthy = healthy.clone();
        Stub::start(move |request| {
            let console = url_for_stub.get().cloned().unwrap_or_default();
            downstream_answer(&healthy, &console, request)
        })
    };
    let sync = format!(
        "[provider.sync]\nurl = \"{}/actions\"\ncursor_param = \"after\"\nitems = \"/data\"\nitem_id = \"/id\"\ninterval = \"2s\"\n",
        stub.url
    );
    let config = provider("shop", "none", &[], "event_id = \"json:/id\"")
        + &provider("github", "github", &[GITHUB_SECRET], "")
        + &provider("tickets", "none", &[], &sync)
        + "\n[[consumer]]\nname = \"warehouse\"\nproviders = [\"shop\"]\n"
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nsigning_secret = \"whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x\"\ntimeout = \"1s\"\nretry_delays = [\"50ms\"]\n",
            stub.url
        );
    let gateway = Gateway::start(&config);
    console_url.set(gateway.admin_url.clone()).unwrap();

    // Some traffic for the overview, and the event the operator will look for.
    let order = |id: &str, amount: u32| {
        format!(r#"{{"id":"{id}","customer":"ACME","amount":{amount}}}"#).into_bytes()
    };
    gateway.post("shop", &[], &order("ord-1001", 40)).ack();
    gateway.post("shop", &[], &order("ord-1002", 41)).ack();
    let seq = gateway.post("shop", &[], &order("ord-1003", 42)).ack().1;
    let retry = gateway.post("shop", &[], &order("ord-1001", 40)).ack();
    assert_eq!(retry.0, "duplicate");
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let mut headers = sign::github_headers(GITHUB_SECRET, "gh-1", body);
    gateway.post("github", &headers, body).ack();
    headers[0].1 = sign::github_signature("wrong", body);
    assert_eq!(gateway.post("github", &headers, body).status, 401);
    wait_until(WAIT, "ord-1003 dead at the failing downstream", || {
        state(&gateway, seq) == "dead"
    });

    let browser = Browser::start(&gateway.admin_url, 1280, 1000);

    // Sign in: the console sends a browser without a session to the sign-in form.
    browser.goto("/console");
    assert_eq!(browser.path(), "/console/sign-in");
    browser.screenshot("sign-in");
    browser.type_into("#token", ADMIN_TOKEN);
    browser.click("form.signin button");
    assert_eq!(browser.path(), "/console");
    assert_eq!(browser.text("h1").as_deref(), Some("Overview"));
    browser.screenshot("overview");

    // Find the event by its id, and open it: dead at crm.
    browser.goto("/console/events");
    browser.type_into("input[name=event_id]", "ord-1003");
    browser.click("form.search button");
    assert!(
        browser.path().starts_with("/console/events?"),
        "{}",
        browser.path()
    );
    browser.screenshot("events");
    browser.click(&format!("a[href='/console/events/{seq}']"));
    assert_eq!(browser.text("h1"), Some(format!("Event {seq}")));
    assert_eq!(browser.text("#event-id").as_deref(), Some("ord-1003"));
    assert_eq!(browser.text("#delivery-crm").as_deref(), Some("dead"));
    assert!(browser
        .text("#body")
        .unwrap()
        .contains(r#""customer": "ACME""#));
    browser.screenshot("event");

    // The downstream is fixed; the operator replays the dead event from the destinations page.
    healthy.store(true, Ordering::SeqCst);
    browser.goto("/console/destinations");
    browser.screenshot("destinations");
    browser.click(&format!("#replay-crm-{seq}"));
    assert_eq!(
        browser.text("p.notice").as_deref(),
        Some("1 event queued for delivery again.")
    );
    browser.goto(&format!("/console/events/{seq}"));
    browser.wait_for_text("#delivery-crm", "delivered", WAIT);
    assert_eq!(state(&gateway, seq), "delivered");
    let delivered = |id: &str| {
        stub.requests()
            .iter()
            .filter(|r| r.path == "/ingest" && r.header("webhook-id") == Some(id))
            .count()
    };
    assert!(delivered("shop:ord-1003") >= 2, "failed, then replayed");

    // Pause: an event stored meanwhile waits; resume: it goes.
    browser.goto("/console/destinations");
    browser.click("#pause-crm");
    assert_eq!(browser.text("#state-crm").as_deref(), Some("paused"));
    assert!(paused(&gateway));
    let deliveries = || {
        stub.requests()
            .iter()
            .filter(|r| r.path == "/ingest")
            .count()
    };
    let before = deliveries();
    let held = gateway.post("shop", &[], br#"{"id":"ord-2001"}"#).ack().1;
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(state(&gateway, held), "pending");
    assert_eq!(deliveries(), before, "a paused destination sends nothing");
    browser.click("#resume-crm");
    assert_eq!(browser.text("#state-crm").as_deref(), Some("running"));
    assert!(!paused(&gateway));
    wait_until(WAIT, "the held event delivered", || {
        state(&gateway, held) == "delivered"
    });

    browser.goto("/console/consumers");
    assert_eq!(browser.text("h1").as_deref(), Some("Consumers & pollers"));
    assert!(browser.text("table").unwrap().contains("warehouse"));
    browser.screenshot("consumers");

    // Another origin's form, submitted by the signed-in browser, is refused.
    browser.goto(&format!("{}/elsewhere", stub.url));
    browser.click("#go");
    assert_eq!(browser.text("h1").as_deref(), Some("Forbidden"));
    // Refused for where it came from (the guessed token is not even looked at).
    assert_eq!(
        browser.text("p.notice").as_deref(),
        Some("Refused: the request comes from another site.")
    );
    assert!(!paused(&gateway), "the cross-origin form paused nothing");

    // On a phone's width the overview still reads.
    browser.resize(390, 844);
    browser.goto("/console");
    assert_eq!(browser.text("h1").as_deref(), Some("Overview"));
    browser.screenshot("overview-phone");
    browser.goto(&format!("/console/events/{seq}"));
    assert_eq!(browser.text("#delivery-crm").as_deref(), Some("delivered"));
    browser.screenshot("event-phone");
}

/// The downstream: 500 until `healthy`, then 200. And at `/elsewhere`, a page on the stub's own
/// origin with a form that posts to the console (what another site on the same machine could
/// serve), with a guessed CSRF token.
fn downstream_answer(
    healthy: &AtomicBool,
    console: &str,
    request: &common::stub::StubRequest,
) -> common::stub::StubAnswer {
    if request.path.starts_with("/actions") {
        let page = br#"{"data":[{"id":101,"subject":"Where is my order?"},{"id":102,"subject":"Refund"}]}"#;
        return (200, "application/json", page.to_vec());
    }
    if request.path == "/elsewhere" {
        let page = format!(
            r#"<!doctype html><title>elsewhere</title>
<form method="post" action="{console}/console/destinations/crm/pause">
<input type="hidden" name="csrf" value="guessed"><button id="go">Win a prize</button></form>"#
        );
        return (200, "text/html", page.into_bytes());
    }
    if healthy.load(Ordering::SeqCst) {
        (200, "text/plain", b"ok".to_vec())
    } else {
        (500, "text/plain", b"downstream is down".to_vec())
    }
}
