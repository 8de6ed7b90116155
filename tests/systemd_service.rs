//! hookgate under systemd's protocols, with the test standing in for systemd: `Type=notify`
//! (`READY=1` once the listeners are bound, `STOPPING=1` on SIGTERM), the watchdog (`WATCHDOG=1`
//! while the committer answers, none once it is wedged), and secrets read from
//! `$CREDENTIALS_DIRECTORY` (`credential:NAME`).
#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{provider, sign, Gateway, GatewayBuilder};
use nix::sys::signal::Signal;

/// What the tests give as `WATCHDOG_USEC`: hookgate pings every quarter of it.
const WATCHDOG_USEC: &str = "400000";

/// The notification socket systemd would pass as `$NOTIFY_SOCKET`.
struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The next message, or `None` after `timeout` without one.
    fn recv(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(err) => panic!("recv on the notify socket: {err}"),
        }
    }

    /// Messages until one has `line` among its lines; panics after `timeout`.
    fn until(&self, line: &str, timeout: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.recv(left) {
                Some(message) if message.lines().any(|l| l == line) => return (message, before),
                Some(message) => before.push(message),
                None => break,
            }
        }
        panic!("no {line} within {timeout:?}; received {before:?}");
    }
}

/// Runs the gateway as systemd does, with `$WATCHDOG_PID` naming the gateway's own process.
fn with_own_watchdog_pid(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"WATCHDOG_PID=$$ exec "$0" serve --config "$1""#)
        .arg(bin)
        .arg(config);
    cmd
}

fn under_systemd(notify: &NotifySocket) -> GatewayBuilder {
    Gateway::builder()
        .config(&provider("gh", "github", &["s"], ""))
        .wrapper(with_own_watchdog_pid)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", WATCHDOG_USEC)
}

fn is_watchdog(message: &str) -> bool {
    message.lines().any(|l| l == "WATCHDOG=1")
}

#[test]
fn ready_once_listening_watchdog_while_alive_stopping_on_sigterm() {
    let notify = NotifySocket::bind();
    let mut gw = under_systemd(&notify).start();

    // READY=1 comes first, and names the public listener's port, which is only known once it is
    // bound (port 0); that listener answers.
    let first = notify
        .recv(Duration::from_secs(20))
        .expect("a first message");
    assert!(first.lines().any(|l| l == "READY=1"), "first: {first:?}");
    let status = first
        .lines()
        .find_map(|l| l.strip_prefix("STATUS="))
        .expect("a STATUS= with READY=1");
    assert!(
        status.contains(&format!("public={}", gw.public_addr)),
        "{status:?} does not name {}",
        gw.public_addr
    );
    assert_eq!(gw.request("GET", "/healthz", b"").status, 200);

    // Pings every 100 ms while alive: those queued meanwhile read first, then five timed.
    while notify.recv(Duration::from_millis(1)).is_some() {}
    let started = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let message = notify
            .recv(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("{pings} ping(s), then none for 5 s"));
        assert!(is_watchdog(&message), "{message:?}");
        pings += 1;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "5 pings in {:?}: faster than every WATCHDOG_USEC / 4 (a slow check brings the next at once)",
        started.elapsed()
    );

    gw.signal(Signal::SIGTERM);
    let (stopping, _) = notify.until("STOPPING=1", Duration::from_secs(20));
    assert!(!is_watchdog(&stopping), "{stopping:?}");
    assert_eq!(gw.wait_exit(common::EXIT_TIMEOUT).code(), Some(0));
}

#[test]
fn no_watchdog_ping_once_the_committer_is_wedged() {
    // The store's open syncs once and each ping's round through the committer once more: the
    // sixth sync never returns.
    let notify = NotifySocket::bind();
    let gw = under_systemd(&notify)
        .env("HOOKGATE_TEST_HANG_FSYNC_AFTER", "5")
        .start();
    notify.until("READY=1", Duration::from_secs(20));
    let (_, before) = notify.until("WATCHDOG=1", Duration::from_secs(5));
    assert!(before.is_empty(), "{before:?}");

    // Pings stop within a few intervals, and none comes for 2 s (20 intervals) after that.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match notify.recv(Duration::from_secs(2)) {
            Some(message) if is_watchdog(&message) => assert!(
                Instant::now() < deadline,
                "still pinging with a wedged committer; logs:\n{}",
                gw.logs()
            ),
            Some(message) => panic!("unexpected {message:?}"),
            None => break,
        }
    }
    // The process itself still runs and answers: only the watchdog can tell; a load balancer
    // is told it cannot take webhooks (readyz answered "ready").
    assert_eq!(gw.request("GET", "/healthz", b"").status, 200);
    // Once the batch under way is older than readyz's 1 s and the default ack deadline (4 s).
    common::wait_until(Duration::from_secs(10), "readyz 503", || {
        gw.request("GET", "/readyz", b"").status == 503
    });
    let logs = gw.logs();
    assert!(
        logs.contains("Not pinging the systemd watchdog")
            && logs.contains("committer does not answer"),
        "{logs}"
    );
}

