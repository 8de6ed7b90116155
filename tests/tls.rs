//! TLS on the public listener: webhooks over TLS 1.2 and 1.3 with a generated certificate,
//! plain HTTP refused, a new certificate picked up on SIGHUP, and a key that does not match its
//! certificate refused by `check-config`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::raw::RawConn;
use common::{provider, wait_until, Gateway};
use nix::sys::signal::Signal;

/// A self-signed certificate for `localhost`, written as PEM files; returns its DER.
fn write_certificate(dir: &Path) -> Vec<u8> {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), generated.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), generated.signing_key.serialize_pem()).unwrap();
    generated.cert.der().to_vec()
}

fn client(trusted_der: &[u8], version: reqwest::tls::Version) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_der(trusted_der).unwrap())
        .min_tls_version(version)
        .max_tls_version(version)
        .tls_info(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs a webhook over TLS; returns the status and the certificate the server presented.
fn post(client: &reqwest::blocking::Client, gw: &Gateway, body: &str) -> (u16, Vec<u8>) {
    let url = format!("https://localhost:{}/hooks/open", gw.public_addr.port());
    let response = client.post(url).body(body.to_string()).send().unwrap();
    let presented = response
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .unwrap()
        .to_vec();
    (response.status().as_u16(), presented)
}

fn tls_gateway(dir: &Path) -> Gateway {
    Gateway::builder()
        .server(&format!(
            "tls_cert = {}\ntls_key = {}",
            common::toml_str(&dir.join("cert.pem").to_string_lossy()),
            common::toml_str(&dir.join("key.pem").to_string_lossy())
        ))
        .config(&provider("open", "none", &[], ""))
        .start()
}

#[test]
fn webhooks_over_tls_12_and_13_and_a_new_certificate_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let first = write_certificate(dir.path());
    let gw = tls_gateway(dir.path());

    for (n, version) in [
        reqwest::tls::Version::TLS_1_2,
        reqwest::tls::Version::TLS_1_3,
    ]
    .into_iter()
    .enumerate()
    {
        let (status, presented) = post(&client(&first, version), &gw, &format!("{{\"n\":{n}}}"));
        assert_eq!(status, 200, "{version:?}");
        assert_eq!(presented, first);
    }
    assert_eq!(gw.all_events(None).len(), 2, "both stored");

    let plain = reqwest::blocking::Client::new()
        .post(format!(
            "http://127.0.0.1:{}/hooks/open",
            gw.public_addr.port()
        ))
        .body("{}")
        .timeout(Duration::from_secs(5))
        .send();
    assert!(
        plain.map_or(true, |r| r.status().as_u16() != 200),
        "plain HTTP on the TLS listener is not served"
    );

    let second = write_certificate(dir.path());
    let before = gw.logs().matches("Config reloaded").count();
    gw.signal(Signal::SIGHUP);
    wait_until(Duration::from_secs(10), "the reload", || {
        gw.logs().matches("Config reloaded").count() > before
    });
    let (status, presented) = post(
        &client(&second, reqwest::tls::Version::TLS_1_3),
        &gw,
        "{\"n\":3}",
    );
    assert_eq!(status, 200);
    assert_eq!(presented, second, "new handshakes get the new certificate");
}

/// The per-address connection cap holds before a TLS handshake: it was checked once the
/// handshake was done, so connections that never start one took a handshake slot each, past
/// the cap, until actix's handshake timeout (3 s).
#[test]
fn the_per_address_cap_holds_before_the_tls_handshake() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path());
    let gw = Gateway::builder()
        .server(&format!(
            "tls_cert = {}\ntls_key = {}",
            common::toml_str(&dir.path().join("cert.pem").to_string_lossy()),
            common::toml_str(&dir.path().join("key.pem").to_string_lossy())
        ))
        .config("[limits]\nmax_connections_per_address = 2\n")
        .config(&provider("open", "none", &[], ""))
        .start();
    let _silent: Vec<RawConn> = (0..2).map(|_| RawConn::connect(gw.public_addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = RawConn::connect(gw.public_addr);
    assert!(
        third.closed_silently(Duration::from_secs(2)),
        "over the cap, shut at accept"
    );
    assert_eq!(
        gw.metric(
            "hookgate_rejections_total",
            &[("cause", "connections_per_address")]
        ),
        Some(1.0)
    );
}

/// 256 connections that never start a TLS handshake do not hold up another sender: actix-tls
/// took no connection on a worker with 256 handshakes under way, so every sender's connection
/// waited, unread, until those timed out (3 s, again and again).
#[test]
fn silent_handshakes_do_not_hold_up_other_senders() {
    let dir = tempfile::tempdir().unwrap();
    let der = write_certificate(dir.path());
    let gw = Gateway::builder()
        .server(&format!(
            "workers = 1\ntls_cert = {}\ntls_key = {}",
            common::toml_str(&dir.path().join("cert.pem").to_string_lossy()),
            common::toml_str(&dir.path().join("key.pem").to_string_lossy())
        ))
        .config(&provider("open", "none", &[], ""))
        .start();
    let attacker: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let _silent: Vec<RawConn> = (0..256)
        .map(|_| RawConn::connect_from(gw.public_addr, attacker))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, _) = post(&client(&der, reqwest::tls::Version::TLS_1_3), &gw, "{}");
    assert_eq!(status, 200);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path());
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        other.signing_key.serialize_pem(),
    )
    .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ntls_cert = {}\ntls_key = {}\n[admin]\ntoken = \"0123456789abcdef0123\"\n{}",
            common::toml_str(&dir.path().join("cert.pem").to_string_lossy()),
            common::toml_str(&dir.path().join("key.pem").to_string_lossy()),
            provider("open", "none", &["x"; 0], "")
        ),
    )
    .unwrap();
    let output = std::process::Command::new(common::hookgate_bin())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("does not match the certificate"), "{text}");
}

/// `send-test` without `--url` on a gateway whose public listener serves TLS says to pass one
/// (it posted plain http, and failed with a connection error).
#[test]
fn send_test_without_a_url_on_a_tls_listener_asks_for_one() {
    let dir = tempfile::tempdir().unwrap();
    write_certificate(dir.path());
    let gw = tls_gateway(dir.path());
    let output = std::process::Command::new(common::hookgate_bin())
        .args(["send-test", "--config"])
        .arg(gw.config_path())
        .args(["--provider", "open"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("serves TLS: pass --url https://"),
        "{stderr}"
    );
}
