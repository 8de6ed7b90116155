//! What the benches share: the `hookgate` process under test ([`Gateway`]), the load generator
//! ([`load`]), the in-process HTTP servers the gateway is compared with or forwards to
//! ([`servers`]), the store read and filled in-process ([`store`]), and the figures ([`Figures`]).
//!
//! Each bench uses a part of this module, so unused items are expected in any one of them.
#![allow(dead_code)]

pub mod load;
pub mod servers;
pub mod store;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The provider's Standard Webhooks secret (base64 of the key), as `whsec_` + this.
pub const SECRET_B64: &str = "YmVuY2gtc2VjcmV0LWJlbmNoLXNlY3JldA==";
pub const ADMIN_TOKEN: &str = "bench-admin-token-0123456789";
/// The provider's name and route.
pub const PROVIDER: &str = "bench";
/// Config for a gateway whose load generator is one trusted sender: no per-address rate limit
/// (the default 1000/s would cap every run at 1,000 acks/s plus a burst).
pub const NO_ADDRESS_LIMIT: &str = "[limits]\nper_address_rps = 0\n\n";

/// The bench's numeric arguments (after `--`; cargo's own flags skipped).
pub fn number_args() -> Vec<u64> {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// The key requests are signed with.
pub fn key() -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(SECRET_B64)
        .expect("base64 secret")
}

/// Writes `<dir>/config.toml`: one Standard Webhooks provider, data in `<dir>/data`, both
/// listeners on port 0, plus `extra` (destinations, store settings).
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"{}\"\n\n\
             [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{ADMIN_TOKEN}\"\n\n\
             [[provider]]\nname = \"{PROVIDER}\"\nverify = \"standard-webhooks\"\n\
             secrets = [\"whsec_{SECRET_B64}\"]\n\n{extra}",
            dir.join("data").display()
        ),
    )
    .expect("write config");
    config
}

/// A running `hookgate serve` (the release build Cargo built for this bench).
pub struct Gateway {
    child: Child,
    /// `POST` here: `http://{public}/hooks/bench`.
    pub url: String,
    pub admin_url: String,
    /// From process spawn to the `hookgate listening` log line.
    pub startup: Duration,
    /// The `A commit was slow` (sled) and `A publish was slow` (JetStream) lines logged since
    /// the last [`Gateway::take_slow_commits`].
    slow_commits: Arc<Mutex<Vec<SlowCommit>>>,
}

/// The numeric fields of one `A commit was slow` or `A publish was slow` line (`[store]
/// slow_commit`): `total_ms`, `waited_ms`, `flush_ms`, `ack_ms`, ...
pub type SlowCommit = std::collections::HashMap<String, f64>;

/// The `key=number` fields of a log line.
fn numeric_fields(line: &str) -> SlowCommit {
    line.split_whitespace()
        .filter_map(|word| word.split_once('='))
        .filter_map(|(key, value)| Some((key.to_string(), value.parse().ok()?)))
        .collect()
}

/// Counters read from `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub fsyncs: f64,
    pub commits: f64,
    pub stored: f64,
    /// Sums (seconds) and counts of the committer's two stages: applying a batch in sled, and
    /// one group sync.
    pub apply_seconds: f64,
    pub applies: f64,
    pub sync_seconds: f64,
    pub syncs: f64,
    /// Sum (seconds) and count of the waits from handing an event to the store to its answer.
    pub ack_seconds: f64,
    pub acks: f64,
    /// Sum and count of the committer's batch sizes, in events.
    pub batch_events: f64,
    pub batches: f64,
    /// Sum (seconds) and count of the times sled was closed for a checkpoint.
    pub checkpoint_seconds: f64,
    pub checkpoints: f64,
    /// Commits whose oldest request waited over `[store] slow_commit`.
    pub commits_slow: f64,
    /// Every histogram: name -> (upper bound in seconds, cumulative count) per bucket.
    pub buckets: std::collections::HashMap<String, Vec<(f64, f64)>>,
}

