//! The public route's status codes other than verification: 404, 405, 413 (with and without
//! Content-Length), 408 for a slow body; bodies stored byte for byte even when not JSON;
//! health routes; the admin token.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::raw::RawConn;
use common::sign;
use common::{provider, wait_until, Gateway};

const MAX_BODY: usize = 64 * 1024;

fn small_body_gateway() -> Gateway {
    Gateway::builder()
        .server(&format!(
            "max_body_bytes = {MAX_BODY}\nbody_timeout_ms = 500"
        ))
        .config(&provider("open", "none", &[], ""))
        .start()
}

fn json_error(reply: &common::Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn unknown_provider_is_404() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    let reply = gw.post("nope", &[], b"{}");
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(json_error(&reply), "unknown_provider");
    assert!(gw.all_events(None).is_empty());
    // The sender's path segment is logged cut to a provider name's length (a 60 KB name made
    // a 60 KB line, as often as the log sampling let it).
    let long = "x".repeat(60_000);
    assert_eq!(gw.post(&long, &[], b"{}").status, 404);
    common::wait_until(
        std::time::Duration::from_secs(5),
        "two refusals logged",
        || gw.logs().matches("unknown_provider").count() >= 2,
    );
    assert!(gw.logs().contains(&"x".repeat(64)));
    assert!(
        !gw.logs().contains(&"x".repeat(65)),
        "the whole name logged"
    );
}

#[test]
fn other_methods_are_405() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let reply = gw.request(method, "/hooks/open", b"{}");
        assert_eq!(reply.status, 405, "{method}: {}", reply.text());
        assert_eq!(json_error(&reply), "method_not_allowed", "{method}");
        assert_eq!(
            reply.headers.get("allow").and_then(|v| v.to_str().ok()),
            Some("POST")
        );
    }
    assert!(gw.all_events(None).is_empty());
    // Counted as every refusal is, and so is a path no route serves.
    let reply = gw.request("POST", "/nowhere", b"{}");
    assert_eq!(reply.status, 404);
    assert_eq!(json_error(&reply), "not_found");
    let refused = |cause| gw.metric("hookgate_rejections_total", &[("cause", cause)]);
    assert_eq!(refused("method_not_allowed"), Some(4.0));
    assert_eq!(refused("not_found"), Some(1.0));
}

#[test]
fn body_over_max_with_content_length_is_413() {
    let gw = small_body_gateway();
    let at_limit = common::pseudo_random_bytes(MAX_BODY, 1);
    assert_eq!(gw.post("open", &[], &at_limit).ack().0, "accepted");

    let too_long = sign::headers(&[("Content-Length", &(MAX_BODY + 1).to_string())]);
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &too_long);
    conn.send(&common::pseudo_random_bytes(MAX_BODY + 1, 2));
    let response = conn.read_response(Duration::from_secs(5), true);
    assert_eq!(response.status, 413, "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    assert!(
        response.text().contains("payload_too_large"),
        "{response:?}"
    );
    assert_eq!(gw.all_events(None).len(), 1, "only the body at the limit");

    // A sender that uploads its whole body before reading the answer is not reset in the
    // middle of it: the server reads and drops the rest for a moment before it closes.
    let upload = 4 * 1024 * 1024;
    let too_long = sign::headers(&[("Content-Length", &upload.to_string())]);
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &too_long);
    assert!(
        conn.send(&common::pseudo_random_bytes(upload, 3)),
        "the upload was cut"
    );
    assert_eq!(conn.read_response(Duration::from_secs(5), true).status, 413);
}

