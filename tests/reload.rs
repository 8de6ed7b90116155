//! SIGHUP reloads the config while requests flow: a rotated secret and a new provider take effect
//! with no valid request refused, an invalid config is refused and the running one keeps serving,
//! a new destination starts delivering, and settings that need a restart say so.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use common::stub::Stub;
use common::{provider, sign, wait_until, Gateway};
use nix::sys::signal::Signal;

/// Replaces everything from the first `[[provider]]` on in the gateway's config file.
fn rewrite_tables(gw: &Gateway, tables: &str) {
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let head = &text[..text.find("[[provider]]").unwrap()];
    std::fs::write(gw.config_path(), format!("{head}{tables}")).unwrap();
}

/// Sends SIGHUP and waits for the reload's outcome in the logs (`what` appears once more).
fn reload(gw: &Gateway, what: &str) {
    let before = gw.logs().matches(what).count();
    gw.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), what, || {
        gw.logs().matches(what).count() > before
    });
}

#[test]
fn a_rotated_secret_and_a_new_provider_apply_under_load_with_no_valid_request_refused() {
    let (old, new) = (sign::whsec("reload-old"), sign::whsec("reload-new"));
    let sw = |secrets: &[&str]| provider("sw", "standard-webhooks", secrets, "");
    // No rate limit: four senders in a loop go past 1,000 requests a second on a fast build.
    let gw = Gateway::start(&format!("[limits]\nper_address_rps = 0\n{}", sw(&[&old])));
    let rotated = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    let refused = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (api, rotated, stop, sent, refused) = (gw.api(), &rotated, &stop, &sent, &refused);
            let (old, new) = (&old, &new);
            s.spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("evt-{thread}-{n}");
                    let body = format!(r#"{{"id":"{id}"}}"#);
                    let now_rotated = rotated.load(Ordering::Relaxed);
                    let secret = if now_rotated { new } else { old };
                    let headers = sign::standard_headers(secret, &id, body.as_bytes());
                    let mut replies = vec![("sw", api.post("sw", &headers, body.as_bytes()))];
                    if now_rotated {
                        replies.push(("added", api.post("added", &[], body.as_bytes())));
                    }
                    for (provider, reply) in replies {
                        sent.fetch_add(1, Ordering::Relaxed);
                        if reply.status != 200 {
                            let text =
                                format!("{provider} {id}: {} {}", reply.status, reply.text());
                            refused.lock().unwrap().push(text);
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300));
        // Rotation, step 1: both secrets valid, and a provider more.
        rewrite_tables(
            &gw,
            &(sw(&[&new, &old]) + &provider("added", "none", &[], "")),
        );
        reload(&gw, "Config reloaded");
        rotated.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(500));
        // Step 2: the old secret retired.
        rewrite_tables(&gw, &(sw(&[&new]) + &provider("added", "none", &[], "")));
        reload(&gw, "Config reloaded");
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let refused = refused.into_inner().unwrap();
    assert!(refused.is_empty(), "valid requests refused: {refused:?}");
    assert!(sent.load(Ordering::Relaxed) > 50, "the load ran");
    let body = br#"{"id":"late"}"#;
    let with_old = sign::standard_headers(&old, "late", body);
    assert_eq!(
        gw.post("sw", &with_old, body).status,
        401,
        "the retired secret"
    );
    let with_new = sign::standard_headers(&new, "late", body);
    assert_eq!(gw.post("sw", &with_new, body).ack().0, "accepted");
}

#[test]
fn an_invalid_config_is_refused_and_the_running_one_keeps_serving() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    rewrite_tables(
        &gw,
        "[[provider]]\nname = \"open\"\nverify = \"rot13\"\n\n[[provider]]\nname = \"x\"\nverify = \"github\"\n",
    );
    reload(&gw, "Reload refused");
    let logs = gw.logs();
    assert!(logs.contains("\"rot13\" is not a known scheme"), "{logs}");
    assert!(
        logs.contains("line "),
        "errors carry their position: {logs}"
    );
    assert!(
        logs.contains("needs at least one secret"),
        "every problem is reported, as check-config does: {logs}"
    );
    assert_eq!(
        gw.post("open", &[], b"{\"still\":\"serving\"}").ack().0,
        "accepted"
    );
    assert_eq!(
        gw.post("x", &[], b"{}").status,
        404,
        "nothing of the refused config applies"
    );
}