impl Counters {
    /// The counters of a Prometheus text exposition (hookgate's `/metrics`).
    pub fn from_text(text: &str) -> Counters {
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
            apply_seconds: value("hookgate_commit_apply_seconds_sum "),
            applies: value("hookgate_commit_apply_seconds_count "),
            sync_seconds: value("hookgate_commit_sync_seconds_sum "),
            syncs: value("hookgate_commit_sync_seconds_count "),
            ack_seconds: value("hookgate_ack_latency_seconds_sum "),
            acks: value("hookgate_ack_latency_seconds_count "),
            batch_events: value("hookgate_commit_batch_size_sum "),
            batches: value("hookgate_commit_batch_size_count "),
            checkpoint_seconds: value("hookgate_store_checkpoint_seconds_sum "),
            checkpoints: value("hookgate_store_checkpoint_seconds_count "),
            commits_slow: value("hookgate_commits_slow_total "),
            buckets: histogram_buckets(text),
        }
    }

    /// The upper bound, in milliseconds, of the bucket holding the `q` quantile (0..=1) of what
    /// histogram `name` observed between `before` and `self`.
    pub fn quantile_ms(&self, before: &Counters, name: &str, q: f64) -> f64 {
        let earlier = before.buckets.get(name);
        let counts: Vec<(f64, f64)> = self
            .buckets
            .get(name)
            .into_iter()
            .flatten()
            .map(|&(le, count)| {
                let earlier = earlier
                    .and_then(|b| b.iter().find(|(l, _)| *l == le))
                    .map_or(0.0, |(_, c)| *c);
                (le, count - earlier)
            })
            .collect();
        let total = counts.last().map_or(0.0, |(_, c)| *c);
        counts
            .iter()
            .find(|(_, c)| *c >= total * q)
            .map_or(f64::NAN, |(le, _)| le * 1e3)
    }
}

/// The buckets of every histogram in a Prometheus text exposition.
fn histogram_buckets(text: &str) -> std::collections::HashMap<String, Vec<(f64, f64)>> {
    let mut buckets: std::collections::HashMap<String, Vec<(f64, f64)>> = Default::default();
    for line in text.lines() {
        let Some((name, rest)) = line.split_once("_bucket{le=\"") else {
            continue;
        };
        let Some((le, count)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            match le.parse() {
                Ok(le) => le,
                Err(_) => continue,
            }
        };
        if let Ok(count) = count.trim().parse() {
            buckets
                .entry(name.to_string())
                .or_default()
                .push((le, count));
        }
    }
    buckets
}

impl Gateway {
    pub fn start(config: &Path) -> Gateway {
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["serve", "--config"])
            .arg(config)
            // `HOOKGATE_BENCH_LOG` overrides the log filter; it must keep `hookgate=info` for the
            // listening line (`warn,hookgate=info,hookgate::http::public=warn` drops the line per
            // stored webhook).
            .env(
                "RUST_LOG",
                std::env::var("HOOKGATE_BENCH_LOG").unwrap_or_else(|_| "warn,hookgate=info".into()),
            )
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hookgate");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut before = Vec::new();
        let line = lines
            .by_ref()
            .map_while(Result::ok)
            .find(|line| {
                before.push(line.clone());
                line.contains("hookgate listening")
            })
            .unwrap_or_else(|| panic!("hookgate did not start:\n{}", before.join("\n")));
        let startup = spawned.elapsed();
        // How the store's open split the start-up (`sled_ms`, `checks_ms`, `dedup_runs_ms`).
        if let Some(opened) = before.iter().find(|line| line.contains("Store opened.")) {
            eprintln!("hookgate: {opened}");
        }
        let address = |name: &str| -> String {
            let start = line.find(name).expect("address in log line") + name.len();
            line[start..]
                .split_whitespace()
                .next()
                .expect("address")
                .to_string()
        };
        let (public, admin) = (address("public="), address("admin="));
        // Keep reading, so hookgate never blocks on a full pipe; keep its slow commits for the
        // bench's table, and show its other warnings, its checkpoints (each a pause of every
        // ack), and its seals of dedup runs.
        let slow_commits = Arc::new(Mutex::new(Vec::new()));
        let kept = slow_commits.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if line.contains("A commit was slow") || line.contains("A publish was slow") {
                    kept.lock()
                        .expect("slow commits")
                        .push(numeric_fields(&line));
                } else if line.contains("WARN")
                    || line.contains("ERROR")
                    || line.contains("checkpointed")
                    || line.contains("Dedup run sealed")
                {
                    eprintln!("hookgate: {line}");
                }
            }
        });
        Gateway {
            child,
            url: format!("http://{public}/hooks/{PROVIDER}"),
            admin_url: format!("http://{admin}"),
            startup,
            slow_commits,
        }
    }

    /// The slow commits logged since the last call.
    pub fn take_slow_commits(&self) -> Vec<SlowCommit> {
        std::mem::take(&mut *self.slow_commits.lock().expect("slow commits"))
    }

    /// Blocking: call outside the tokio runtime.
    pub fn metrics(&self) -> Counters {
        Counters::from_text(&self.admin("GET", "/metrics"))
    }

    /// An admin request; panics unless it succeeds. Blocking.
    pub fn admin(&self, method: &str, path: &str) -> String {
        let client = reqwest::blocking::Client::new();
        let url = format!("{}{path}", self.admin_url);
        let request = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        };
        let response = request
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .expect("admin request");
        assert!(
            response.status().is_success(),
            "{method} {path}: {}",
            response.status()
        );
        response.text().expect("admin answer")
    }

    /// Peak resident set size so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .expect("VmHWM");
        kib / 1024.0
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the gateway has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.child.id())
    }

    /// What the gateway's threads have used so far, by [`THREAD_GROUPS`].
    pub fn threads_use(&self) -> ThreadsUse {
        threads_use(self.child.id())
    }

    /// SIGTERM, and waits for the clean shutdown (which checkpoints the store).
    pub fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }

    /// SIGKILL: whatever was acked must be on disk already.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The ack latencies of one run, in microseconds, and what they add up to.