#[test]
fn chunked_body_over_max_is_413_and_under_max_is_stored() {
    let gw = small_body_gateway();
    let chunked = sign::headers(&[("Transfer-Encoding", "chunked")]);

    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &chunked);
    let piece = common::pseudo_random_bytes(8192, 3);
    for _ in 0..(MAX_BODY / piece.len() + 2) {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        if !conn.send(&chunk) {
            break;
        }
    }
    conn.send(b"0\r\n\r\n");
    let response = conn.read_response(Duration::from_secs(5), true);
    assert_eq!(response.status, 413, "{response:?}");
    assert!(
        response.text().contains("payload_too_large"),
        "{response:?}"
    );
    assert!(gw.all_events(None).is_empty());

    // The same framing under the limit is read whole and stored intact.
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &chunked);
    conn.send(b"5\r\nhello\r\n7\r\n, chunk\r\n0\r\n\r\n");
    let response = conn.read_response(Duration::from_secs(5), false);
    assert_eq!(response.status, 200, "{response:?}");
    let events = gw.all_events(None);
    assert_eq!(events.len(), 1);
    assert_eq!(common::event_body(&events[0]), b"hello, chunk");

    // A chunk size that is no hex number: 400, nothing stored.
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &chunked);
    conn.send(b"zz\r\nhello\r\n0\r\n\r\n");
    let response = conn.read_response(Duration::from_secs(5), true);
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(gw.all_events(None).len(), 1);
    let cause = |cause| gw.metric("hookgate_rejections_total", &[("cause", cause)]);
    assert_eq!(cause("payload_too_large"), Some(1.0));
}

#[test]
fn slow_body_is_408_and_the_connection_is_closed() {
    let gw = small_body_gateway();
    let length = sign::headers(&[("Content-Length", "100")]);

    // A body that completes within body_timeout_ms is fine.
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &length);
    conn.send(&[b'a'; 10]);
    std::thread::sleep(Duration::from_millis(150));
    conn.send(&[b'b'; 90]);
    let response = conn.read_response(Duration::from_secs(5), false);
    assert_eq!(response.status, 200, "{response:?}");

    // A body that stalls is cut off after body_timeout_ms (500 ms).
    let mut conn = RawConn::post(gw.public_addr, "/hooks/open", &length);
    conn.send(&[b'c'; 10]);
    let response = conn.read_response(Duration::from_secs(5), true);
    assert_eq!(response.status, 408, "{response:?}");
    assert!(response.text().contains("body_timeout"), "{response:?}");
    assert_eq!(response.header("connection"), Some("close"));
    let after = response.head_after.unwrap();
    assert!(
        after >= Duration::from_millis(400) && after <= Duration::from_millis(2500),
        "408 came after {after:?}, body_timeout_ms is 500"
    );
    assert!(response.closed, "connection still open after the 408");
    assert_eq!(gw.all_events(None).len(), 1, "the partial body was stored");
}

#[test]
fn signed_bodies_are_stored_byte_for_byte_json_or_not() {
    let whsec = sign::whsec("malformed");
    let gw = Gateway::start(&provider("std", "standard-webhooks", &[&whsec], ""));
    let bodies: [(&str, &[u8]); 3] = [
        (
            "broken JSON",
            b"{\"id\": \"evt_1\", \"broken\": \xff\xfe trailing",
        ),
        ("duplicate keys", b"{ \"a\" : 1 ,\n  \"a\" : 2.50 }"),
        ("not JSON", b"plain text, no braces"),
    ];
    for (i, (what, body)) in bodies.iter().enumerate() {
        let headers = sign::standard_headers(&whsec, &format!("msg_raw_{i}"), body);
        let (status, seq) = gw.post("std", &headers, body).ack();
        assert_eq!(status, "accepted", "{what}");
        let event = gw.event(seq).unwrap();
        assert_eq!(&common::event_body(&event), body, "{what}: bytes changed");
        assert_eq!(event["content_type"], "application/json", "{what}");
    }
    let events = gw.all_events(None);
    assert!(events[0].get("json").is_none(), "broken JSON has a `json`");
    assert!(events[2].get("json").is_none(), "plain text has a `json`");
    assert_eq!(events[1]["json"], serde_json::json!({"a": 2.5}));
}

#[test]
fn health_routes() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    let healthz = gw.request("GET", "/healthz", b"");
    assert_eq!((healthz.status, healthz.text().trim()), (200, "ok"));
    let readyz = gw.request("GET", "/readyz", b"");
    assert_eq!((readyz.status, readyz.text().trim()), (200, "ready"));
    assert_eq!(gw.admin_get_with("/healthz", None).status, 200);
}

