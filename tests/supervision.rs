//! Background tasks run under one supervisor: a forwarder that dies (here made to panic through
//! the test-only `HOOKGATE_TEST_PANIC_TASK`) is logged by name and takes the process down with
//! a non-zero exit, for systemd to restart it, instead of leaving its destination silently still.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{provider, sign, Gateway};

/// `hookgate serve` with the test-only fault that makes the task named `task` panic.
fn serve_with_a_panicking(task: &str, bin: &Path, config: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKGATE_TEST_PANIC_TASK", task);
    command
}

fn with_a_dying_forwarder(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    serve_with_a_panicking("destination crm", bin, config)
}

fn with_a_dying_delivery(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    serve_with_a_panicking("delivery crm", bin, config)
}

/// An open provider and a destination `crm`, run through `wrapper`.
fn gateway(wrapper: common::Wrapper) -> Gateway {
    Gateway::builder()
        .config(&format!(
            "{}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\nsigning_secret = \"{}\"\n",
            provider("open", "none", &[], ""),
            sign::whsec("supervision-test")
        ))
        .wrapper(wrapper)
        .start()
}

#[test]
fn a_background_task_that_dies_stops_the_process_and_is_named() {
    let mut gw = gateway(with_a_dying_forwarder);
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

/// A delivery task runs outside the forwarders' group (it ends on its own): one that panicked
/// left its event in flight for good, the destination's cursor stuck below it, and nothing
/// said so. It stops the process now, named, for systemd to restart it.
#[test]
fn a_delivery_that_panics_stops_the_process_and_is_named() {
    let mut gw = gateway(with_a_dying_delivery);
    assert_eq!(gw.post("open", &[], b"{}").ack().0, "accepted");
    let status = gw.wait_exit(Duration::from_secs(20));
    let logs = gw.logs();
    assert!(!status.success(), "{status:?}: {logs}");
    assert!(
        logs.contains("delivery crm") && logs.contains("A task panicked"),
        "{logs}"
    );
}

/// A panic's message reaches the log whatever `RUST_LOG` names (with the panic logged as any
/// line, a filter that left out its module dropped it, and the operator saw only the task's
/// name).
#[test]
fn a_panic_s_message_is_logged_whatever_the_log_filter() {
    let mut gw = Gateway::builder()
        .config(&format!(
            "{}\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\nsigning_secret = \"{}\"\n",
            provider("open", "none", &[], ""),
            sign::whsec("supervision-test")
        ))
        .env("HOOKGATE_TEST_PANIC_TASK", "delivery crm")
        .env("RUST_LOG", "hookgate=info,hookgate::cmd=off")
        .start();
    assert_eq!(gw.post("open", &[], b"{}").ack().0, "accepted");
    let status = gw.wait_exit(Duration::from_secs(20));
    let logs = gw.logs();
    assert!(!status.success(), "{status:?}: {logs}");
    assert!(logs.contains("names this task"), "{logs}");
}
