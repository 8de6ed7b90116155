//! Load for the durability tests: threads posting unique ids (the `X-Id` header) to provider
//! `p` until stopped, the gateway goes away, or a time limit passes, recording each ack.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
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
            let id = format!("load-{thread}-{n}");
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
        let events = gw.all_events(None);
        let mut by_id: HashMap<String, Vec<u64>> = HashMap::new();
        for event in &events {
            let id = event["event_id"].as_str().unwrap().to_string();
            by_id
                .entry(id)
                .or_default()
                .push(event["seq"].as_u64().unwrap());
        }
        let twice: Vec<_> = by_id.iter().filter(|(_, seqs)| seqs.len() > 1).collect();
        assert!(twice.is_empty(), "event ids stored twice: {twice:?}");
        let acked = self.acked.lock().unwrap();
        eprintln!("{} acked, {} stored", acked.len(), events.len());
        let lost: Vec<_> = acked
            .iter()
            .filter(|(id, seq)| by_id.get(id) != Some(&vec![*seq]))
            .collect();
        assert!(
            lost.is_empty(),
            "{} of {} acked events lost or moved: {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(10)]
        );
    }
}
