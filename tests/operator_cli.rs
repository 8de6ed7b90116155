//! The operator subcommands against a real gateway, run as child processes as a sysadmin would
//! run them: events listed and shown, dead events listed and replayed, a destination paused and
//! resumed, a consumer's lag, a poller's cursor and errors, each as a table and as `--json`;
//! where the address and the token come from, and what a refused token says. Also the log line
//! of each stored webhook in `--log-format json`, and `X-Request-Id`.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::stub::Stub;
use common::{hookgate_bin, provider, toml_str, wait_until, Gateway, ADMIN_TOKEN};
use serde_json::{json, Value};
use tempfile::TempDir;

const WHSEC: &str = "whsec_ZG93bnN0cmVhbS1zaWduaW5nLWtleS0x";
const WAIT: Duration = Duration::from_secs(15);

/// A finished `hookgate ...` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code and that stderr says each of `says`.
    fn fails(self, code: i32, says: &[&str]) -> Run {
        assert_eq!(self.code, code, "stderr:\n{}", self.stderr);
        for text in says {
            assert!(self.stderr.contains(text), "{text:?} in:\n{}", self.stderr);
        }
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("not JSON ({err}):\n{}", self.stdout))
    }
}

/// Runs the binary in an empty directory (so no `./config.toml` is found by accident), with
/// neither `HOOKGATE_CONFIG` nor `HOOKGATE_ADMIN_TOKEN` unless `env` sets them.
fn hookgate(args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = TempDir::new().unwrap();
    let mut command = Command::new(hookgate_bin());
    command
        .args(args)
        .current_dir(dir.path())
        .env_remove("HOOKGATE_CONFIG")
        .env_remove("HOOKGATE_ADMIN_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// An operator's config: `[admin]` only, with the gateway's real admin address (the test
/// gateway's own config says port 0).
struct OpsConfig {
    _dir: TempDir,
    path: PathBuf,
}

impl OpsConfig {
    fn new(gw: &Gateway, token: &str) -> OpsConfig {
        let dir = TempDir::new().unwrap();
        let path = dir.path().join("config.toml");
        let text = format!(
            "[admin]\nlisten = \"{}\"\ntoken = {}\n",
            gw.admin_addr,
            toml_str(token)
        );
        std::fs::write(&path, text).unwrap();
        OpsConfig { _dir: dir, path }
    }

    /// `hookgate <args> --config <this>`.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--config", self.path.to_str().unwrap()]);
        hookgate(&all, &[])
    }
}

fn post(gw: &Gateway, provider: &str, id: &str) -> u64 {
    let body = format!(r#"{{"id":"{id}","n":1}}"#);
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    gw.post(provider, &headers, body.as_bytes()).ack().1
}

/// The lines of a table whose first cell is `first`.
fn row<'a>(table: &'a str, first: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|line| line.split_whitespace().next() == Some(first))
        .unwrap_or_else(|| panic!("no row {first:?} in:\n{table}"))
        .split_whitespace()
        .collect()
}

fn dead_count(gw: &Gateway) -> u64 {
    gw.admin_json("/v1/destinations")["destinations"][0]["dead"]
        .as_u64()
        .unwrap()
}