#[test]
fn admin_routes_need_the_token() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    for path in ["/metrics", "/v1/events", "/v1/events/1"] {
        assert_eq!(gw.admin_get_with(path, None).status, 401, "{path}");
        assert_eq!(
            gw.admin_get_with(path, Some("wrong-token")).status,
            401,
            "{path}"
        );
    }
    assert_eq!(gw.admin_get("/metrics").status, 200);
    assert_eq!(gw.admin_get("/v1/events").status, 200);
    assert_eq!(gw.admin_get("/v1/events/1").status, 404);
}

/// Requests without the admin token are counted and logged as every refusal is, sampled: a
/// line each, a loop without the token wrote thousands a second (past journald's rate limit,
/// which then drops the real errors too).
#[test]
fn admin_requests_without_the_token_are_counted_and_their_lines_sampled() {
    let gw = Gateway::start(&provider("open", "none", &[], ""));
    let started = std::time::Instant::now();
    for _ in 0..300 {
        assert_eq!(gw.admin_get_with("/metrics", None).status, 401);
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        gw.metric(
            "hookgate_rejections_total",
            &[("cause", "admin_unauthorized")]
        ),
        Some(300.0)
    );
    let lines = gw.logs().matches("cause=\"admin_unauthorized\"").count();
    // 5 lines a second by default, a cause.
    assert!(
        (1..=5 * (seconds.ceil() as usize + 1)).contains(&lines),
        "{lines} lines in {seconds:.1} s"
    );
}

