//! A full disk: answers turn 503 with Retry-After, the process keeps running, and nothing that
//! was answered 200 is missing. The gateway runs in a private mount namespace whose data dir is
//! a 4 MiB tmpfs (`unshare -rm`), so no real disk is filled.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::sign;
use common::{provider, Gateway};

const TMPFS_SIZE: &str = "4m";
const BODY_SIZE: usize = 200 * 1024;

/// `unshare -rm sh -c 'mount tmpfs on the data dir && exec hookgate serve --config ...'`.
fn in_small_tmpfs(bin: &Path, config: &Path, data_dir: &Path) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["-rm", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={TMPFS_SIZE} tmpfs \"$1\" && exec \"$2\" serve --config \"$3\""
        ))
        .arg("sh")
        .arg(data_dir)
        .arg(bin)
        .arg(config);
    cmd
}

/// Fails the test with a clear message when this machine cannot make the mount namespace.
fn require_unshare() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new("unshare")
        .args(["-rm", "sh", "-c"])
        .arg(format!("mount -t tmpfs -o size={TMPFS_SIZE} tmpfs \"$1\""))
        .arg("sh")
        .arg(dir.path())
        .output();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "disk-full test needs `unshare -rm` and a tmpfs mount (user + mount namespaces); \
             it failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(err) => panic!("disk-full test needs the `unshare` command: {err}"),
    }
}

#[test]
fn full_disk_answers_503_and_loses_no_ack() {
    require_unshare();
    let mut gw = Gateway::builder()
        .server(&format!("max_body_bytes = {}", 256 * 1024))
        .config(&provider("p", "none", &[], "event_id = \"header:X-Id\""))
        .config("\n[store]\ncheckpoint_mb = 1\n")
        .wrapper(in_small_tmpfs)
        .start();

    let mut acked: Vec<(String, u64, u64)> = Vec::new();
    let mut unavailable = 0;
    // 100 x 200 KiB is five times the tmpfs; stop after a few 503s in a row.
    for i in 0..100 {
        let id = format!("fill-{i}");
        let body = common::pseudo_random_bytes(BODY_SIZE, i);
        let reply = gw.post("p", &sign::headers(&[("X-Id", &id)]), &body);
        match reply.status {
            200 => {
                let (status, seq) = reply.ack();
                assert_eq!(status, "accepted", "{id}");
                acked.push((id, seq, i));
                unavailable = 0;
            }
            503 => {
                assert_eq!(reply.header("retry-after"), Some("5"), "{id}: 503 headers");
                unavailable += 1;
                if unavailable == 5 {
                    break;
                }
            }
            other => panic!("{id}: {other} {}", reply.text()),
        }
    }
    assert_eq!(
        unavailable,
        5,
        "never got five 503s in a row after {} acks into a {TMPFS_SIZE} tmpfs",
        acked.len()
    );
    assert!(
        !acked.is_empty(),
        "nothing was accepted before the disk filled"
    );
    eprintln!(
        "{} acks of {BODY_SIZE} bytes before the disk filled",
        acked.len()
    );
    assert!(gw.is_running(), "the gateway exited on a full disk");
    // Refused bodies are not written: they bring no checkpoint closer (senders retrying into
    // a full disk made checkpoints come due, whose reopening of sled could fail there).
    let checkpoints = gw.metric("hookgate_store_checkpoints_total", &[]);
    for i in 0..20 {
        let id = format!("retry-{i}");
        let body = common::pseudo_random_bytes(BODY_SIZE, 1000 + i);
        let reply = gw.post("p", &sign::headers(&[("X-Id", &id)]), &body);
        assert_eq!(reply.status, 503, "{id}");
    }
    assert_eq!(
        gw.metric("hookgate_store_checkpoints_total", &[]),
        checkpoints
    );
    assert!(gw.is_running(), "the gateway exited on a full disk");
    // Counted as refusals, their lines sampled (a line a request flooded the log).
    assert!(
        gw.metric(
            "hookgate_rejections_total",
            &[("cause", "store_unavailable")]
        )
        .unwrap_or(0.0)
            >= 5.0
    );
    assert!(
        !gw.logs().contains("panicked"),
        "the gateway panicked:\n{}",
        gw.logs()
    );
    assert_eq!(gw.request("GET", "/healthz", b"").status, 200);
    // Alive, but not ready: a load balancer sends the webhooks elsewhere.
    assert_eq!(gw.request("GET", "/readyz", b"").status, 503);

    let events = gw.all_events(Some("p"));
    for (id, seq, n) in &acked {
        let stored: Vec<_> = events.iter().filter(|e| e["event_id"] == *id).collect();
        assert_eq!(
            stored.len(),
            1,
            "{id} acked at seq {seq}, stored {stored:?}"
        );
        assert_eq!(stored[0]["seq"], *seq);
        assert!(
            common::event_body(stored[0]) == common::pseudo_random_bytes(BODY_SIZE, *n),
            "{id}: body changed"
        );
    }
}