#[test]
fn operators_list_show_replay_pause_and_see_lag() {
    let healthy = Arc::new(AtomicBool::new(false));
    let answer = healthy.clone();
    let downstream = Stub::start(move |_| {
        if answer.load(Ordering::SeqCst) {
            (200, "text/plain", b"ok".to_vec())
        } else {
            (500, "text/plain", b"down for maintenance".to_vec())
        }
    });
    let config = provider("p", "none", &[], "event_id = \"json:/id\"")
        + &provider("q", "none", &[], "event_id = \"json:/id\"")
        + &format!(
            "\n[[destination]]\nname = \"crm\"\nurl = \"{}/ingest\"\nproviders = [\"p\"]\nsigning_secret = \"{WHSEC}\"\nretry_delays = [\"50ms\"]\n",
            downstream.url
        )
        + "\n[[consumer]]\nname = \"warehouse\"\nproviders = [\"p\"]\n";
    let gw = Gateway::start(&config);
    for id in ["evt-1", "evt-2", "evt-3"] {
        post(&gw, "p", id);
    }
    assert_eq!(post(&gw, "q", "other-1"), 4);
    wait_until(WAIT, "three dead events", || dead_count(&gw) == 3);
    let ops = OpsConfig::new(&gw, ADMIN_TOKEN);

    // events list: a table, a page at a time, and JSON.
    let table = ops.run(&["events", "list"]).ok().stdout;
    assert!(table.starts_with("SEQ  RECEIVED"), "{table}");
    let first = row(&table, "1");
    assert_eq!(
        first[2..],
        ["p", "webhook", "evt-1", "20", "crm=dead"],
        "{table}"
    );
    assert_eq!(
        row(&table, "4")[2..],
        ["q", "webhook", "other-1", "22", "-"]
    );
    let page = ops.run(&["events", "list", "--limit", "2"]).ok().stdout;
    assert_eq!(page.lines().count(), 4, "{page}");
    assert!(page.ends_with("(more: --after 2)\n"), "{page}");
    let q = ops
        .run(&["events", "list", "--provider", "q", "--json"])
        .ok()
        .json();
    assert_eq!(q["events"].as_array().unwrap().len(), 1);
    assert_eq!(q["events"][0]["event_id"], "other-1");
    let after = ops
        .run(&["events", "list", "--after", "3", "--json"])
        .ok()
        .json();
    assert_eq!(after["events"][0]["seq"], 4);

    // events show: what was received, its state per destination, the body pretty-printed.
    let shown = ops.run(&["events", "show", "2"]).ok().stdout;
    for expected in [
        "event id      evt-2",
        "provider      p",
        "content type  application/json",
        "deliveries    crm=dead",
        "  \"id\": \"evt-2\",",
    ] {
        assert!(shown.contains(expected), "{expected:?} in:\n{shown}");
    }
    let event = ops.run(&["events", "show", "2", "--json"]).ok().json();
    assert_eq!(
        (event["seq"].clone(), event["json"]["id"].clone()),
        (json!(2), json!("evt-2"))
    );
    ops.run(&["events", "show", "99"])
        .fails(1, &["404 Not Found: not_found"]);

    // dead list.
    let dead = ops.run(&["dead", "list", "crm"]).ok().stdout;
    assert!(dead.starts_with("SEQ  DEAD SINCE"), "{dead}");
    assert_eq!(dead.lines().count(), 4, "{dead}");
    assert_eq!(row(&dead, "3")[2], "2", "two attempts: {dead}");
    let dead = ops.run(&["dead", "list", "crm", "--json"]).ok().json();
    let seqs: Vec<&Value> = dead["dead"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| &d["seq"])
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    ops.run(&["dead", "list", "nope"]).fails(1, &["404"]);

    // destinations, paused and resumed.
    let destinations = ops.run(&["destinations"]).ok().stdout;
    let crm = row(&destinations, "crm");
    assert_eq!(crm[1..4], ["active", "4", "0"], "{destinations}");
    assert_eq!(crm[5], "3", "dead: {destinations}");
    assert_eq!(
        ops.run(&["destinations", "pause", "crm"]).ok().stdout,
        "crm paused.\n"
    );
    let listed = ops.run(&["destinations", "list", "--json"]).ok().json();
    assert_eq!(listed["destinations"][0]["paused"], true);
    assert_eq!(
        row(&ops.run(&["destinations"]).ok().stdout, "crm")[1],
        "paused"
    );
    let resumed = ops
        .run(&["destinations", "resume", "crm", "--json"])
        .ok()
        .json();
    assert_eq!(resumed, json!({"destination": "crm", "paused": false}));
    ops.run(&["destinations", "pause", "nope"])
        .fails(1, &["404"]);

    // Replay one dead event, then a seq that is not dead, then all the others.
    healthy.store(true, Ordering::SeqCst);
    let one = ops.run(&["dead", "replay", "crm", "2"]).ok().stdout;
    assert_eq!(one, "1 dead event(s) of crm queued for delivery again.\n");
    let not_dead = ops
        .run(&["dead", "replay", "crm", "4", "--json"])
        .fails(1, &["not dead at crm, not replayed: 4"]);
    assert_eq!(not_dead.json(), json!({"replayed": 0, "left_dead": 0}));
    ops.run(&["dead", "replay", "crm"]).fails(2, &["<SEQS>"]);
    let rest = ops
        .run(&["dead", "replay", "crm", "--all", "--json"])
        .ok()
        .json();
    assert_eq!(rest, json!({"replayed": 2, "left_dead": 0}));
    wait_until(WAIT, "the replays delivered", || {
        (1..=3).all(|seq| gw.event(seq).unwrap()["deliveries"]["crm"] == "delivered")
    });
    assert_eq!(
        ops.run(&["dead", "list", "crm", "--json"]).ok().json(),
        json!({"dead": [], "next_after": null})
    );

    // The consumer's lag: every event after its cursor.
    let consumers = ops.run(&["consumers"]).ok().stdout;
    assert!(
        consumers.starts_with("NAME       PROVIDERS  CURSOR  LAST SEQ  LAG  OLDEST"),
        "{consumers}"
    );
    assert_eq!(row(&consumers, "warehouse")[1..5], ["p", "0", "4", "4"]);
    let acked = gw.admin_post("/v1/consumers/warehouse/ack", &json!({"seq": 3}));
    assert_eq!(acked.status, 200, "{}", acked.text());
    let consumers = ops.run(&["consumers", "--json"]).ok().json();
    let warehouse = &consumers["consumers"][0];
    assert_eq!(
        (
            &warehouse["cursor"],
            &warehouse["lag"],
            &warehouse["providers"]
        ),
        (&json!(3), &json!(1), &json!(["p"]))
    );
    assert!(warehouse["oldest_pending_age_s"].as_f64().unwrap() < 60.0);

    // The stored webhooks' log lines (text, the default).
    let logs = gw.logs();
    let line = logs
        .lines()
        .find(|line| line.contains("Webhook stored.") && line.contains("event_id=evt-1"))
        .unwrap_or_else(|| panic!("no ingest line:\n{logs}"));
    for field in [
        "request_id=",
        "provider=p",
        "seq=1",
        "status=accepted",
        "latency_ms=",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
}

#[test]
fn pollers_show_their_cursor_last_success_and_last_error() {
    // Alcméon's shape: actions 1 to 3 from `min_action_id` on; the first request fails.
    let calls = AtomicUsize::new(0);
    let vendor = Stub::start(move |request| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            return (500, "text/plain", b"vendor hiccup".to_vec());
        }
        let url = url::Url::parse(&format!("http://vendor{}", request.path)).unwrap();
        let from = url
            .query_pairs()
            .find(|(name, _)| name == "min_action_id")
            .map_or(1, |(_, value)| value.parse().unwrap());
        let data: Vec<Value> = (from..=3)
            .map(|id| json!({"id": id, "type": "message"}))
            .collect();
        (
            200,
            "application/json",
            json!({ "data": data }).to_string().into_bytes(),
        )
    });
    let sync = format!(
        "[provider.sync]\npreset = \"alcmeon\"\nurl = \"{}/actions\"\ninterval = \"200ms\"\nstart_cursor = 1\n[provider.sync.auth]\nuser = \"instance-42\"\npassword = \"app-secret\"\n",
        vendor.url
    );
    let config = provider("alcmeon", "alcmeon", &["alcmeon-app-secret-0123"], &sync)
        + &provider("plain", "none", &[], "");
    let gw = Gateway::start(&config);
    let ops = OpsConfig::new(&gw, ADMIN_TOKEN);
    wait_until(WAIT, "a failed round then a good one", || {
        let poller = &ops.run(&["pollers", "--json"]).ok().json()["pollers"][0];
        !poller["last_error"].is_null() && !poller["last_success_at"].is_null()
    });
    let pollers = ops.run(&["pollers", "--json"]).ok().json();
    let list = pollers["pollers"].as_array().unwrap();
    assert_eq!(list.len(), 1, "only providers with a sync API: {pollers}");
    // The preset's cursor is the highest id received (exclusive).
    assert_eq!(
        (&list[0]["provider"], &list[0]["cursor"]),
        (&json!("alcmeon"), &json!("3"))
    );
    let table = ops.run(&["pollers"]).ok().stdout;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["PROVIDER", "CURSOR", "RUNNING", "ROUNDS", "LAST", "SUCCESS", "LAST", "ERROR"]
    );
    let alcmeon = row(&table, "alcmeon");
    assert_eq!(alcmeon[1], "3", "{table}");
    assert!(
        table.contains("500"),
        "the last error names the status: {table}"
    );
}

