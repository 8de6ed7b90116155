//! The public listener's abuse limits, through the real binary: rate limits per address, per
//! provider and on `/oauth/token` (429 + Retry-After), connection caps, the shared body budget
//! (503), memory never taken from `Content-Length`, forwarding headers trusted only from
//! configured proxies, sampled rejection logs with a counter per cause, the listen backlog, the
//! Twilio form cap, and the start-up audit of the config.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::Load;
use common::raw::RawConn;
use common::{provider, sign, wait_until, Gateway};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn from(last_octet: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last_octet])
}

fn gateway(limits: &str, providers: &str) -> Gateway {
    Gateway::builder()
        .config(&format!("[limits]\n{limits}\n{providers}"))
        .start()
}

fn rejections(gw: &Gateway, cause: &str) -> f64 {
    gw.metric("hookgate_rejections_total", &[("cause", cause)])
        .unwrap_or(0.0)
}

#[test]
fn an_address_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let gw = gateway(
        "per_address_rps = 1\nper_address_burst = 3",
        &provider("open", "none", &[], ""),
    );
    let mut conn = RawConn::connect_from(gw.public_addr, from(2));
    // The burst of 3, and one more a second the requests took (a slow fsync refills a token).
    let started = Instant::now();
    let mut accepted: u64 = 0;
    let refused = loop {
        let body = format!("{{\"n\":{accepted}}}");
        let reply = conn.exchange("/hooks/open", &[], body.as_bytes());
        if reply.status != 200 {
            break reply;
        }
        accepted += 1;
        assert!(
            accepted <= 3 + started.elapsed().as_secs() + 1,
            "never refused"
        );
    };
    assert_eq!(refused.status, 429, "{}", refused.text());
    assert!(accepted >= 3, "{accepted} accepted before the first 429");
    let wait: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");

    let other = RawConn::connect_from(gw.public_addr, from(3)).exchange("/hooks/open", &[], b"{}");
    assert_eq!(other.status, 200, "another address has its own allowance");
    assert_eq!(rejections(&gw, "rate_limited_address"), 1.0);
    assert_eq!(gw.all_events(None).len() as u64, accepted + 1);
}

#[test]
fn the_provider_limit_counts_verified_webhooks_only() {
    let gw = gateway(
        "per_provider_rps = 1\nper_provider_burst = 2",
        &provider("sw", "standard-webhooks", &[SECRET], ""),
    );
    let forged = sign::standard_headers("whsec_d3JvbmctZ3Vlc3Mtd3Jvbmc=", "evt_x", b"{}");
    for _ in 0..20 {
        assert_eq!(gw.post("sw", &forged, b"{}").status, 401);
    }
    // The burst of 2, and one more a second the requests took (a slow fsync refills a token).
    let started = Instant::now();
    let mut accepted: u64 = 0;
    let reply = loop {
        let id = format!("evt_{accepted}");
        let body = format!("{{\"id\":\"{id}\"}}");
        let headers = sign::standard_headers(SECRET, &id, body.as_bytes());
        let reply = gw.post("sw", &headers, body.as_bytes());
        if reply.status != 200 {
            break reply;
        }
        accepted += 1;
        assert!(accepted <= 2 + started.elapsed().as_secs(), "never refused");
    };
    assert!(accepted >= 2, "{accepted} accepted before the first 429");
    assert_eq!(reply.status, 429, "{}", reply.text());
    assert!(reply.header("retry-after").is_some());
    assert_eq!(rejections(&gw, "rate_limited_provider"), 1.0);
    assert_eq!(rejections(&gw, "bad_signature"), 20.0);
}

