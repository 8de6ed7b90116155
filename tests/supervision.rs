//! Background tasks run under one supervisor: a forwarder that dies (here made to panic through
//! the test-only `HOOKGATE_TEST_PANIC_TASK`) is logged by name and takes the process down with
//! a non-zero exit, for systemd to restart it, instead of leaving its destination silently still.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{provider, sign, Gateway};

fn with_a_dying_forwarder(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKGATE_TEST_PANIC_TASK", "destination crm");
    command
}

#[test]
fn a_background_task_that_dies_stops_the_process_and_is_named() {
    let mut gw = Gateway::builder()
        .config(&format!(
            "{}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\nsigning_secret = \"{}\"\n",
            provider("open", "none", &[], ""),
            sign::whsec("supervision-test")
        ))
        .wrapper(with_a_dying_forwarder)
        .start();
    let status = gw.wait_exit(Duration::from_secs(20));
    let logs = gw.logs();
    assert!(!status.success(), "{status:?}: {logs}");
    assert!(
        logs.contains("destination crm") && logs.contains("stopped on its own"),
        "{logs}"
    );
    assert!(
        logs.contains("a background task stopped unexpectedly"),
        "{logs}"
    );
}