#[test]
fn a_destination_added_by_a_reload_receives_the_events() {
    let received = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let stub = Stub::start(move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        (200, "text/plain", b"ok".to_vec())
    });
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    assert_eq!(gw.post("open", &[], b"{\"n\":1}").ack().0, "accepted");
    rewrite_tables(
        &gw,
        &format!(
            "{}\n[[destination]]\nname = \"crm\"\nurl = \"{}/in\"\nsigning_secret = \"{}\"\n",
            provider("open", "none", &[], ""),
            stub.url,
            sign::whsec("reload-destination")
        ),
    );
    reload(&gw, "Config reloaded");
    assert!(
        gw.logs().contains("destinations_restarted=true"),
        "{}",
        gw.logs()
    );
    assert_eq!(gw.post("open", &[], b"{\"n\":2}").ack().0, "accepted");
    wait_until(Duration::from_secs(10), "both events delivered", || {
        received.load(Ordering::Relaxed) >= 2
    });
    let destinations = gw.admin_json("/v1/destinations");
    assert_eq!(destinations["destinations"][0]["name"], "crm");

    // Another provider leaves the destinations (and the retries under way in them) running.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let more = provider("another", "none", &[], "");
    std::fs::write(gw.config_path(), format!("{text}\n{more}")).unwrap();
    reload(&gw, "Config reloaded");
    let last = gw
        .logs()
        .lines()
        .rfind(|l| l.contains("Config reloaded"))
        .unwrap()
        .to_string();
    assert!(
        last.contains("providers=2 destinations_restarted=false"),
        "{last}"
    );
    // Removed by a reload, its series go (they were exported, frozen, until a restart).
    let delivered = |gw: &Gateway| {
        gw.metric(
            "hookgate_destination_deliveries_total",
            &[("destination", "crm")],
        )
    };
    assert_eq!(delivered(&gw), Some(2.0));
    let providers = provider("open", "none", &[], "") + &provider("another", "none", &[], "");
    rewrite_tables(&gw, &providers);
    reload(&gw, "Config reloaded");
    assert_eq!(delivered(&gw), None, "{}", gw.metrics_text());
}

#[test]
fn settings_that_need_a_restart_are_kept_and_named() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let text = text.replacen("[server]\n", "[server]\nworkers = 7\n", 1);
    let text = if text.contains("[store]\n") {
        text.replacen("[store]\n", "[store]\ncheckpoint_read_mb = 8\n", 1)
    } else {
        format!("{text}\n[store]\ncheckpoint_read_mb = 8\n")
    };
    std::fs::write(gw.config_path(), text).unwrap();
    reload(&gw, "Config reloaded");
    let logs = gw.logs();
    assert!(
        logs.contains("[server] workers")
            && logs.contains("[store] checkpoint_read_mb")
            && logs.contains("next restart"),
        "{logs}"
    );
    assert_eq!(gw.post("open", &[], b"{}").ack().0, "accepted");
}

/// An operator's sync cursor set while a reload swaps the pollers reaches the new poller: it
/// reached the stopping one's, and the new one, holding its cursor in memory, went on polling
/// from its own (after a 200), and wrote it over the operator's at its next move.
#[test]
fn a_sync_cursor_set_during_a_reload_reaches_the_new_poller() {
    // Each page a new item, slowly: a round is under way when the operator's cursor comes, and
    // it moves what is seen from the cursor, so its end writes the cursor.
    let pages = AtomicUsize::new(0);
    let vendor = Stub::start(move |_| {
        std::thread::sleep(Duration::from_millis(600));
        let id = format!("a-{}", pages.fetch_add(1, Ordering::SeqCst));
        let page = serde_json::json!({"data": [{"id": id}], "next": null});
        (200, "application/json", page.to_string().into_bytes())
    });
    let sync = |interval: &str| {
        format!(
            "{}[provider.sync]\nurl = \"{}/events\"\ncursor_param = \"page_token\"\nitems = \"/data\"\nitem_id = \"/id\"\nnext_pointer = \"/next\"\ninterval = \"{interval}\"\n",
            provider("feed", "none", &[], "event_id = \"json:/id\"\n"),
            vendor.url
        )
    };
    let gw = Gateway::builder()
        .config(&sync("100ms"))
        .env("HOOKGATE_TEST_RELOAD_DELAY_MS", "5000")
        .start();
    wait_until(Duration::from_secs(10), "two rounds", || {
        vendor.calls() >= 2
    });
    rewrite_tables(&gw, &sync("150ms"));
    gw.signal(Signal::SIGHUP);
    // Within the reload's 5 s: the new poller runs (its first round under way), the old one is
    // still what the admin API sees.
    wait_until(Duration::from_secs(10), "the new poller started", || {
        gw.logs().matches("Poller started.").count() >= 2
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !gw.logs().contains("Config reloaded"),
        "the reload ended before the cursor was set: the test shows nothing"
    );
    let reply = gw.admin_put(
        "/v1/providers/feed/sync/cursor",
        &serde_json::json!({"cursor": "from-operator"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    wait_until(
        Duration::from_secs(10),
        "a round from the operator's cursor",
        || {
            vendor
                .requests()
                .iter()
                .any(|request| request.path.contains("page_token=from-operator"))
        },
    );
}