#[test]
fn the_token_endpoint_is_rate_limited_per_address() {
    let oauth = "[provider.oauth]\nmode = \"builtin\"\n\
                 clients = [{ id = \"sender\", secret = \"sender-secret-0123456789\" }]\n";
    let gw = gateway(
        "oauth_token_per_address_per_min = 3",
        &(provider("oa", "oauth", &[], "") + oauth),
    );
    let form = b"grant_type=client_credentials&client_id=sender&client_secret=guess";
    let headers = sign::headers(&[("Content-Type", "application/x-www-form-urlencoded")]);
    let mut conn = RawConn::connect_from(gw.public_addr, from(4));
    let statuses: Vec<u16> = (0..3)
        .map(|_| conn.exchange("/oauth/token", &headers, form).status)
        .collect();
    assert_eq!(statuses, [401, 401, 401], "wrong secrets are refused");
    let reply = conn.exchange("/oauth/token", &headers, form);
    assert_eq!(reply.status, 429, "{}", reply.text());
    let wait: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=21).contains(&wait),
        "one token every 20 s: Retry-After {wait}"
    );
    assert_eq!(rejections(&gw, "rate_limited_oauth_token"), 1.0);
    // A reload that changes another [limits] setting keeps the buckets (it emptied them: a
    // fresh burst of guesses at each reload).
    let config = std::fs::read_to_string(gw.config_path()).unwrap();
    let config = config.replace(
        "oauth_token_per_address_per_min = 3",
        "oauth_token_per_address_per_min = 3\nrejection_logs_per_s = 7",
    );
    std::fs::write(gw.config_path(), config).unwrap();
    let before = gw.logs().matches("Config reloaded.").count();
    gw.signal(nix::sys::signal::Signal::SIGHUP);
    common::wait_until(Duration::from_secs(10), "the reload", || {
        gw.logs().matches("Config reloaded.").count() > before
    });
    let reply = conn.exchange("/oauth/token", &headers, form);
    assert_eq!(reply.status, 429, "{}", reply.text());

    // With the route's own limit off, the limit of every public route still holds (it did not).
    let gw = gateway(
        "oauth_token_per_address_per_min = 0\nper_address_rps = 1\nper_address_burst = 2",
        &(provider("oa", "oauth", &[], "") + oauth),
    );
    let mut conn = RawConn::connect_from(gw.public_addr, from(5));
    let statuses: Vec<u16> = (0..3)
        .map(|_| conn.exchange("/oauth/token", &headers, form).status)
        .collect();
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(rejections(&gw, "rate_limited_address"), 1.0);
}

#[test]
fn connections_over_a_cap_are_shut_before_a_byte_is_read() {
    let gw = gateway(
        "max_connections_per_address = 3\nmax_connections = 5",
        &provider("open", "none", &[], ""),
    );
    let held: Vec<RawConn> = (0..3)
        .map(|_| RawConn::connect_from(gw.public_addr, from(5)))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = RawConn::connect_from(gw.public_addr, from(5));
    assert!(
        fourth.closed_silently(Duration::from_secs(3)),
        "over the per-address cap"
    );

    let mut others: Vec<RawConn> = (0..2)
        .map(|_| RawConn::connect_from(gw.public_addr, from(6)))
        .collect();
    let reply = others[0].exchange("/hooks/open", &[], b"{}");
    assert_eq!(reply.status, 200, "another address still gets in");
    let mut sixth = RawConn::connect_from(gw.public_addr, from(7));
    assert!(
        sixth.closed_silently(Duration::from_secs(3)),
        "over the total cap"
    );

    drop(held);
    common::wait_until(Duration::from_secs(5), "a place is free again", || {
        RawConn::connect_from(gw.public_addr, from(5))
            .exchange("/hooks/open", &[], b"{}")
            .status
            == 200
    });
    assert_eq!(rejections(&gw, "connections_per_address"), 1.0);
    assert!(rejections(&gw, "connections") >= 1.0);
}

/// A connection's next request after an answer gets the same time for its head as its first:
/// actix's own timer bounds the first only, and one byte every few seconds (here: one byte,
/// then nothing) held a kept-alive connection, and its place under the caps, for ever.
#[test]
fn a_kept_alive_connection_gets_no_more_time_for_its_next_head() {
    let gw = Gateway::builder()
        .server("body_timeout_ms = 1000")
        .config(&provider("open", "none", &[], ""))
        .start();
    let mut conn = RawConn::connect(gw.public_addr);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", gw.public_addr);
    assert!(conn.send(head.as_bytes()));
    assert_eq!(
        conn.read_response(Duration::from_secs(5), false).status,
        200
    );
    assert!(conn.send(b"G"));
    // 5 s of keep-alive and the 1 s the head has, then closed (8 s of slack before it was not).
    let started = Instant::now();
    let reply = conn.read_response(Duration::from_secs(9), true);
    assert!(reply.closed, "still open after {:?}", started.elapsed());
}