pub struct Figures {
    sorted_us: Vec<u32>,
    pub elapsed: Duration,
    pub errors: usize,
}

impl Figures {
    pub fn new(mut latencies_us: Vec<u32>, elapsed: Duration, errors: usize) -> Figures {
        latencies_us.sort_unstable();
        Figures {
            sorted_us: latencies_us,
            elapsed,
            errors,
        }
    }

    pub fn count(&self) -> usize {
        self.sorted_us.len()
    }

    pub fn per_second(&self) -> f64 {
        self.count() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `p` quantile (0..=1) in milliseconds; 0 without samples.
    pub fn ms(&self, p: f64) -> f64 {
        percentile_ms(&self.sorted_us, p)
    }
}

/// The `p` quantile (0..=1) of sorted microseconds, in milliseconds (nearest rank).
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * p).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1000.0
}

/// CPU time (user + system) of process `pid` so far, in seconds, from `/proc/<pid>/stat`
/// (clock ticks of 1/100 s, Linux's `USER_HZ` on every mainstream architecture).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/<pid>/stat");
    stat_cpu_seconds(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line, in seconds.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> f64 { fields.get(i).and_then(|f| f.parse().ok()).unwrap_or(0.0) };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// How the gateway's threads are grouped when their CPU is told apart, by name prefix: the
/// HTTP workers, the committer, sled's io threads, the log's writer. Threads that end during a
/// run are in none (a run's "other" is the process's CPU less these).
pub const THREAD_GROUPS: [(&str, &str); 4] = [
    ("actix-rt", "HTTP workers"),
    ("hookgate-commit", "committer"),
    ("sled-io", "sled io"),
    ("hookgate-log", "log writer"),
];

/// What process `pid`'s live threads have used so far, summed by [`THREAD_GROUPS`].
#[derive(Clone, Copy, Default)]
pub struct ThreadsUse {
    /// CPU time (user + system), in seconds.
    pub cpu_seconds: [f64; THREAD_GROUPS.len()],
    /// Context switches, voluntary (the thread slept: each is a wake-up after it) and not.
    pub switches: [f64; THREAD_GROUPS.len()],
}

pub fn threads_use(pid: u32) -> ThreadsUse {
    let mut used = ThreadsUse::default();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return used;
    };
    for task in tasks.flatten() {
        // Either file is gone if the thread ended since the directory was read.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        let name = stat
            .split_once('(')
            .and_then(|(_, rest)| rest.rsplit_once(')'))
            .map_or("", |(name, _)| name);
        if let Some(group) = THREAD_GROUPS.iter().position(|(p, _)| name.starts_with(p)) {
            used.cpu_seconds[group] += stat_cpu_seconds(&stat);
            used.switches[group] += status_switches(&status);
        }
    }
    used
}

/// `voluntary_ctxt_switches` + `nonvoluntary_ctxt_switches` of a `/proc/.../status` file.
fn status_switches(status: &str) -> f64 {
    status
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.ends_with("ctxt_switches")
                .then(|| value.trim().parse::<f64>().ok())?
        })
        .sum()
}

/// Writes dirty pages out and drops the kernel's page cache, as a reboot would leave it; false
/// when this process may not (it needs root).
pub fn drop_page_cache() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// `uptime`'s load averages, to note how busy the shared machine was.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "?".into())
}

/// Online CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The sizes of every file under `dir` (what `du -sb` counts, less the directories' own entries);
/// 0 if it is absent.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map_while(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `bytes` in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The benches' async runtime: two worker threads, the load generator's share of the 2 cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
