//! The harness checks itself: its signing helpers reproduce the published vectors (so a
//! verification test that fails points at the gateway, not at the test), and its parsers read
//! the log line and the metrics text the way the spec writes them.
#![allow(clippy::unwrap_used)]

mod common;

use common::sign;
use common::Fixture;

#[test]
fn signing_helpers_reproduce_the_published_vectors() {
    let std = Fixture::load("standard-webhooks/published.json");
    let ts: i64 = std.header("webhook-timestamp").unwrap().parse().unwrap();
    let id = std.header("webhook-id").unwrap();
    assert_eq!(
        sign::standard_signature(&std.secret, id, ts, std.body.as_bytes()),
        std.header("webhook-signature").unwrap()
    );
    let gh = Fixture::load("github/published.json");
    assert_eq!(
        sign::github_signature(&gh.secret, gh.body.as_bytes()),
        gh.header("X-Hub-Signature-256").unwrap()
    );
}

#[test]
fn fixtures_match_the_shared_vectors_file() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors/signatures.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        // The shared directory only exists in the development workspace.
        return;
    };
    let vectors: serde_json::Value = serde_json::from_str(&text).unwrap();
    let std = Fixture::load("standard-webhooks/published.json");
    let v = &vectors["standard_webhooks"];
    assert_eq!(std.secret, v["secret"]);
    assert_eq!(std.body, v["body"]);
    for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        assert_eq!(std.header(header).unwrap(), v[header], "{header}");
    }
    let gh = Fixture::load("github/published.json");
    let v = &vectors["github"];
    assert_eq!(gh.secret, v["secret"]);
    assert_eq!(gh.body, v["body"]);
    assert_eq!(
        gh.header("X-Hub-Signature-256").unwrap(),
        v["X-Hub-Signature-256"]
    );
}

#[test]
fn parses_the_listening_line() {
    let line = "2024-05-01T10:00:00.000Z  INFO hookgate: hookgate listening public=127.0.0.1:41234 admin=127.0.0.1:41235";
    let (public, admin) = common::parse_listening_line(line).unwrap();
    assert_eq!(public.port(), 41234);
    assert_eq!(admin.port(), 41235);
    assert!(common::parse_listening_line("hookgate starting").is_none());
}

#[test]
fn parses_metrics() {
    let text = "# TYPE hookgate_fsyncs counter\nhookgate_fsyncs_total 7\n\
        hookgate_requests_total{provider=\"a\",status=\"200\"} 3\n\
        hookgate_requests_total{provider=\"a\",status=\"401\"} 2\n\
        hookgate_requests_total{provider=\"b\",status=\"200\"} 1\n\
        hookgate_fsyncs_total_created 1.7e9\n# EOF\n";
    assert_eq!(
        common::parse_metric(text, "hookgate_fsyncs_total", &[]),
        Some(7.0)
    );
    let requests =
        |labels: &[(&str, &str)]| common::parse_metric(text, "hookgate_requests_total", labels);
    assert_eq!(requests(&[]), Some(6.0));
    assert_eq!(requests(&[("status", "200")]), Some(4.0));
    assert_eq!(requests(&[("provider", "a"), ("status", "200")]), Some(3.0));
    assert_eq!(
        common::parse_metric(text, "hookgate_commits_total", &[]),
        None
    );
}
