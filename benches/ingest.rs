//! Quick ingest measurement: starts the release `hookgate` on a temporary data directory and
//! drives signed 1 KiB Standard Webhooks requests over keep-alive HTTP/1.1 connections.
//!
//! Run: `cargo bench --bench ingest` (optional args: `-- SECONDS CONNECTIONS...`, default
//! `5 1 64`). Prints, per connection count: acks/s, p50/p99/p99.9 ack latency, fsyncs per ack,
//! mean commit batch size; then checks that every acked event is in the store.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookgate::verify::mac::{sign, Algorithm};

const SECRET_B64: &str = "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA==";
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let seconds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(5);
    let mut connections: Vec<usize> = args.iter().skip(1).filter_map(|a| a.parse().ok()).collect();
    if connections.is_empty() {
        connections = vec![1, 64];
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = Gateway::start(dir.path());
    let key = BASE64.decode(SECRET_B64).expect("base64");
    let next_id = Arc::new(AtomicU64::new(0));
    let mut acked_total = 0;

    println!("| connections | acks/s | p50 ms | p99 ms | p99.9 ms | fsyncs/ack | mean batch |");
    println!("|---|---|---|---|---|---|---|");
    for &n in &connections {
        let before = gateway.metrics();
        let started = Instant::now();
        let deadline = started + Duration::from_secs(seconds);
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (url, key, next_id) =
                    (gateway.public_url.clone(), key.clone(), next_id.clone());
                std::thread::spawn(move || drive(&url, &key, &next_id, deadline))
            })
            .collect();
        let mut latencies: Vec<Duration> = threads
            .into_iter()
            .flat_map(|t| t.join().expect("client thread"))
            .collect();
        let elapsed = started.elapsed();
        let after = gateway.metrics();
        latencies.sort();
        let acks = latencies.len() as f64;
        acked_total += latencies.len();
        let pct = |p: f64| {
            latencies[((acks * p) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0
        };
        let fsyncs = after.fsyncs - before.fsyncs;
        let commits = after.commits - before.commits;
        println!(
            "| {n} | {:.0} | {:.2} | {:.2} | {:.2} | {:.3} | {:.1} |",
            acks / elapsed.as_secs_f64(),
            pct(0.50),
            pct(0.99),
            pct(0.999),
            fsyncs / acks,
            acks / commits.max(1.0),
        );
    }

    let stored = gateway.metrics().stored as usize;
    assert_eq!(
        stored, acked_total,
        "every acked event must be stored exactly once"
    );
    println!("\n{acked_total} events acked, {stored} stored: none lost.");
}

/// Sends webhooks on one keep-alive connection until `deadline`; returns each ack's latency.
fn drive(url: &str, key: &[u8], next_id: &AtomicU64, deadline: Instant) -> Vec<Duration> {
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let mut latencies = Vec::new();
    let filler = "x".repeat(900);
    while Instant::now() < deadline {
        let id = format!("msg_{}", next_id.fetch_add(1, Ordering::Relaxed));
        let body =
            format!(r#"{{"id":"{id}","type":"message.created","data":{{"text":"{filler}"}}}}"#);
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            .to_string();
        let tag = sign(
            Algorithm::Sha256,
            key,
            &[id.as_bytes(), b".", ts.as_bytes(), b".", body.as_bytes()],
        );
        let sent = Instant::now();
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", &ts)
            .header("webhook-signature", format!("v1,{}", BASE64.encode(tag)))
            .body(body)
            .send()
            .expect("request");
        let status = response.status();
        let _ = response.bytes();
        assert!(status.is_success(), "unexpected status {status}");
        latencies.push(sent.elapsed());
    }
    latencies
}

struct Gateway {
    child: Child,
    public_url: String,
    admin_url: String,
}

struct Counters {
    fsyncs: f64,
    commits: f64,
    stored: f64,
}

impl Gateway {
    fn start(dir: &std::path::Path) -> Gateway {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
                 [[provider]]\nname = \"bench\"\nverify = \"standard-webhooks\"\nsecrets = [\"whsec_{SECRET_B64}\"]\n",
                dir.join("data").display()
            ),
        )
        .expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn,hookgate=info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookgate");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| line.contains("hookgate listening"))
            .expect("hookgate did not start");
        let token = |name: &str| -> String {
            let start = line.find(name).expect("address in log line") + name.len();
            line[start..]
                .split_whitespace()
                .next()
                .expect("address")
                .to_string()
        };
        let (public, admin) = (token("public="), token("admin="));
        std::thread::spawn(move || for _ in lines {});
        Gateway {
            child,
            public_url: format!("http://{public}/hooks/bench"),
            admin_url: format!("http://{admin}"),
        }
    }

    fn metrics(&self) -> Counters {
        let text = reqwest::blocking::Client::new()
            .get(format!("{}/metrics", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .and_then(|r| r.text())
            .expect("metrics");
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| {
                    line.strip_prefix(name)
                        .and_then(|rest| rest.trim().parse().ok())
                })
                .unwrap_or(0.0)
        };
        Counters {
            fsyncs: value("hookgate_fsyncs_total "),
            commits: value("hookgate_commits_total "),
            stored: value("hookgate_events_stored_total "),
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
