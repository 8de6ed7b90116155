//! The shipped systemd unit (the one the .deb installs): `systemd-analyze verify` accepts it once
//! its `/usr/bin/hookgate` points at the binary under test, `systemd-analyze security` rates its
//! sandbox at most [`MAX_EXPOSURE`], and it keeps the behaviour docs/operations.md describes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest exposure `systemd-analyze security` may give the unit (0 is best, 10 worst).
const MAX_EXPOSURE: f64 = 1.5;

fn unit() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/hookgate.service"
    ))
    .expect("systemd/hookgate.service")
}

/// The unit, with the binary under test as its binary, in a temporary directory.
fn unit_under_test(dir: &Path) -> PathBuf {
    let unit = unit();
    assert!(unit.contains("ExecStart=/usr/bin/hookgate serve --config "));
    let path = dir.join("hookgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/bin/hookgate", env!("CARGO_BIN_EXE_hookgate")),
    )
    .expect("write unit");
    path
}

fn systemd_analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (from Debian's systemd package) must be installed")
}

#[test]
fn systemd_unit_verifies() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = systemd_analyze(&["verify"], &unit_under_test(dir.path()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = stderr
        .lines()
        // Only the unit itself is under test, not the host's other units.
        .filter(|line| line.contains("hookgate.service"))
        .collect();
    assert!(
        output.status.success() && problems.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}

#[test]
fn systemd_unit_is_hardened() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = systemd_analyze(
        &["security", "--offline=true", "--no-pager"],
        &unit_under_test(dir.path()),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    // "→ Overall exposure level for hookgate.service: 1.1 OK 🙂"
    let exposure: f64 = stdout
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for hookgate.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|level| level.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in systemd-analyze security's output:\n{stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{stdout}"
    );
}

#[test]
fn systemd_unit_keeps_its_behaviour() {
    let unit = unit();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for expected in [
        "Type=notify",
        "User=hookgate",
        "StateDirectory=hookgate",
        "ExecStartPre=/usr/bin/hookgate check-config --config /etc/hookgate/config.toml",
        "ExecStart=/usr/bin/hookgate serve --config /etc/hookgate/config.toml",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "WatchdogSec=30",
        "CapabilityBoundingSet=",
        "ReadWritePaths=/var/lib/hookgate",
        "UMask=0077",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "PrivateDevices=yes",
    ] {
        assert!(lines.contains(&expected), "no `{expected}` in the unit");
    }
    // A config with problems fails `systemctl reload` before SIGHUP is sent: the check first
    // (it reported success, hookgate refusing the config in its log only).
    let reloads: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.strip_prefix("ExecReload="))
        .collect();
    assert_eq!(
        reloads,
        [
            "/usr/bin/hookgate check-config --config /etc/hookgate/config.toml",
            "/bin/kill -HUP $MAINPID"
        ]
    );
    // The packaged config reads its admin token from the credential the unit loads.
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/config.toml"
    ))
    .expect("packaging/config.toml");
    assert!(config.contains(r#"token = "credential:admin-token""#));
    assert!(lines.contains(&"LoadCredential=admin-token:/etc/hookgate/credentials/admin-token"));
}
