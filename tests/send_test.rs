//! `hookgate send-test` against a real gateway: for every scheme that can sign with the gateway's
//! own config, the command signs as the vendor would, exits 0, prints the 200 and the event is
//! stored; Dialog Insight with the fixture's private key; builtin OAuth by fetching a token; a
//! config with wrong secrets gets a 401 and exit 1; usage mistakes exit 2.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{fixture_path, provider, toml_str, Gateway};

/// A provider for each scheme, keyed with `secret` (suffixed per scheme), so that the same
/// function gives the gateway's config and, with another secret, a wrong one.
fn providers(secret: &str) -> String {
    let key = |scheme: &str| format!("{secret}-{scheme}-long-enough-key");
    let di_key = fixture_path("dialog-insight/test-public-key.pem");
    [
        provider(
            "sw",
            "standard-webhooks",
            &[&format!("whsec_{}", base64_of(&key("sw")))],
            "",
        ),
        provider("gh", "github", &[&key("gh")], ""),
        provider("mac", "hmac", &[&key("mac")], "header = \"X-Signature\""),
        provider("stripe", "stripe", &[&format!("whsec_{}", key("stripe"))], ""),
        provider("shop", "shopify", &[&key("shop")], ""),
        provider("slack", "slack", &[&key("slack")], ""),
        // Twilio calls a public URL that is not the one send-test posts to (a proxy in between).
        provider(
            "tw",
            "twilio",
            &[&key("tw")],
            "public_url = \"https://hooks.example.com/hooks/tw\"",
        ),
        // A Webhook Setting's SharedKey under HMAC-SHA256, which this provider requires.
        provider(
            "tw256",
            "twilio",
            &[&key("tw256")],
            "public_url = \"https://hooks.example.com/hooks/tw256\"\nalgorithm = \"sha256\"",
        ),
        provider("alc", "alcmeon", &[&key("alc")], ""),
        provider("acx", "acculynx", &[&key("acx")], ""),
        provider("open", "none", &[], ""),
        provider(
            "di",
            "dialog-insight",
            &[],
            &format!(
                "public_keys = [{}]",
                toml_str(&format!("file:{}", di_key.display()))
            ),
        ),
        provider("oa", "oauth", &[], "")
            + &format!(
                "[provider.oauth]\nmode = \"builtin\"\nclients = [{{ id = \"sender\", secret = {} }}]\n",
                toml_str(&key("oa"))
            ),
    ]
    .concat()
}

/// Writes a config holding `providers` (the file send-test reads; no gateway runs on it).
fn write_config(path: &Path, providers: &str) {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\ntoken = {}\n{providers}",
        toml_str(common::ADMIN_TOKEN)
    );
    std::fs::write(path, text).unwrap();
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Runs `hookgate send-test --config CONFIG --provider NAME --url URL EXTRA...`.
fn send_test(config: &Path, name: &str, url: &str, extra: &[&str]) -> Output {
    Command::new(common::hookgate_bin())
        .arg("send-test")
        .arg("--config")
        .arg(config)
        .args(["--provider", name, "--url", url])
        .args(extra)
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_SEND_TEST_TOKEN")
        .output()
        .expect("run hookgate send-test")
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Starts a gateway with every provider, sends a test as `name`, checks exit 0, the printed 200
/// and that exactly one event of `name` is stored; returns that event.
fn sends_and_stores(name: &str, extra: &[&str]) -> serde_json::Value {
    let gw = Gateway::start(&providers("right"));
    let url = format!("{}/hooks/{name}", gw.public_url);
    let output = send_test(gw.config_path(), name, &url, extra);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{name}: {}",
        describe(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("200"), "{name}: {}", describe(&output));
    assert!(stdout.contains("accepted"), "{name}: {}", describe(&output));
    let events = gw.all_events(Some(name));
    assert_eq!(events.len(), 1, "{name}: {events:?}");
    events[0].clone()
}

#[test]
fn standard_webhooks() {
    let event = sends_and_stores("sw", &[]);
    let id = event["event_id"].as_str().unwrap();
    assert!(id.starts_with("test_"), "the generated webhook-id: {id}");
}

#[test]
fn github() {
    let event = sends_and_stores("gh", &[]);
    assert!(event["event_id"].as_str().unwrap().starts_with("test_"));
    // The fixture's body, byte for byte.
    let fixture = common::Fixture::load("github/ping.json");
    assert_eq!(common::event_body(&event), fixture.body.as_bytes());
}

#[test]
fn hmac() {
    sends_and_stores("mac", &[]);
}

#[test]
fn stripe() {
    let event = sends_and_stores("stripe", &[]);
    assert_eq!(event["event_id"], "evt_3PqDemoFixture0001");
}

#[test]
fn a_second_send_of_a_fixture_with_its_own_id_is_a_duplicate() {
    let gw = Gateway::start(&providers("right"));
    let url = format!("{}/hooks/stripe", gw.public_url);
    for expected in ["accepted", "duplicate"] {
        let output = send_test(gw.config_path(), "stripe", &url, &[]);
        assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains(expected),
            "{}",
            describe(&output)
        );
    }
}