/// The admin API's refusals: every route that changes something needs the token (401 without
/// it), and names that do not exist, seqs that do not exist, a destination that does not take
/// the event, a body or query that does not parse each get their status.
#[test]
fn the_admin_api_refuses_what_it_cannot_do() {
    let gw = Gateway::start(&format!(
        "{}{}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\nproviders = [\"p\"]\nsigning_secret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\n",
        provider("p", "none", &[], ""),
        provider("q", "none", &[], "")
    ));
    let q_seq = gw.post("q", &[], b"{}").ack().1;
    let client = reqwest::blocking::Client::new();
    let post = |path: &str, token: Option<&str>, body: &str| {
        let mut request = client
            .post(format!("{}{path}", gw.admin_url))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().unwrap().status().as_u16()
    };
    let token = Some(common::ADMIN_TOKEN);
    for path in [
        "/v1/destinations/crm/pause",
        "/v1/destinations/crm/resume",
        "/v1/dead/replay",
        &format!("/v1/events/{q_seq}/replay?destination=crm"),
        "/v1/providers/p/sync",
        "/v1/consumers/c/ack",
    ] {
        assert_eq!(post(path, None, "{}"), 401, "{path} without the token");
        assert_eq!(
            post(path, Some("not-the-token-at-all"), "{}"),
            401,
            "{path}"
        );
    }
    assert_eq!(post("/v1/destinations/nope/pause", token, ""), 404);
    assert_eq!(post("/v1/destinations/nope/resume", token, ""), 404);
    assert_eq!(post("/v1/dead/replay", token, "{not json"), 400);
    assert_eq!(
        post("/v1/dead/replay", token, r#"{"destination":"nope"}"#),
        404
    );
    let replay = |query: &str| post(&format!("/v1/events/{query}"), token, "");
    assert_eq!(replay(&format!("{q_seq}/replay?destination=nope")), 404);
    assert_eq!(replay("999/replay?destination=crm"), 404, "no such seq");
    assert_eq!(replay(&format!("{q_seq}/replay")), 400, "no destination");
    assert_eq!(
        replay(&format!("{q_seq}/replay?destination=crm")),
        400,
        "crm does not take q's events"
    );
    assert_eq!(post("/v1/providers/nope/sync", token, ""), 404);
    let get = |path: &str| gw.admin_get(path).status;
    assert_eq!(get("/v1/errors?destination=nope"), 404);
    assert_eq!(get("/v1/events/abc"), 404);
    assert_eq!(get("/v1/events/999"), 404);
    for path in [
        "/v1/events?limit=abc",
        "/v1/errors?limit=-1",
        "/v1/dead?limit=x",
    ] {
        assert_eq!(get(path), 400, "{path}");
    }
}

/// The admin listener bounds a body's time as the public one does: a body trickling into the
/// console's sign-in form (which needs no token) or into an admin route is answered 408 after
/// `body_timeout_ms`, its connection closed, and counted; a body that arrives in time is served.
#[test]
fn a_slow_body_on_the_admin_listener_is_408_and_the_connection_is_closed() {
    let gw = small_body_gateway();
    let origin = format!("http://{}", gw.admin_addr);
    let sign_in = sign::headers(&[
        ("Content-Length", "100"),
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Origin", &origin),
        ("Sec-Fetch-Site", "same-origin"),
    ]);
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let replay = sign::headers(&[("Content-Length", "100"), ("Authorization", &bearer)]);
    for (path, headers) in [("/console/sign-in", &sign_in), ("/v1/dead/replay", &replay)] {
        let mut conn = RawConn::post(gw.admin_addr, path, headers);
        conn.send(b"token=");
        let response = conn.read_response(Duration::from_secs(5), true);
        assert_eq!(response.status, 408, "{path}: {response:?}");
        assert!(response.text().contains("body_timeout"), "{response:?}");
        let after = response.head_after.unwrap();
        assert!(
            after >= Duration::from_millis(400) && after <= Duration::from_millis(2500),
            "{path}: 408 came after {after:?}, body_timeout_ms is 500"
        );
        assert!(
            response.closed,
            "{path}: connection still open after the 408"
        );
    }
    let timeouts = gw.metric("hookgate_rejections_total", &[("cause", "body_timeout")]);
    assert_eq!(timeouts, Some(2.0));
    assert!(
        gw.logs().contains("did not arrive within 500 ms"),
        "{}",
        gw.logs()
    );

    // In time, with pauses, the body is read as usual.
    let body = br#"{"destination": "none"}"#;
    let length = body.len().to_string();
    let headers = sign::headers(&[("Content-Length", &length), ("Authorization", &bearer)]);
    let mut conn = RawConn::post(gw.admin_addr, "/v1/dead/replay", &headers);
    conn.send(&body[..5]);
    std::thread::sleep(Duration::from_millis(150));
    conn.send(&body[5..]);
    let response = conn.read_response(Duration::from_secs(5), false);
    // Read whole and parsed: the destination it names does not exist.
    assert_eq!(response.status, 404, "{response:?}");
}

/// A compressed body is refused with 415 before it is read (it would be stored, deduplicated and
/// forwarded as compressed bytes labelled as JSON, a retry compressed again stored anew), counted
/// and logged; `identity` is no encoding.
#[test]
fn a_compressed_body_is_415() {
    let gw = small_body_gateway();
    // Before the body is read: one over max_body_bytes is 415, not 413.
    let large = vec![b'x'; MAX_BODY + 1];
    let headers = sign::headers(&[("Content-Encoding", "gzip"), ("X-Request-Id", "req-415")]);
    let reply = gw.post("open", &headers, &large);
    assert_eq!(reply.status, 415, "{}", reply.text());
    for encoding in ["gzip", "br", "deflate, gzip"] {
        let reply = gw.post(
            "open",
            &sign::headers(&[("Content-Encoding", encoding)]),
            b"\x1f\x8b",
        );
        assert_eq!(reply.status, 415, "{encoding}: {}", reply.text());
        assert_eq!(json_error(&reply), "unsupported_encoding");
    }
    for plain in ["identity", "UTF-8"] {
        let reply = gw.post(
            "open",
            &sign::headers(&[("Content-Encoding", plain)]),
            plain.as_bytes(),
        );
        assert_eq!(reply.status, 200, "{plain}: {}", reply.text());
    }
    let identity = gw.post(
        "open",
        &sign::headers(&[("Content-Encoding", "identity")]),
        b"{}",
    );
    assert_eq!(identity.status, 200, "{}", identity.text());
    assert_eq!(gw.all_events(None).len(), 3);
    let refused = gw.metric(
        "hookgate_rejections_total",
        &[("cause", "unsupported_encoding")],
    );
    assert_eq!(refused, Some(4.0));
    // Its line names the request's id, as its answer does.
    wait_until(Duration::from_secs(5), "the refusal logged", || {
        gw.logs().contains("request_id=\"req-415\"")
    });
}
