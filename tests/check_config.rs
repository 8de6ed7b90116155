//! `hookgate check-config`: the bundled config is valid; a bad one gets every problem reported
//! at once (with a line number where TOML gives one); `serve` refuses a missing secret.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

fn check_config(config: &Path) -> Output {
    Command::new(common::hookgate_bin())
        .arg("check-config")
        .arg("--config")
        .arg(config)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .expect("run hookgate check-config")
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn the_bundled_config_is_valid() {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let out = check_config(&config);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("config OK"), "{printed}");
}

/// Line 4 holds the unknown key; the other problems are semantic.
const BROKEN: &str = r#"[server]
listen = "127.0.0.1:0"
data_dir = "data"
colour = "blue"

[admin]
listen = "127.0.0.1:0"
token = "admin-token-long-enough"

[[provider]]
name = "alpha"
verify = "standard-webhooks"
secrets = ["env:HOOKGATE_TEST_SURELY_UNSET_SECRET"]

[[provider]]
name = "beta"
verify = "rot13"
secrets = ["beta-secret"]

[[provider]]
name = "alpha"
verify = "github"
secrets = ["gamma-secret"]

[[provider]]
name = "delta"
verify = "github"
secrets = "delta-secret-not-a-list"
"#;

#[test]
fn every_problem_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let out = check_config(&write_config(dir.path(), BROKEN));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let line_of = |needle: &str| {
        stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no problem mentions {needle:?}; stderr:\n{stderr}"))
            .to_string()
    };
    let unknown = line_of("colour");
    assert!(
        unknown.contains("line 4"),
        "unknown key without its line: {unknown}"
    );
    line_of("HOOKGATE_TEST_SURELY_UNSET_SECRET");
    line_of("rot13");
    let duplicate = stderr.lines().any(|l| {
        let l = l.to_lowercase();
        l.contains("alpha") && (l.contains("duplicate") || l.contains("twice"))
    });
    assert!(
        duplicate,
        "duplicate provider name not reported; stderr:\n{stderr}"
    );
    // A secret where a list is expected: the error says so without it.
    line_of("expected a sequence");
    // The secrets that are set are never printed.
    for secret in [
        "beta-secret",
        "gamma-secret",
        "admin-token-long-enough",
        "delta-secret-not-a-list",
    ] {
        assert!(!stderr.contains(secret), "{secret} printed: {stderr}");
    }
}

#[test]
fn serve_refuses_a_missing_secret() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_toml(
        &dir.path().join("data"),
        "",
        &common::provider(
            "alpha",
            "github",
            &["env:HOOKGATE_TEST_SURELY_UNSET_SECRET"],
            "",
        ),
    );
    let path = write_config(dir.path(), &config);
    let (status, stderr) = common::serve_until_it_exits(&path, Duration::from_secs(20));
    assert!(!status.success(), "serve exited 0 without its secret");
    assert!(
        stderr.contains("HOOKGATE_TEST_SURELY_UNSET_SECRET"),
        "the error does not name the variable: {stderr}"
    );
}

/// Two listeners on one port fail `serve` after it opened the store (and a unit's restarts
/// loop on it): `check-config` refuses them first (it said "config OK").
#[test]
fn listeners_on_one_port_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"[server]
listen = "127.0.0.1:18080"
data_dir = "data"

[admin]
listen = "0.0.0.0:18080"
token = "admin-token-long-enough"

[[provider]]
name = "open"
verify = "none"
"#;
    let out = check_config(&write_config(dir.path(), config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("[admin] listen 0.0.0.0:18080 takes the port of [server] listen"),
        "{stderr}"
    );
}