#[test]
fn shopify() {
    let event = sends_and_stores("shop", &[]);
    assert!(event["event_id"].as_str().unwrap().starts_with("test_"));
}

#[test]
fn slack() {
    sends_and_stores("slack", &[]);
}

#[test]
fn twilio_form_post_signed_over_the_public_url() {
    let event = sends_and_stores("tw", &[]);
    let fixture = common::Fixture::load("twilio/incoming-sms.json");
    assert_eq!(common::event_body(&event), fixture.body.as_bytes());
    assert!(event.get("json").is_none() || event["json"].is_null());
}

#[test]
fn twilio_json_body_carries_its_hash_in_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    std::fs::write(&file, br#"{"property": "value", "boolean": true}"#).unwrap();
    let event = sends_and_stores("tw", &["--file", file.to_str().unwrap()]);
    assert_eq!(event["json"]["property"], "value");
}

#[test]
fn twilio_sha256_when_the_provider_requires_it() {
    // The provider refuses SHA-1: stored means send-test signed with HMAC-SHA256 and said so.
    let event = sends_and_stores("tw256", &[]);
    let fixture = common::Fixture::load("twilio/incoming-sms.json");
    assert_eq!(common::event_body(&event), fixture.body.as_bytes());
}

#[test]
fn alcmeon() {
    sends_and_stores("alc", &[]);
}

#[test]
fn acculynx() {
    let event = sends_and_stores("acx", &[]);
    // The fixture's envelope carries the id.
    assert_eq!(event["event_id"], "a653de1a-84a6-488c-90bc-f6c8e990bf51");
}

#[test]
fn none() {
    sends_and_stores("open", &[]);
}

#[test]
fn dialog_insight_with_the_fixture_private_key() {
    let key = fixture_path("dialog-insight/test-private-key.pem");
    let event = sends_and_stores("di", &["--private-key", key.to_str().unwrap()]);
    // The sample is Dialog Insight's "Test" button: an isTest event.
    assert_eq!(event["source"], "test");
}

#[test]
fn oauth_builtin_fetches_a_token_first() {
    sends_and_stores("oa", &[]);
}

#[test]
fn a_file_is_sent_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.json");
    let body = "{\"id\": \"custom-1\",\n \"text\": \"é\" }\n";
    std::fs::write(&file, body).unwrap();
    let event = sends_and_stores("gh", &["--file", file.to_str().unwrap()]);
    assert_eq!(common::event_body(&event), body.as_bytes());
}