/// A refused request whose chunked body actix goes on reading (it drains what a handler did not
/// read) does not hold its connection: the answer starts the time for the next head, and a body
/// still coming does not count as one.
#[test]
fn a_refused_chunked_body_trickled_on_does_not_hold_its_connection() {
    let gw = Gateway::builder()
        .server("body_timeout_ms = 1000")
        .config(&provider("open", "none", &[], ""))
        .start();
    let headers = [("Transfer-Encoding".to_string(), "chunked".to_string())];
    let mut conn = RawConn::post(gw.public_addr, "/hooks/nope", &headers);
    assert_eq!(
        conn.read_response(Duration::from_secs(5), false).status,
        404
    );
    let started = Instant::now();
    let mut closed = false;
    while !closed && started.elapsed() < Duration::from_secs(12) {
        closed = !conn.send(b"1\r\na\r\n")
            || conn.read_response(Duration::from_millis(300), true).closed;
    }
    assert!(closed, "still open after {:?}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn body_bytes_in_flight_are_bounded_and_taken_as_they_arrive() {
    const MIB: usize = 1024 * 1024;
    let gw = gateway(
        &format!("max_body_bytes_in_flight = {}", 4 * MIB),
        &provider("open", "none", &[], ""),
    );
    let declared = sign::headers(&[("Content-Length", &MIB.to_string())]);
    // Ten senders that declared 1 MiB each and sent one byte: they hold one byte each, not
    // 10 MiB, so the budget still has room for a whole body.
    let mut stalled: Vec<RawConn> = (0..10)
        .map(|_| RawConn::post(gw.public_addr, "/hooks/open", &declared))
        .collect();
    for conn in &mut stalled {
        assert!(conn.send(b"{"));
    }
    std::thread::sleep(Duration::from_millis(300));
    let body = format!("{{\"pad\":\"{}\"}}", "x".repeat(MIB - 20));
    assert_eq!(gw.post("open", &[], body.as_bytes()).ack().0, "accepted");

    // Senders that each get 900 KiB in: the fifth finds the budget spent.
    let part = vec![b' '; 900 * 1024];
    let mut busy = None;
    let mut filling = Vec::new();
    for _ in 0..6 {
        let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &declared);
        conn.send(b"{");
        conn.send(&part);
        std::thread::sleep(Duration::from_millis(200));
        let reply = conn.read_response(Duration::from_millis(300), false);
        if reply.status != 0 {
            busy = Some(reply);
            break;
        }
        filling.push(conn);
    }
    let busy = busy.expect("a sender past the budget is answered");
    assert_eq!(busy.status, 503, "{}", busy.text());
    assert!(busy.header("retry-after").is_some());
    assert!(
        (3..=4).contains(&filling.len()),
        "{} senders held ~900 KiB each",
        filling.len()
    );
    assert!(rejections(&gw, "body_bytes_in_flight") >= 1.0);
    drop(filling);
    drop(stalled);
    // Their bytes come back once the gateway sees the connections closed.
    wait_until(Duration::from_secs(10), "the budget given back", || {
        gw.post("open", &[], body.as_bytes()).status != 503
    });
    assert_eq!(gw.post("open", &[], body.as_bytes()).ack().0, "duplicate");
}

/// The gateway under an address-space limit of 600 MB (it idles at ~150 MB): a process that allocated each body
/// from its declared `Content-Length` would need 1 GiB more for the connections below.
fn with_address_space_limit(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -v 600000 && exec \"$0\" serve --config \"$1\"")
        .arg(bin)
        .arg(config)
        .env("MALLOC_ARENA_MAX", "2");
    command
}

#[test]
fn header_only_connections_reserve_no_memory() {
    let gw = Gateway::builder()
        .config(&format!(
            "[limits]\nmax_connections_per_address = 2000\n{}",
            provider("open", "none", &[], "")
        ))
        .wrapper(with_address_space_limit)
        .start();
    let declared = sign::headers(&[("Content-Length", "1048576")]);
    let conns: Vec<RawConn> = (0..1000)
        .map(|_| RawConn::post(gw.public_addr, "/hooks/open", &declared))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let reply = gw.post("open", &[], b"{\"after\":\"the flood\"}");
    assert_eq!(reply.ack().0, "accepted", "{}", gw.logs());
    drop(conns);
    let mut gw = gw;
    assert!(gw.is_running(), "{}", gw.logs());
}