#[test]
fn the_token_comes_from_the_environment_or_the_config_and_a_wrong_one_is_refused() {
    let gw = Gateway::start(&provider("p", "none", &[], ""));
    let url = gw.admin_url.clone();
    let with_env = |token: &str, args: &[&str]| hookgate(args, &[("HOOKGATE_ADMIN_TOKEN", token)]);

    // --url and HOOKGATE_ADMIN_TOKEN: no config is read at all.
    let run = with_env(
        ADMIN_TOKEN,
        &["destinations", "--url", &url, "--config", "/nonexistent"],
    );
    assert_eq!(
        run.ok().stdout,
        "NAME  STATE  CURSOR  QUEUE  OLDEST  DEAD  REPLAYING  DELIVERED  FAILURES  LAST ERROR\n"
    );

    // A wrong token: exit 1, the status, and where the token came from.
    let refused = with_env("not-the-admin-token", &["events", "list", "--url", &url]).fails(
        1,
        &[
            "answered 401 Unauthorized: unauthorized",
            "HOOKGATE_ADMIN_TOKEN",
        ],
    );
    assert!(
        !refused.stderr.contains("not-the-admin-token"),
        "never printed"
    );
    assert!(refused.stdout.is_empty());

    // The environment's token wins over the config's.
    let wrong_in_config = OpsConfig::new(&gw, "a-wrong-token-in-the-config");
    wrong_in_config.run(&["consumers"]).fails(1, &["401"]);
    let config = wrong_in_config.path.to_str().unwrap();
    with_env(ADMIN_TOKEN, &["consumers", "--config", config]).ok();

    // The config's token resolved as the gateway resolves it (env:); HOOKGATE_CONFIG names the
    // config as for `serve`.
    let referenced = OpsConfig::new(&gw, "env:OPS_TEST_ADMIN_TOKEN");
    let config = referenced.path.to_str().unwrap();
    hookgate(&["pollers", "--config", config], &[]).fails(2, &["OPS_TEST_ADMIN_TOKEN is not set"]);
    let token = ("OPS_TEST_ADMIN_TOKEN", ADMIN_TOKEN);
    hookgate(&["pollers", "--config", config], &[token]).ok();
    hookgate(&["pollers"], &[("HOOKGATE_CONFIG", config), token]).ok();

    // Plain HTTP to another host: the token goes, with a warning (0.0.0.0 is no loopback
    // name, and refuses at once here).
    let far = with_env(ADMIN_TOKEN, &["consumers", "--url", "http://0.0.0.0:1/"]);
    assert!(far.stderr.contains("over plain HTTP"), "{}", far.stderr);
    let near = with_env(ADMIN_TOKEN, &["consumers", "--url", &url]);
    assert!(!near.stderr.contains("plain HTTP"), "{}", near.stderr);

    // Usage and reachability.
    hookgate(&["events", "list", "--url", &url], &[])
        .fails(2, &["cannot read config.toml", "HOOKGATE_ADMIN_TOKEN"]);
    let port_zero = [
        "events",
        "list",
        "--config",
        gw.config_path().to_str().unwrap(),
    ];
    hookgate(&port_zero, &[]).fails(2, &["pass --url"]);
    with_env(ADMIN_TOKEN, &["events", "list", "--url", "ftp://x"]).fails(2, &["http(s)"]);
    hookgate(&["events", "frobnicate"], &[]).fails(2, &[]);
    let closed = ["events", "list", "--url", "http://127.0.0.1:9"];
    with_env(ADMIN_TOKEN, &closed).fails(1, &["http://127.0.0.1:9/v1/events"]);
}

