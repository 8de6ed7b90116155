//! The shipped systemd unit is valid: `systemd-analyze verify` accepts it once its
//! `/usr/local/bin/hookgate` points at the binary under test.

use std::process::Command;

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/hookgate.service"
    ))
    .expect("systemd/hookgate.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/hookgate serve --config "));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("hookgate.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/hookgate", env!("CARGO_BIN_EXE_hookgate")),
    )
    .expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (from Debian's systemd package) must be installed");
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