#[test]
fn wrong_secrets_get_401_and_exit_1() {
    let gw = Gateway::start(&providers("right"));
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.toml");
    write_config(&wrong, &providers("wrong"));
    let names = [
        "sw", "gh", "mac", "stripe", "shop", "slack", "tw", "tw256", "alc", "acx",
    ];
    for name in names {
        let url = format!("{}/hooks/{name}", gw.public_url);
        let output = send_test(&wrong, name, &url, &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{name}: {}",
            describe(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("401"),
            "{name}: {}",
            describe(&output)
        );
    }
    // A private key that is not the configured one's, and a client secret the gateway refuses.
    let rotation_key = fixture_path("dialog-insight/test-rotation-private-key.pem");
    let output = send_test(
        &wrong,
        "di",
        &format!("{}/hooks/di", gw.public_url),
        &["--private-key", rotation_key.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("401"));
    let output = send_test(&wrong, "oa", &format!("{}/hooks/oa", gw.public_url), &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid_client"),
        "{}",
        describe(&output)
    );
    assert!(gw.all_events(None).is_empty());
}

#[test]
fn the_default_url_is_the_configured_listener() {
    let gw = Gateway::start(&providers("right"));
    // The same config, with the port the gateway got and the wildcard address.
    let text = std::fs::read_to_string(gw.config_path()).unwrap();
    let wildcard = format!("listen = \"0.0.0.0:{}\"", gw.public_addr.port());
    let text = text.replacen("listen = \"127.0.0.1:0\"", &wildcard, 1);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, text).unwrap();
    let output = Command::new(common::hookgate_bin())
        .args(["send-test", "--provider", "gh"])
        .env("HOOKGATE_CONFIG", &config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected = format!("http://127.0.0.1:{}/hooks/gh", gw.public_addr.port());
    assert!(stdout.contains(&expected), "{}", describe(&output));
    assert_eq!(gw.all_events(Some("gh")).len(), 1);
}

#[test]
fn usage_errors_exit_2_and_print_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, &providers("right"));
    let url = "http://127.0.0.1:9/hooks/x";
    let cases: [(&str, &[&str], &str); 5] = [
        ("nope", &[], "no provider \"nope\""),
        ("di", &[], "--private-key"),
        ("gh", &["--token", "t"], "--token applies to oauth"),
        ("gh", &["--private-key", "k.pem"], "--private-key applies"),
        ("gh", &["--file", "/nonexistent/body.json"], "cannot read"),
    ];
    for (name, extra, expected) in cases {
        let output = send_test(&config, name, url, extra);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name} {extra:?}: {}",
            describe(&output)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{name} {extra:?}: {}",
            describe(&output)
        );
        assert!(!stderr.contains("right-"), "a secret was printed: {stderr}");
    }
    let ftp = send_test(&config, "gh", "ftp://example.com/x", &[]);
    assert_eq!(ftp.status.code(), Some(2), "{}", describe(&ftp));
    assert!(String::from_utf8_lossy(&ftp.stderr).contains("not an http(s) URL"));
    let missing = send_test(&dir.path().join("absent.toml"), "gh", url, &[]);
    assert_eq!(missing.status.code(), Some(2), "{}", describe(&missing));
}

#[test]
fn an_unreachable_gateway_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    write_config(&config, &providers("right"));
    // Port 9 (discard) on loopback: nothing listens there in the test environment.
    let output = send_test(&config, "gh", "http://127.0.0.1:9/hooks/gh", &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
}

#[test]
fn nothing_secret_is_printed() {
    let gw = Gateway::start(&providers("right"));
    for name in ["sw", "gh", "stripe", "oa"] {
        let url = format!("{}/hooks/{name}", gw.public_url);
        let output = send_test(gw.config_path(), name, &url, &[]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{name}: {}",
            describe(&output)
        );
        let all = describe(&output);
        assert!(!all.contains("right-"), "{name}: {all}");
        assert!(
            !all.contains("Bearer") && !all.contains("hgat1."),
            "{name}: {all}"
        );
    }
}