#[test]
fn forwarding_headers_count_only_from_trusted_proxies() {
    let gw = Gateway::builder()
        .server("trusted_proxies = [\"127.0.0.10\"]")
        .config(&format!(
            "[limits]\nper_address_rps = 1\nper_address_burst = 1\n{}",
            provider("partner", "none", &[], "allow_ips = [\"203.0.113.0/24\"]")
        ))
        .start();
    let forwarded_for = |ip: &str| sign::headers(&[("X-Forwarded-For", ip)]);
    let via_proxy = |ip: &str| {
        RawConn::connect_from(gw.public_addr, from(10)).exchange(
            "/hooks/partner",
            &forwarded_for(ip),
            format!("{{\"from\":\"{ip}\"}}").as_bytes(),
        )
    };
    let first = Instant::now();
    assert_eq!(
        via_proxy("203.0.113.7").status,
        200,
        "allowed client behind the proxy"
    );
    assert_eq!(
        via_proxy("203.0.113.8").status,
        200,
        "each client has its own bucket"
    );
    let mut again = via_proxy("203.0.113.7");
    if again.status == 200 {
        // Only if the two commits took a second (a slow fsync refilled its token).
        assert!(first.elapsed() >= Duration::from_secs(1), "never refused");
        again = via_proxy("203.0.113.7");
    }
    assert_eq!(again.status, 429, "the first client is over its rate");
    assert_eq!(via_proxy("198.51.100.1").status, 401, "not in allow_ips");

    let spoofed = RawConn::connect_from(gw.public_addr, from(11)).exchange(
        "/hooks/partner",
        &forwarded_for("203.0.113.9"),
        b"{}",
    );
    assert_eq!(
        spoofed.status, 401,
        "an untrusted peer cannot claim an address"
    );
    assert_eq!(rejections(&gw, "address_not_allowed"), 2.0);
    // A proxy that writes X-Forwarded-For passes a client's own `Forwarded` on: not read (it
    // was, and named any address the client liked).
    let rfc7239 = [("Forwarded", "for=\"203.0.113.20:5555\";proto=https")];
    let forged = RawConn::connect_from(gw.public_addr, from(10)).exchange(
        "/hooks/partner",
        &sign::headers(&[rfc7239[0], ("X-Forwarded-For", "198.51.100.2")]),
        b"{\"forged\":true}",
    );
    assert_eq!(forged.status, 401, "the client's own Forwarded header");

    // With `proxy_header = "forwarded"`, RFC 7239's header is the one read.
    let gw = Gateway::builder()
        .server("trusted_proxies = [\"127.0.0.10\"]\nproxy_header = \"forwarded\"")
        .config(&provider(
            "partner",
            "none",
            &[],
            "allow_ips = [\"203.0.113.0/24\"]",
        ))
        .start();
    let forwarded = RawConn::connect_from(gw.public_addr, from(10)).exchange(
        "/hooks/partner",
        &sign::headers(&[rfc7239[0], ("X-Forwarded-For", "198.51.100.2")]),
        b"{\"rfc\":7239}",
    );
    assert_eq!(forwarded.status, 200, "RFC 7239 Forwarded");
}

#[test]
fn rejections_are_all_counted_but_their_logs_are_sampled() {
    let gw = gateway(
        "rejection_logs_per_s = 2",
        &provider("sw", "standard-webhooks", &[SECRET], ""),
    );
    let forged = sign::standard_headers("whsec_d3JvbmctZ3Vlc3Mtd3Jvbmc=", "evt_x", b"{}");
    let started = Instant::now();
    let mut conn = RawConn::connect_from(gw.public_addr, from(12));
    for _ in 0..300 {
        assert_eq!(conn.exchange("/hooks/sw", &forged, b"{}").status, 401);
    }
    let seconds = started.elapsed().as_secs() + 1;
    std::thread::sleep(Duration::from_millis(200));
    let logged = gw
        .logs()
        .lines()
        .filter(|line| line.contains("Request refused") && line.contains("bad_signature"))
        .count();
    assert!(
        (1..=2 * seconds as usize + 2).contains(&logged),
        "{logged} lines for 300 refusals in {seconds} s"
    );
    assert_eq!(rejections(&gw, "bad_signature"), 300.0);
    // A window later, the next refusal's line says how many went unlogged: every refusal is
    // logged or counted in a line.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(conn.exchange("/hooks/sw", &forged, b"{}").status, 401);
    // The lines and the count of refusals each left unlogged, once the last line is read.
    let counted = || {
        let logs = gw.logs();
        let lines: Vec<String> = logs
            .lines()
            .filter(|line| line.contains("Request refused") && line.contains("bad_signature"))
            .map(str::to_string)
            .collect();
        let suppressed: Vec<u64> = lines
            .iter()
            .map(|line| {
                let after = line.split("suppressed=").nth(1).expect("suppressed=");
                let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().unwrap()
            })
            .collect();
        (lines, suppressed)
    };
    common::wait_until(
        Duration::from_secs(5),
        "every refusal logged or counted",
        || {
            let (lines, suppressed) = counted();
            lines.len() as u64 + suppressed.iter().sum::<u64>() >= 301
        },
    );
    let (lines, suppressed) = counted();
    assert!(suppressed.iter().any(|n| *n > 0), "{lines:?}");
    assert_eq!(
        lines.len() as u64 + suppressed.iter().sum::<u64>(),
        301,
        "{lines:?}"
    );
}

