//! The operator's console over plain HTTP (the browser tests are in tests/console_browser.rs):
//! it exists only on the admin listener; sign-in exchanges the admin token for a strict session
//! cookie; a form from another origin or without the session's CSRF token changes nothing; the
//! overview counts what the public listener answered; search and event pages read the store.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::console::{csrf_in, ConsoleClient};
use common::stub::Stub;
use common::{provider, sign, toml_str, Gateway, ADMIN_TOKEN};

const GITHUB_SECRET: &str = "console-github-secret";

fn config(downstream: &str) -> String {
    provider("p", "none", &[], "event_id = \"json:/id\"")
        + &provider("gh", "github", &[GITHUB_SECRET], "")
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{downstream}/ingest\"\nsigning_secret = \"whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x\"\n"
        )
}

fn start() -> (Gateway, Stub) {
    let stub = Stub::start(|_| (200, "text/plain", b"ok".to_vec()));
    let gateway = Gateway::start(&config(&stub.url));
    (gateway, stub)
}

fn paused(gateway: &Gateway) -> bool {
    gateway.admin_json("/v1/destinations")["destinations"][0]["paused"]
        .as_bool()
        .unwrap()
}

#[test]
fn the_console_is_served_on_the_admin_listener_only() {
    let (gateway, _stub) = start();
    let public = ConsoleClient::new(&gateway.public_url);
    for path in ["/console", "/console/sign-in", "/console/style.css"] {
        assert_eq!(public.get(path).status, 404, "public GET {path}");
    }
    let mut public = public;
    assert_eq!(public.sign_in_with(ADMIN_TOKEN).status, 404);
    assert!(public.cookie.is_none());

    let admin = ConsoleClient::new(&gateway.admin_url);
    assert_eq!(admin.get("/console/style.css").status, 200);
    let sign_in = admin.get("/console/sign-in");
    assert_eq!(sign_in.status, 200);
    assert!(sign_in.text().contains(r#"name="token""#));
}

#[test]
fn pages_need_a_session_opened_with_the_admin_token() {
    let (gateway, _stub) = start();
    let mut console = ConsoleClient::new(&gateway.admin_url);
    for path in [
        "/console",
        "/console/events",
        "/console/events/1",
        "/console/destinations",
        "/console/consumers",
    ] {
        let reply = console.get(path);
        assert_eq!(reply.status, 303, "{path}");
        assert_eq!(reply.header("location"), Some("/console/sign-in"), "{path}");
    }
    // The admin API's bearer token does not open the console, and a made-up cookie neither.
    console.cookie = Some(format!("hookgate_console={ADMIN_TOKEN}"));
    assert_eq!(console.get("/console").status, 303);
    console.cookie = None;

    let wrong = console.sign_in_with("not-the-token");
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.text().contains("not the admin token"));

    let right = console.sign_in_with(ADMIN_TOKEN);
    assert_eq!(right.status, 303);
    assert_eq!(right.header("location"), Some("/console"));
    let set_cookie = right.header("set-cookie").unwrap();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    assert!(
        !set_cookie.contains(ADMIN_TOKEN),
        "the cookie is not the token"
    );
    let overview = console.get("/console");
    assert_eq!(overview.status, 200, "{}", overview.text());
    assert!(overview.text().contains("<h1>Overview</h1>"));
    let policy = overview.header("content-security-policy").unwrap();
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert_eq!(overview.header("x-frame-options"), Some("DENY"));
    assert_eq!(overview.header("cache-control"), Some("no-store"));
    // A cookie of the same name planted by another page on this host (cookies are not kept
    // apart by port; a longer path comes first) does not hide the session's own.
    let own = console.cookie.clone().unwrap();
    console.cookie = Some(format!("hookgate_console=planted; {own}"));
    assert_eq!(console.get("/console/events").status, 200);
    console.cookie = Some(own);

    // Signing out ends the session: the same cookie no longer opens a page.
    assert_eq!(console.post_form("/console/sign-out", &[]).status, 303);
    assert_eq!(console.get("/console").status, 303);
}

#[test]
fn forms_from_another_origin_or_without_the_token_change_nothing() {
    let (gateway, _stub) = start();
    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();
    let csrf = console.csrf();
    let pause = "/console/destinations/crm/pause";

    let no_token = console.post(pause, &[], &[("Origin", &gateway.admin_url)]);
    assert_eq!(no_token.status, 403, "{}", no_token.text());
    let wrong_token = console.post(pause, &[("csrf", "0000")], &[]);
    assert_eq!(wrong_token.status, 403);
    let foreign = console.post(
        pause,
        &[("csrf", &csrf)],
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(foreign.status, 403);
    assert!(
        foreign
            .text()
            .contains("Refused: the request's Origin is not this console's."),
        "{}",
        foreign.text()
    );
    let cross_site = console.post(
        pause,
        &[("csrf", &csrf)],
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(cross_site.status, 403);
    // Another site's sign-in form cannot sign a browser in either (login CSRF).
    let mut other = ConsoleClient::new(&gateway.admin_url);
    let login = other.post(
        "/console/sign-in",
        &[("token", ADMIN_TOKEN)],
        &[("Origin", "http://evil.example")],
    );
    assert_eq!(login.status, 403);
    assert!(login.header("set-cookie").is_none());
    other.cookie = None;
    assert!(!paused(&gateway), "nothing was paused");
    // Each refusal is counted by cause (and logged by the sampled logger, not a line apiece).
    let refusals = |cause: &str| gateway.metric("hookgate_rejections_total", &[("cause", cause)]);
    assert_eq!(refusals("console_bad_csrf"), Some(2.0));
    assert_eq!(refusals("console_foreign_origin"), Some(2.0));
    assert_eq!(refusals("console_cross_site"), Some(1.0));

    // The console's own form does it.
    let own = console.post_form(pause, &[]);
    assert_eq!(own.status, 303, "{}", own.text());
    assert!(paused(&gateway));
    assert_eq!(
        console
            .post_form("/console/destinations/crm/resume", &[])
            .status,
        303
    );
    assert!(!paused(&gateway));
}

/// The number shown just before the chart labelled `label` (the hour's total).
fn total_before(html: &str, label: &str) -> u64 {
    let at = html
        .find(&format!(r#"aria-label="{label}, per minute"#))
        .unwrap_or_else(|| panic!("no chart {label}: {html}"));
    let before = &html[..at];
    let open = before.rfind(r#"<div class="num">"#).unwrap() + r#"<div class="num">"#.len();
    before[open..].split('<').next().unwrap().parse().unwrap()
}

#[test]
fn the_overview_counts_what_the_public_listener_answered() {
    let (gateway, _stub) = start();
    for i in 0..3 {
        let body = format!(r#"{{"id":"evt-{i}"}}"#);
        assert_eq!(gateway.post("p", &[], body.as_bytes()).ack().0, "accepted");
    }
    assert_eq!(
        gateway.post("p", &[], br#"{"id":"evt-0"}"#).ack().0,
        "duplicate"
    );
    let body = br#"{"zen":"ok"}"#;
    let mut headers = sign::github_headers(GITHUB_SECRET, "d-1", body);
    assert_eq!(gateway.post("gh", &headers, body).status, 200);
    headers[0].1 = sign::github_signature("another-secret", body);
    assert_eq!(gateway.post("gh", &headers, body).status, 401);
    assert_eq!(gateway.post("gh", &headers, body).status, 401);

    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();
    let html = console.get("/console").text();
    assert_eq!(total_before(&html, "requests of p"), 4);
    assert_eq!(total_before(&html, "accepted of p"), 3);
    assert_eq!(total_before(&html, "duplicates of p"), 1);
    assert_eq!(total_before(&html, "401s of p"), 0);
    assert_eq!(total_before(&html, "requests of gh"), 3);
    assert_eq!(total_before(&html, "accepted of gh"), 1);
    assert_eq!(total_before(&html, "401s of gh"), 2);
    assert!(!html.contains("no acks"), "ack latencies are shown");
    assert!(html.contains("≤ "), "{html}");
}

#[test]
fn search_finds_events_and_the_event_page_shows_them() {
    let (gateway, stub) = start();
    let mut seqs = Vec::new();
    for i in 0..5 {
        let body = format!(r#"{{"id":"order-{i}","amount":{i}}}"#);
        seqs.push(gateway.post("p", &[], body.as_bytes()).ack().1);
    }
    common::wait_until(Duration::from_secs(10), "deliveries", || stub.calls() == 5);
    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();

    let found = console.get("/console/events?event_id=order-3").text();
    assert!(
        found.contains(&format!(r#"href="/console/events/{}""#, seqs[3])),
        "{found}"
    );
    for other in [0, 1, 2, 4] {
        assert!(
            !found.contains(&format!("order-{other}")),
            "order-{other}: {found}"
        );
    }
    let range = console
        .get(&format!(
            "/console/events?from_seq={}&to_seq={}&provider=p",
            seqs[1], seqs[2]
        ))
        .text();
    assert!(range.contains("order-1") && range.contains("order-2"));
    assert!(!range.contains("order-0") && !range.contains("order-3"));
    // A provider with no event: the scan still covers (and says) the range, counted.
    let nobody = console
        .get(&format!(
            "/console/events?from_seq={}&to_seq={}&provider=nobody",
            seqs[1], seqs[2]
        ))
        .text();
    assert!(
        nobody.contains(&format!("Looked at seqs {} to {}.", seqs[1], seqs[2])),
        "{nobody}"
    );
    let none = console.get("/console/events?since=2999-01-01T00:00").text();
    assert!(none.contains("No event matches."), "{none}");
    assert_eq!(console.get("/console/events?from_seq=abc").status, 400);

    let page = console.get(&format!("/console/events/{}", seqs[3]));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("order-3"));
    assert!(
        html.contains("&quot;amount&quot;: 3"),
        "pretty JSON: {html}"
    );
    assert!(
        html.contains(r#"<span class="state delivered">delivered</span>"#),
        "{html}"
    );
    assert!(
        csrf_in(&html).is_some(),
        "the replay form carries the token"
    );
    let raw = console
        .get(&format!("/console/events/{}?view=raw", seqs[3]))
        .text();
    assert!(
        raw.contains(r#"{&quot;id&quot;:&quot;order-3&quot;,&quot;amount&quot;:3}"#),
        "{raw}"
    );
    assert_eq!(console.get("/console/events/999999").status, 404);
    let odd_query = console.get(&format!("/console/events/{}?count=many", seqs[3]));
    assert_eq!(odd_query.status, 200, "a malformed notice is ignored");
}

#[test]
fn a_replay_filter_from_the_console_replays_only_what_it_selects() {
    let healthy = Arc::new(AtomicBool::new(false));
    let up = healthy.clone();
    let stub = Stub::start(move |_| {
        if up.load(Ordering::SeqCst) {
            (200, "text/plain", b"ok".to_vec())
        } else {
            (500, "text/plain", b"down".to_vec())
        }
    });
    let config = provider("p", "none", &[], "event_id = \"json:/id\"")
        + &provider("q", "none", &[], "event_id = \"json:/id\"")
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nsigning_secret = \"whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x\"\nretry_delays = [\"10ms\"]\nordered = false\n",
            stub.url
        );
    let gateway = Gateway::start(&config);
    let mut seqs = Vec::new();
    for provider in ["p", "q"] {
        for i in 0..2 {
            let body = format!(r#"{{"id":"{provider}-{i}"}}"#);
            seqs.push((
                provider,
                gateway.post(provider, &[], body.as_bytes()).ack().1,
            ));
        }
    }
    let state = |seq: u64| gateway.event(seq).unwrap()["deliveries"]["crm"].clone();
    common::wait_until(Duration::from_secs(10), "all dead", || {
        seqs.iter().all(|(_, seq)| state(*seq) == "dead")
    });
    healthy.store(true, Ordering::SeqCst);

    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();
    let replay = console.post_form(
        "/console/replay",
        &[
            ("destination", "crm"),
            ("provider", "q"),
            ("from_seq", ""),
            ("to_seq", ""),
        ],
    );
    assert_eq!(replay.status, 303, "{}", replay.text());
    assert_eq!(
        replay.header("location"),
        Some("/console/destinations?notice=replayed&count=2&left=0")
    );
    common::wait_until(Duration::from_secs(10), "q's events delivered", || {
        seqs.iter()
            .filter(|(p, _)| *p == "q")
            .all(|(_, seq)| state(*seq) == "delivered")
    });
    for (_, seq) in seqs.iter().filter(|(p, _)| *p == "p") {
        assert_eq!(state(*seq), "dead", "p's events were not selected");
    }
    let page = console.get("/console/destinations").text();
    assert!(
        page.contains("Replay all 2 dead"),
        "p's two are still dead: {page}"
    );
    assert_eq!(
        console
            .post_form("/console/replay", &[("from_seq", "x")])
            .status,
        400
    );
}

#[test]
fn consumers_and_pollers_show_their_cursors_and_last_results() {
    let vendor = Stub::start(|request| {
        if request.path.starts_with("/broken") {
            (503, "text/plain", b"maintenance".to_vec())
        } else {
            (
                200,
                "application/json",
                br#"{"data":[{"id":5},{"id":7}]}"#.to_vec(),
            )
        }
    });
    let sync = |name: &str, path: &str| {
        provider(
            name,
            "none",
            &[],
            &format!(
                "[provider.sync]\nurl = \"{}/{path}\"\ncursor_param = \"after\"\nitems = \"/data\"\nitem_id = \"/id\"\ninterval = \"200ms\"\n",
                vendor.url
            ),
        )
    };
    let config = sync("feed", "events")
        + &sync("flaky", "broken")
        + "\n[[consumer]]\nname = \"warehouse\"\nproviders = [\"feed\"]\n";
    let gateway = Gateway::start(&config);
    common::wait_until(Duration::from_secs(10), "both pollers ran", || {
        let pollers = gateway.admin_json("/v1/pollers");
        pollers["pollers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["last_success_at"].is_string() || p["last_error"].is_object())
            && gateway.all_events(None).len() == 2
    });
    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();
    let html = console.get("/console/consumers").text();
    let row = |name: &str| {
        let at = html
            .find(&format!(r#"<th scope="row">{name}</th>"#))
            .unwrap_or_else(|| panic!("{name}: {html}"));
        html[at..html[at..].find("</tr>").unwrap() + at].to_string()
    };
    let warehouse = row("warehouse");
    assert!(warehouse.contains(r#"<td>feed</td>"#), "{warehouse}");
    assert!(
        warehouse.contains(r#"<td class="num">2</td>"#),
        "lag 2: {warehouse}"
    );
    let feed = row("feed");
    assert!(feed.contains("<code>7</code>"), "cursor: {feed}");
    assert!(feed.contains("ago)"), "a last success: {feed}");
    assert!(
        feed.contains(r#"<td class="num">200ms</td>"#),
        "the interval: {feed}"
    );
    let flaky = row("flaky");
    assert!(flaky.contains("state failing"), "{flaky}");
    assert!(flaky.contains("503"), "the last error: {flaky}");
}

/// A JSON body is laid out as it came: keys in their order, numbers as written; and however
/// its layout would grow (deep nesting indents every line), the page shows at most 1 MiB of it.
/// It was parsed into a tree and pretty-printed whole: keys sorted, big numbers rounded, and
/// ~800 KB nested 120 deep made a page of ~100 MB.
#[test]
fn a_json_body_is_laid_out_as_received_within_a_bound() {
    let (gateway, _stub) = start();
    let exact = r#"{"zeta":1,"id":"exact","n":123456789012345678901234567890,"p":1.10}"#;
    let exact = gateway.post("p", &[], exact.as_bytes()).ack().1;
    let deep = format!(
        r#"{{"id":"deep","x":{}{}0{}}}"#,
        "[".repeat(120),
        "0,".repeat(400_000),
        "]".repeat(120)
    );
    let deep = gateway.post("p", &[], deep.as_bytes()).ack().1;
    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();

    let html = console.get(&format!("/console/events/{exact}")).text();
    let zeta = html.find("&quot;zeta&quot;: 1").expect("zeta");
    assert!(zeta < html.find("&quot;id&quot;: &quot;exact&quot;").expect("id"));
    assert!(
        html.contains("&quot;n&quot;: 123456789012345678901234567890,"),
        "{html}"
    );
    assert!(html.contains("&quot;p&quot;: 1.10"), "{html}");
    assert!(!html.contains("Only the first"), "{html}");

    let page = console.get(&format!("/console/events/{deep}"));
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.len() < 2 << 20, "a page of {} bytes", html.len());
    assert!(
        html.contains(&format!("Only the first 1 MiB is shown; the whole body: <code>hookgate events show {deep}</code>")),
        "{}",
        &html[..html.len().min(4000)]
    );
}

#[test]
fn a_body_that_is_not_utf8_is_shown_as_base64() {
    let gateway_raw = Gateway::start(&provider("raw", "none", &[], ""));
    let seq = gateway_raw.post("raw", &[], &[0xff, 0xfe, 0x00]).ack().1;
    let mut console = ConsoleClient::new(&gateway_raw.admin_url);
    console.sign_in();
    let html = console.get(&format!("/console/events/{seq}")).text();
    assert!(html.contains("Not UTF-8"), "{html}");
    assert!(html.contains(r#"<pre id="body">//4A</pre>"#), "{html}");
}

#[test]
fn a_reload_with_a_new_admin_token_ends_every_session() {
    let (gateway, _stub) = start();
    let mut console = ConsoleClient::new(&gateway.admin_url);
    console.sign_in();
    assert_eq!(console.get("/console").status, 200);

    let config = std::fs::read_to_string(gateway.config_path()).unwrap();
    let rotated = "rotated-admin-token-0123456789";
    std::fs::write(
        gateway.config_path(),
        config.replace(&toml_str(ADMIN_TOKEN), &toml_str(rotated)),
    )
    .unwrap();
    let reloads = gateway.logs().matches("Config reloaded.").count();
    gateway.signal(nix::sys::signal::Signal::SIGHUP);
    common::wait_until(Duration::from_secs(10), "the reload", || {
        gateway.logs().matches("Config reloaded.").count() > reloads
    });

    let after = console.get("/console");
    assert_eq!(after.status, 303, "the old session is over");
    assert_eq!(after.header("location"), Some("/console/sign-in"));
    assert_eq!(console.sign_in_with(ADMIN_TOKEN).status, 401);
    assert_eq!(console.sign_in_with(rotated).status, 303);
    assert_eq!(console.get("/console").status, 200);
}
