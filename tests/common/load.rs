//! Load for the durability tests: threads posting unique ids (the `X-Id` header) to provider
//! `p` until stopped, the gateway goes away, or a time limit passes, recording each ack; and a
//! reader of `/v1/events` recording the event id of every seq it sees.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{sign, Api, Gateway};

/// What the load threads saw: each acked id with its seq, and anything unexpected.
#[derive(Default)]
pub struct Load {
    pub acked: Mutex<Vec<(String, u64)>>,
    pub unexpected: Mutex<Vec<String>>,
    pub stop: AtomicBool,
    /// Put in every id (`load-{prefix}{thread}-{n}`), so that several loads on one store send
    /// distinct ids.
    pub prefix: String,
}

impl Load {
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Runs `threads` load threads against `gw` while `main` runs, then waits for them to end
    /// (they end when stopped, when the gateway goes away, or after 15 s).
    pub fn while_running(&self, gw: &Gateway, threads: usize, main: impl FnOnce()) {
        std::thread::scope(|s| {
            for thread in 0..threads {
                let api = gw.api();
                s.spawn(move || self.run(&api, thread, Duration::from_secs(15)));
            }
            main();
        });
    }

    /// The body sent with `id`.
    pub fn body(id: &str) -> String {
        format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(300))
    }

    /// Sends unique-id webhooks until stopped, the gateway goes away, or `limit` passes.
    pub fn run(&self, api: &Api, thread: usize, limit: Duration) {
        let start = Instant::now();
        for n in 0.. {
            if self.stop.load(Ordering::Relaxed) || start.elapsed() > limit {
                break;
            }
            let id = format!("load-{}{thread}-{n}", self.prefix);
            let body = Load::body(&id);
            let headers = sign::headers(&[("X-Id", &id)]);
            match api.try_post("p", &headers, body.as_bytes()) {
                Ok(reply) if reply.status == 200 => {
                    let (status, seq) = reply.ack();
                    if status != "accepted" {
                        self.unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{id}: {status}"));
                    }
                    self.acked.lock().unwrap().push((id, seq));
                }
                Ok(reply) if reply.status == 503 => {
                    if reply.header("retry-after").is_none() {
                        self.unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{id}: 503 without Retry-After"));
                    }
                }
                Ok(reply) => self.unexpected.lock().unwrap().push(format!(
                    "{id}: {} {}",
                    reply.status,
                    reply.text()
                )),
                // The gateway went away (killed or stopped listening).
                Err(_) => break,
            }
        }
    }

    /// Asserts that the store holds every acked id exactly once, at the seq it was acked with.
    pub fn assert_all_stored(&self, gw: &Gateway) {
        let unexpected = self.unexpected.lock().unwrap();
        assert!(unexpected.is_empty(), "unexpected answers: {unexpected:?}");
        let stored = gw.ids_by_seq();
        let acked = self.acked.lock().unwrap();
        eprintln!("{} acked, {} stored", acked.len(), stored.len());
        let acked = acked.iter().map(|(id, seq)| (id.as_str(), *seq));
        assert_kept(&stored, acked, &BTreeMap::new(), "after the restart");
    }
}

/// Polls `/v1/events` through the admin API from seq `after` on, mostly at the tail, recording
/// every seq's event id, until the gateway goes away. Returns the number of pages read.
pub fn read_events(
    admin_url: &str,
    mut after: u64,
    seen: &Mutex<BTreeMap<u64, String>>,
    stop: &AtomicBool,
) -> usize {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut pages = 0;
    while !stop.load(Ordering::Relaxed) {
        let url = format!("{admin_url}/v1/events?after={after}&limit=1000");
        let Ok(response) = client.get(&url).bearer_auth(super::ADMIN_TOKEN).send() else {
            break;
        };
        let Ok(page) = response.json::<serde_json::Value>() else {
            break;
        };
        pages += 1;
        let mut seen = seen.lock().unwrap();
        let mut highest = after;
        for event in page["events"].as_array().expect("events array") {
            let seq = event["seq"].as_u64().unwrap();
            let id = event["event_id"].as_str().unwrap().to_string();
            if let Some(known) = seen.get(&seq) {
                assert_eq!(
                    *known, id,
                    "seq {seq} named two events while the gateway ran"
                );
            }
            seen.insert(seq, id);
            highest = highest.max(seq);
        }
        // Follow the tail, stepping back a little now and then to read pages again.
        after = if pages % 4 == 0 {
            highest.saturating_sub(50)
        } else {
            highest
        };
    }
    pages
}

/// Asserts what a restart after a crash must find in `stored` (the store's event ids by seq):
/// each id once, every acked id at the seq it was acked with, and every seq a reader `seen`
/// before the crash naming the same id. `context` starts each failure's message.
pub fn assert_kept<'a>(
    stored: &BTreeMap<u64, String>,
    acked: impl IntoIterator<Item = (&'a str, u64)>,
    seen: &BTreeMap<u64, String>,
    context: &str,
) {
    let mut seq_of: HashMap<&str, u64> = HashMap::new();
    for (seq, id) in stored {
        if let Some(other) = seq_of.insert(id, *seq) {
            panic!("{context}: {id} stored twice, under {other} and {seq}");
        }
    }
    let acked: Vec<(&str, u64)> = acked.into_iter().collect();
    let lost = missing(acked.iter().copied(), stored);
    assert!(
        lost.is_empty(),
        "{context}: {} of {} acks lost or moved: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(10)]
    );
    let changed: Vec<String> = seen
        .iter()
        .filter(|(seq, id)| stored.get(seq) != Some(id))
        .map(|(seq, id)| format!("seq {seq}: read as {id}, stored {:?}", stored.get(seq)))
        .collect();
    assert!(
        changed.is_empty(),
        "{context}: {} of {} seqs read name another event (or none) after the crash: {:?}",
        changed.len(),
        seen.len(),
        &changed[..changed.len().min(10)]
    );
}

/// The acks (event id, seq) that `found` (event ids by seq: stored, delivered, pulled) does not
/// hold at their seq, each with what it holds there, sorted.
pub fn missing<'a>(
    acked: impl IntoIterator<Item = (&'a str, u64)>,
    found: &BTreeMap<u64, String>,
) -> Vec<String> {
    let mut missing: Vec<String> = acked
        .into_iter()
        .filter(|(id, seq)| found.get(seq).map(String::as_str) != Some(*id))
        .map(|(id, seq)| format!("{id} acked as {seq}, found {:?}", found.get(&seq)))
        .collect();
    missing.sort();
    missing
}