#[test]
fn the_listen_backlog_is_at_least_1024() {
    let gw = gateway("", &provider("open", "none", &[], ""));
    let output = Command::new("ss").args(["-ltnH"]).output();
    let Ok(output) = output else {
        panic!("`ss` (iproute2) is needed to read the listen backlog");
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let port = format!(":{}", gw.public_addr.port());
    let line = text
        .lines()
        .find(|line| {
            line.split_whitespace()
                .nth(3)
                .is_some_and(|a| a.ends_with(&port))
        })
        .unwrap_or_else(|| panic!("no listening socket on {port}: {text}"));
    let backlog: u32 = line.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(backlog >= 1024, "backlog {backlog}: {line}");
}

#[test]
fn a_form_of_half_a_million_parameters_is_refused_without_decoding_it() {
    let gw = gateway(
        "",
        &provider(
            "tw",
            "twilio",
            &["twilio-auth-token"],
            "public_url = \"https://example.com/hooks/tw\"",
        ),
    );
    let form: Vec<String> = (0..500_000).map(|i| format!("p{i}=v")).collect();
    let body = form.join("&");
    let headers = sign::headers(&[
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("X-Twilio-Signature", "bm90IGEgc2lnbmF0dXJl"),
    ]);
    let reply = gw.post(
        "tw",
        &headers,
        &body.as_bytes()[..body.len().min(1024 * 1024)],
    );
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert_eq!(rejections(&gw, "too_many_parameters"), 1.0);
}

#[test]
fn the_config_audit_warns_and_refuses_weak_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let write = |oauth_secret: &str| {
        std::fs::write(
            &config,
            format!(
                "[admin]\ntoken = \"env:HOME\"\n\n{}{}\
                 [provider.oauth]\nmode = \"builtin\"\nclients = [{{ id = \"c\", secret = \"{oauth_secret}\" }}]\n{}\
                 [provider.oauth]\nmode = \"introspection\"\nintrospection_url = \"http://127.0.0.1:1/\"\n\
                 client_id = \"hookgate\"\nclient_secret = \"env:HOME\"\n",
                provider("open", "none", &[], ""),
                provider("oa", "oauth", &[], ""),
                provider("intro", "oauth", &[], "")
            ),
        )
        .unwrap();
    };
    let check = || {
        let output = Command::new(common::hookgate_bin())
            .args(["check-config", "--config"])
            .arg(&config)
            .env("HOME", "a-home-directory-path")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        (output.status.code(), text)
    };
    write("short");
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("secret must be at least 16 bytes"), "{text}");

    write("a-long-enough-literal-secret");
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("oauth client \"c\" secret is written literally"),
        "{text}"
    );
    assert!(
        text.contains("verify = \"none\" without allow_ips"),
        "{text}"
    );
    assert!(
        text.contains("\"intro\" accepts any active token"),
        "{text}"
    );

    // A secret in a file every user may read: warned about; once private, not.
    let secret_file = dir.path().join("oauth-secret");
    std::fs::write(&secret_file, "a-long-enough-secret-in-a-file").unwrap();
    let mode = |mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret_file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    mode(0o644);
    write(&format!("file:{}", secret_file.display()));
    let (code, text) = check();
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("can be read by every user of this machine (mode 644)"),
        "{text}"
    );
    mode(0o600);
    let (_, text) = check();
    assert!(!text.contains("can be read by every user"), "{text}");
}

