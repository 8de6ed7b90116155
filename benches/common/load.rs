//! The load generator: tokio tasks, each with its own keep-alive HTTP/1.1 connection (its own
//! reqwest client), posting signed 1 KiB Standard Webhooks JSON with unique ids (see [`IdMode`]).
//! Async, so 256 connections cost 256 small tasks, not 256 threads competing with the server
//! for the same cores.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookgate::verify::mac::{sign, Algorithm};

use super::Figures;

/// Every request body is exactly this long.
pub const BODY_BYTES: usize = 1024;

/// How request numbers become event ids: a per-run choice (see [`Run::id_mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMode {
    /// `msg_{n}`: each id follows the last one in the dedup tree.
    Sequential,
    /// `msg_r{m}` where `m` is `n` times an odd constant (mod 2^64): unique, and scattered over
    /// the key space as random ids (GitHub's delivery GUIDs, Stripe's `evt_` ids) are.
    Random,
}

impl IdMode {
    /// `Random` with `HOOKGATE_BENCH_IDS=random`, else `Sequential` (read once).
    pub fn from_env() -> IdMode {
        static MODE: std::sync::OnceLock<IdMode> = std::sync::OnceLock::new();
        *MODE.get_or_init(|| {
            if std::env::var("HOOKGATE_BENCH_IDS").is_ok_and(|v| v == "random") {
                IdMode::Random
            } else {
                IdMode::Sequential
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            IdMode::Sequential => "sequential",
            IdMode::Random => "random",
        }
    }
}

/// The event id of request `n` (see [`IdMode`]).
pub fn event_id(n: u64, mode: IdMode) -> String {
    match mode {
        IdMode::Sequential => format!("msg_{n}"),
        IdMode::Random => format!("msg_r{}", n.wrapping_mul(SCATTER)),
    }
}

/// `n` back from `event_id(n, mode)`, whichever the mode (a store may hold both).
pub fn id_number(event_id: &str) -> Option<u64> {
    let rest = event_id.strip_prefix("msg_")?;
    Some(match rest.strip_prefix('r') {
        Some(scattered) => scattered.parse::<u64>().ok()?.wrapping_mul(UNSCATTER),
        None => rest.parse().ok()?,
    })
}

const SCATTER: u64 = 0x9E37_79B9_7F4A_7C15;
/// The inverse of `SCATTER` mod 2^64 (Newton's iteration doubles the correct low bits).
const UNSCATTER: u64 = {
    let mut x = SCATTER;
    let mut i = 0;
    while i < 6 {
        x = x.wrapping_mul(2u64.wrapping_sub(SCATTER.wrapping_mul(x)));
        i += 1;
    }
    x
};

const _: () = assert!(SCATTER.wrapping_mul(UNSCATTER) == 1);

/// A 1 KiB JSON event with id `event_id(id, mode)`. Its text is random base64 (the same for the
/// same id), so that it compresses no better than real senders' payloads do: `zstd -1` takes one
/// body to ~0.8 of its size, and the vendors' example payloads in the seeds to ~0.7.
pub fn body(id: u64, mode: IdMode) -> String {
    let event_id = event_id(id, mode);
    let head = format!(r#"{{"id":"{event_id}","type":"message.created","data":{{"text":""#);
    let tail = r#""}}"#;
    let filler = BODY_BYTES.saturating_sub(head.len() + tail.len());
    let mut text = String::with_capacity(BODY_BYTES);
    text.push_str(&head);
    let mut state = id ^ SCATTER;
    while text.len() < head.len() + filler {
        // splitmix64: 64 random bits, 6 of them per character.
        state = state.wrapping_add(SCATTER);
        let mut bits = state;
        bits = (bits ^ (bits >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        bits = (bits ^ (bits >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        bits ^= bits >> 31;
        for _ in 0..10 {
            if text.len() == head.len() + filler {
                break;
            }
            text.push(BASE64_CHARS[(bits & 63) as usize] as char);
            bits >>= 6;
        }
    }
    text.push_str(tail);
    text
}

const BASE64_CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Standard Webhooks headers for `body`: (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
pub fn headers(key: &[u8], id: u64, mode: IdMode, body: &str) -> [(&'static str, String); 3] {
    let msg_id = event_id(id, mode);
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let tag = sign(
        Algorithm::Sha256,
        key,
        &[
            msg_id.as_bytes(),
            b".",
            ts.as_bytes(),
            b".",
            body.as_bytes(),
        ],
    );
    [
        ("webhook-id", msg_id),
        ("webhook-timestamp", ts),
        ("webhook-signature", format!("v1,{}", BASE64.encode(tag))),
    ]
}

/// One request answered 200.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub id: u64,
    /// The `seq` of hookgate's answer (0 from the baseline).
    pub seq: u64,
    pub latency_us: u32,
    /// When the answer arrived.
    pub at: Instant,
}

/// How a run paces its requests.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next request as soon as the previous one is answered.
    Closed,
    /// This many requests a second in all, spread evenly over the connections. A request that
    /// could not be sent on time because the previous answer on its connection came late counts
    /// its latency from the scheduled send time, so a stall is charged to every request it
    /// delays; one that waited for its time counts from when it was sent, so the timer's
    /// granularity (tokio's is 1 ms) is not charged to the server.
    Rate(f64),
}

/// One run of the load generator.
#[derive(Debug, Clone)]
pub struct Run {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    pub pace: Pace,
    /// Event ids are taken from here; the run also stops once an id reaches `last_id`.
    pub ids: Arc<AtomicU64>,
    pub last_id: u64,
    /// How the ids become event ids.
    pub id_mode: IdMode,
}

/// What a run came to.
pub struct Outcome {
    pub acks: Vec<Ack>,
    /// Requests answered otherwise than 200, or not answered.
    pub errors: usize,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn figures(&self) -> Figures {
        Figures::new(
            self.acks.iter().map(|a| a.latency_us).collect(),
            self.elapsed,
            self.errors,
        )
    }
}

/// Runs the load; must be called inside a tokio runtime.
pub async fn run(run: &Run) -> Outcome {
    let key: Arc<[u8]> = super::key().into();
    let started = Instant::now();
    let deadline = started + run.duration;
    let tasks: Vec<_> = (0..run.connections)
        .map(|index| {
            let schedule = match run.pace {
                Pace::Closed => None,
                Pace::Rate(per_second) => {
                    let gap = Duration::from_secs_f64(1.0 / per_second);
                    Some((started + gap * index as u32, gap * run.connections as u32))
                }
            };
            let connection = Connection {
                url: run.url.clone(),
                key: key.clone(),
                ids: run.ids.clone(),
                last_id: run.last_id,
                id_mode: run.id_mode,
                deadline,
                schedule,
            };
            tokio::spawn(connection.drive())
        })
        .collect();
    let mut outcome = Outcome {
        acks: Vec::new(),
        errors: 0,
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        let (acks, errors) = task.await.expect("connection task");
        outcome.acks.extend(acks);
        outcome.errors += errors;
    }
    outcome.elapsed = started.elapsed();
    outcome
}

struct Connection {
    url: String,
    key: Arc<[u8]>,
    ids: Arc<AtomicU64>,
    last_id: u64,
    id_mode: IdMode,
    deadline: Instant,
    /// Open loop: the first send time and the gap between this connection's sends.
    schedule: Option<(Instant, Duration)>,
}

impl Connection {
    async fn drive(self) -> (Vec<Ack>, usize) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let mut acks = Vec::new();
        let mut errors = 0;
        let mut last_answer = Instant::now();
        for n in 0u32.. {
            let (due, start) = match self.schedule {
                Some((first, gap)) => {
                    let due = first + gap * n;
                    let late = last_answer > due;
                    tokio::time::sleep_until(due.into()).await;
                    (due, if late { due } else { Instant::now() })
                }
                None => {
                    let now = Instant::now();
                    (now, now)
                }
            };
            if due >= self.deadline {
                break;
            }
            let id = self.ids.fetch_add(1, Ordering::Relaxed);
            if id >= self.last_id {
                break;
            }
            let body = body(id, self.id_mode);
            let mut request = client
                .post(&self.url)
                .header("content-type", "application/json");
            for (name, value) in headers(&self.key, id, self.id_mode, &body) {
                request = request.header(name, value);
            }
            // The gateway's ack is a few dozen bytes; kept as it was, so that runs compare.
            #[allow(clippy::disallowed_methods)]
            let answer = match request.body(body).send().await {
                Ok(response) if response.status().is_success() => response.bytes().await.ok(),
                _ => None,
            };
            last_answer = Instant::now();
            let Some(answer) = answer else {
                errors += 1;
                continue;
            };
            let at = last_answer;
            acks.push(Ack {
                id,
                seq: seq_of(&answer),
                latency_us: u32::try_from(at.duration_since(start).as_micros()).unwrap_or(u32::MAX),
                at,
            });
        }
        (acks, errors)
    }
}

/// The `seq` of `{"status":...,"seq":N}`, without a JSON parser on the client's hot path.
fn seq_of(answer: &[u8]) -> u64 {
    let text = std::str::from_utf8(answer).unwrap_or("");
    text.find("\"seq\":")
        .map(|at| &text[at + 6..])
        .map(|rest| {
            rest.trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0)
}