/// On JetStream, the NATS servers out of reach are not the gateway's failure: the watchdog
/// goes on being pinged while webhooks get 503 (it was not, and systemd killed every gateway
/// at once, then restarted them into connection refused for as long as the outage lasted).
#[test]
fn the_watchdog_is_pinged_while_the_nats_servers_are_away() {
    let dir = tempfile::tempdir().unwrap();
    let nats = common::nats::NatsServer::start(dir.path());
    let notify = NotifySocket::bind();
    let gw = under_systemd(&notify)
        .config(&format!(
            "\n[store]\nbackend = \"jetstream\"\nservers = [{}]\n",
            common::toml_str(&nats.url())
        ))
        .start();
    notify.until("READY=1", Duration::from_secs(20));
    notify.until("WATCHDOG=1", Duration::from_secs(5));
    nats.kill_hard();
    std::thread::sleep(Duration::from_millis(500));
    let body = b"{}";
    let reply = gw.post("gh", &sign::github_headers("s", "d-1", body), body);
    assert_eq!(reply.status, 503, "{}", reply.text());
    // Not ready, so that a load balancer sends the webhooks to another gateway (it answered
    // "ready" for as long as the servers were away).
    assert_eq!(gw.request("GET", "/readyz", b"").status, 503);
    // 3 s: more than 7 watchdog intervals.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let message = notify.recv(Duration::from_secs(1));
        assert!(
            message.as_deref().is_some_and(is_watchdog),
            "no watchdog ping with the servers away: {message:?}; logs:\n{}",
            gw.logs()
        );
    }
}

#[test]
fn secrets_from_systemd_credentials() {
    let credentials = tempfile::tempdir().unwrap();
    let secret = "github-secret-from-a-credential";
    std::fs::write(
        credentials.path().join("github-secret"),
        format!("{secret}\n"),
    )
    .unwrap();
    let gw = Gateway::builder()
        .config(&provider("gh", "github", &["credential:github-secret"], ""))
        .env("CREDENTIALS_DIRECTORY", credentials.path())
        .start();
    let body = br#"{"action":"opened"}"#;
    let reply = gw.post("gh", &sign::github_headers(secret, "d-1", body), body);
    assert_eq!(reply.ack().0, "accepted");
    let forged = gw.post("gh", &sign::github_headers("other", "d-2", body), body);
    assert_eq!(forged.status, 401);
    assert!(!gw.logs().contains(secret));

    // Outside systemd (no $CREDENTIALS_DIRECTORY), the config names what is missing.
    let check = Command::new(common::hookgate_bin())
        .args(["check-config", "--config"])
        .arg(gw.config_path())
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("credential:github-secret needs $CREDENTIALS_DIRECTORY"),
        "{stderr}"
    );
}

/// The watchdog is pinged while a reload runs (one that stops old workers may take ~35 s): the
/// pings were sent from the loop that ran the reload, and stopped meanwhile, while systemd
/// keeps the watchdog armed through a reload and would kill the gateway.
#[test]
fn the_watchdog_is_pinged_while_a_reload_runs() {
    let notify = NotifySocket::bind();
    let gw = under_systemd(&notify)
        .env("HOOKGATE_TEST_RELOAD_DELAY_MS", "3000")
        .start();
    notify.until("READY=1", Duration::from_secs(20));
    gw.signal(Signal::SIGHUP);
    notify.until("RELOADING=1", Duration::from_secs(10));
    let (_, during) = notify.until("READY=1", Duration::from_secs(20));
    let pings = during.iter().filter(|m| is_watchdog(m)).count();
    // 3 s of reload, a ping every 100 ms.
    assert!(pings >= 8, "{pings} pings during the reload: {during:?}");
}

/// A stop asked for during a reload (which may take ~35 s) drains at once: systemd is told
/// `STOPPING=1` and readyz answers 503 within a second, not once the reload has ended (the drain
/// after it could take the stop past `TimeoutStopSec`); the gateway then exits cleanly.
#[test]
fn a_stop_during_a_reload_drains_at_once() {
    let notify = NotifySocket::bind();
    let mut gw = under_systemd(&notify)
        .env("HOOKGATE_TEST_RELOAD_DELAY_MS", "4000")
        .start();
    notify.until("READY=1", Duration::from_secs(20));
    gw.signal(Signal::SIGHUP);
    notify.until("RELOADING=1", Duration::from_secs(10));
    let asked = Instant::now();
    gw.signal(Signal::SIGTERM);
    notify.until("STOPPING=1", Duration::from_secs(1));
    assert_eq!(gw.api().request("GET", "/readyz", b"").status, 503);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    // Read on, as systemd does: a full socket blocks the watchdog's pings, and the gateway.
    let deadline = Instant::now() + Duration::from_secs(20);
    while gw.is_running() && Instant::now() < deadline {
        notify.recv(Duration::from_millis(100));
    }
    assert!(gw.wait_exit(Duration::from_secs(1)).success());
}