/// Runs the gateway with a limit of 1,300 open files (the hard limit too, so it cannot raise it).
fn with_few_open_files(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    with_open_files_limit("1300:1300", bin, config)
}

fn with_open_files_limit(limit: &str, bin: &Path, config: &Path) -> Command {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={limit}"))
        .arg("--")
        .arg(bin)
        .arg("serve")
        .arg("--config")
        .arg(config);
    command
}

/// Started with a soft limit of 1,100 open files under a hard one of 4,096, the gateway raises
/// its own to 4,096, and keeps its public connections to what that leaves (3,072, below the
/// default `max_connections`).
#[test]
fn the_open_files_limit_is_raised_to_the_hard_one() {
    let gw = Gateway::builder()
        .config(&provider("p", "none", &[], ""))
        .wrapper(|bin, config, _| with_open_files_limit("1100:4096", bin, config))
        .start();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"],
        "{open_files}"
    );
    let logs = gw.logs();
    assert!(
        logs.contains("Raised the open files limit. from=1100 to=4096")
            && logs.contains("the public listener accepts at most 3072"),
        "{logs}"
    );
}

/// A flood of idle connections past the open files limit, on both listeners: the public one
/// keeps to the room the limit leaves (1,300 less half of it kept for the store and outgoing
/// requests, whatever `max_connections` says, with a warning), the admin one to 256, so the
/// store's checkpoints, which open files, go on under load, no open fails, the gateway keeps
/// running, and every ack is stored. Without those caps, the connections took every file and
/// the store stopped at its next open.
#[test]
fn a_connection_flood_past_the_open_files_limit_leaves_the_store_its_files() {
    let mut gw = Gateway::builder()
        .config(&format!(
            "[limits]\nmax_connections_per_address = 5000\nper_address_rps = 0\n\
             [store]\ncheckpoint_mb = 1\n{}",
            provider("p", "none", &[], "event_id = \"header:X-Id\"")
        ))
        .wrapper(with_few_open_files)
        .start();
    assert!(
        gw.logs()
            .contains("the public listener accepts at most 650"),
        "{}",
        gw.logs()
    );
    let load = Load::default();
    // Load until the end of the flood, however slow the disk: stopped after 15 s (the default),
    // it left too little written for the checkpoints waited for below.
    std::thread::scope(|s| {
        for thread in 0..4 {
            let (api, load) = (gw.api(), &load);
            s.spawn(move || load.run(&api, thread, Duration::from_secs(120)));
        }
        common::wait_until(Duration::from_secs(30), "acks before the flood", || {
            load.acked_count() >= 100
        });
        let declared = sign::headers(&[("Content-Length", "1048576")]);
        let mut flood: Vec<RawConn> = (0..1400)
            .map(|_| RawConn::post(gw.public_addr, "/hooks/p", &declared))
            .collect();
        // The admin listener too, should it be reachable.
        flood.extend((0..1000).map(|_| {
            let mut conn = RawConn::connect(gw.admin_addr);
            conn.send(b"GET /v1/events HTTP/1.1\r\nHost: admin\r\n");
            conn
        }));
        // Counted in the log: the admin listener, which serves the metrics, is flooded too.
        let checkpointed = || gw.logs().matches("Store checkpointed: a start").count();
        let before = checkpointed();
        common::wait_until(
            Duration::from_secs(60),
            "checkpoints under the flood",
            || checkpointed() >= before + 2,
        );
        let open = std::fs::read_dir(format!("/proc/{}/fd", gw.pid()))
            .unwrap()
            .count();
        eprintln!(
            "{} flood connections made; the gateway holds {open} files",
            flood.len()
        );
        // 650 public connections, 256 on the admin listener, the store's and the runtime's.
        assert!(open + 256 <= 1300, "{open} files open");
        drop(flood);
        load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        !gw.logs().contains("Too many open files"),
        "the files ran out: {}",
        gw.logs()
    );
    // The admin listener serves again once the flood is gone.
    assert!(gw
        .metric("hookgate_store_checkpoints_total", &[])
        .is_some_and(|n| n >= 2.0));
    assert!(gw.is_running(), "{}", gw.logs());
    gw.restart();
    load.assert_all_stored(&gw);
}