/// Runs the gateway with `--log-format json`.
fn json_logs(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .args(["serve", "--log-format", "json", "--config"])
        .arg(config);
    command
}

#[test]
fn json_logs_have_a_line_per_stored_webhook_and_the_request_id_is_echoed() {
    let gw = Gateway::builder()
        .config(&provider("p", "none", &[], "event_id = \"json:/id\""))
        .wrapper(json_logs)
        .start();
    let body = br#"{"id":"evt-7"}"#;
    let with_id = [("X-Request-Id".to_string(), "ops-42/a:b".to_string())];
    let reply = gw.post("p", &with_id, body);
    assert_eq!(reply.ack(), ("accepted".to_string(), 1));
    assert_eq!(reply.header("x-request-id"), Some("ops-42/a:b"));
    let again = gw.post("p", &[], body);
    assert_eq!(again.ack(), ("duplicate".to_string(), 1));
    let generated = again.header("x-request-id").unwrap().to_string();
    assert!(
        generated.len() == 16 && generated.bytes().all(|b| b.is_ascii_hexdigit()),
        "{generated}"
    );
    let insane = [("X-Request-Id".to_string(), "x".repeat(129))];
    let refused = gw.post("nope", &insane, body);
    assert_eq!(refused.status, 404);
    assert_eq!(refused.header("x-request-id").map(str::len), Some(16));

    wait_until(WAIT, "two ingest lines", || {
        gw.logs().matches("Webhook stored.").count() == 2
    });
    let logs = gw.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    let stored: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "Webhook stored.")
        .collect();
    assert_eq!(
        stored.len(),
        2,
        "one line per stored webhook, none for the 404:\n{logs}"
    );
    let first = stored[0];
    assert_eq!(
        (
            &first["request_id"],
            &first["provider"],
            &first["event_id"],
            &first["seq"],
            &first["status"],
            &first["level"]
        ),
        (
            &json!("ops-42/a:b"),
            &json!("p"),
            &json!("evt-7"),
            &json!(1),
            &json!("accepted"),
            &json!("INFO")
        )
    );
    assert!(first["latency_ms"].as_f64().unwrap() >= 0.0, "{first}");
    assert_eq!(stored[1]["request_id"], json!(generated));
    assert_eq!(stored[1]["status"], "duplicate");
}

/// A log reader that stops reading (a stuck journald, a full pipe) must not hold up acks: log
/// lines wait in the gateway's buffer, and are all written once the reader reads again.
#[test]
fn a_stderr_nobody_reads_does_not_hold_up_acks() {
    const EVENTS: usize = 3_000;
    let dir = TempDir::new().unwrap();
    let provider = provider("p", "none", &[], "event_id = \"json:/id\"");
    let (_gateway, stderr, api) = serve_with_stderr_unread(dir.path(), &provider, &[]);
    // From here on nobody reads stderr: the pipe (64 KiB) fills after a few hundred lines.
    std::thread::scope(|s| {
        for thread in 0..4 {
            let api = &api;
            s.spawn(move || {
                for n in (thread..EVENTS).step_by(4) {
                    let body = format!(r#"{{"id":"evt-{n}"}}"#);
                    let reply = api
                        .try_post("p", &[], body.as_bytes())
                        .unwrap_or_else(|err| panic!("event {n}: {}", common::error_chain(&err)));
                    assert_eq!(reply.status, 200, "event {n}: {}", reply.text());
                }
            });
        }
    });
    let metrics = api.metrics_text();
    assert_eq!(
        common::parse_metric(&metrics, "hookgate_log_lines_dropped_total", &[]),
        Some(0.0),
        "{metrics}"
    );
    // Reading again, every line arrives: read on a thread of its own, so that a line that never
    // comes fails the test instead of hanging it (the gateway lives on).
    let (lines, arrived) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut stored = 0;
    while stored < EVENTS {
        let line = arrived
            .recv_timeout(std::time::Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no log line for 30 s after {stored} stored"))
            .unwrap();
        stored += usize::from(line.contains("Webhook stored."));
    }
}

/// A panic while nobody reads stderr (a stuck journald) is logged as any line, not written by
/// Rust's own hook, which blocked in its write: the panicking task never ended, and the
/// process never stopped to be restarted.
#[test]
fn a_panic_while_nobody_reads_stderr_still_stops_the_process() {
    let dir = TempDir::new().unwrap();
    let config = provider("p", "none", &[], "event_id = \"json:/id\"")
        + &provider("q", "none", &[], "")
        + "\n[[destination]]\nname = \"crm\"\nurl = \"http://127.0.0.1:9/\"\nproviders = [\"q\"]\n"
        + &format!("signing_secret = \"{}\"\n", common::sign::whsec("panic"));
    let panicking = [("HOOKGATE_TEST_PANIC_TASK", "delivery crm")];
    let (mut gateway, _stderr, api) = serve_with_stderr_unread(dir.path(), &config, &panicking);
    // Enough lines to fill the pipe (64 KiB) nobody reads.
    for n in 0..2_000 {
        let body = format!(r#"{{"id":"evt-{n}"}}"#);
        assert_eq!(api.post("p", &[], body.as_bytes()).status, 200);
    }
    // A delivery for crm: its task panics.
    assert_eq!(api.post("q", &[], b"{}").status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "{status:?}");
}

/// `hookgate serve` on a config of `providers` (and more) under `dir`, with `env`, its stderr
/// read up to its listening line and no further; with that stderr and its API.
fn serve_with_stderr_unread(
    dir: &Path,
    providers: &str,
    env: &[(&str, &str)],
) -> (
    KillOnDrop,
    std::io::BufReader<std::process::ChildStderr>,
    common::Api,
) {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        common::config_toml(&dir.join("data"), "", providers),
    )
    .unwrap();
    let child = Command::new(hookgate_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut gateway = KillOnDrop(child);
    let mut stderr = std::io::BufReader::new(gateway.0.stderr.take().unwrap());
    let mut line = String::new();
    let addrs = loop {
        line.clear();
        let read = std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(read > 0, "hookgate exited before listening");
        if let Some(addrs) = common::parse_listening_line(&line) {
            break addrs;
        }
    };
    (gateway, stderr, common::Api::new(addrs.0, addrs.1))
}

/// Kills the child process when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CLI reads at most 64 MiB of an answer: a URL that is no hookgate, answering without end,
/// filled its memory.
#[test]
fn an_endless_answer_is_cut_and_the_command_fails() {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut request = [0u8; 4096];
        let _ = stream.read(&mut request);
        let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let chunk = vec![b' '; 1 << 20];
        while stream.write_all(&chunk).is_ok() {}
    });
    let run = hookgate(
        &["pollers", "--url", &url],
        &[("HOOKGATE_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    run.fails(1, &["longer than 64 MiB"]);
}
