//! Retention on sled: both trees are scanned from the oldest entry in small steps (at most
//! [`BATCH`] deletes per store write, a blocking read between async yields), and every delete
//! goes through the committer's group commit, so a sweep never holds ingest up. Which events
//! go is [`verdict`]'s decision.

use std::sync::Arc;

use super::pack::{self, Pack};
use super::{Reader, SledStore, Stored, TreeId, Write};
use crate::event::Seq;
use crate::store::retention::{verdict, Standing, Verdict};
use crate::store::{Cutoffs, Output, StoreError, StoredEvent, Swept};

/// Most deletes in one store write: one small group commit that events wait little behind.
const BATCH: usize = 500;
/// Most entries of a tree one sweep looks at; the next sweep resumes where this one stopped.
const MAX_EXAMINED: usize = 50_000;

/// Where the next sweep resumes.
#[derive(Debug, Default)]
pub struct Resume {
    /// After this seq (0: from the oldest event).
    events: Seq,
}

impl Resume {
    /// Whether the last sweep went through every expired event (the next starts from the
    /// oldest again).
    pub fn events_done(&self) -> bool {
        self.events == Seq(0)
    }
}

/// One sweep: expired events, then expired dedup keys (the committer's part: `runs/`).
pub async fn sweep(
    store: &SledStore,
    resume: &mut Resume,
    cutoffs: Cutoffs,
    outputs: Arc<Vec<Output>>,
) -> Result<Swept, StoreError> {
    let events = sweep_events(store, resume, cutoffs.events_ms, outputs).await?;
    let dedup_keys = store.expire_dedup(cutoffs.dedup_ms).await?;
    Ok(Swept {
        events,
        dedup_keys,
        disk_freed: 0,
        more: events > 0 && !resume.events_done(),
        held_only: false,
    })
}

/// Removes expired events, oldest first, up to `MAX_EXAMINED` looked at. Returns how many.
async fn sweep_events(
    store: &SledStore,
    resume: &mut Resume,
    cutoff_ms: u64,
    outputs: Arc<Vec<Output>>,
) -> Result<u64, StoreError> {
    let mut examined = 0;
    let mut swept = 0;
    while examined < MAX_EXAMINED {
        let (outputs, after) = (outputs.clone(), resume.events);
        let step = store
            .read(move |r| scan_events(r, &outputs, after, cutoff_ms))
            .await?;
        examined += step.examined;
        if !step.writes.is_empty() {
            store.write(step.writes).await?;
            swept += step.events;
        }
        if step.done {
            resume.events = Seq(0);
            break;
        }
        resume.events = step.last.unwrap_or(after).max(after);
        tokio::task::yield_now().await;
    }
    Ok(swept)
}

/// The values after `after` (up to about `BATCH` events), each judged by [`verdict`]: a value
/// goes when all its events do. Blocking.
pub(super) fn scan_events(
    reader: &Reader,
    outputs: &[Output],
    after: Seq,
    cutoff_ms: u64,
) -> Result<EventsStep, StoreError> {
    // Cursors only move forward, so reading them before the events is safe: an event at or
    // below one is done for that output for good (bar an operator's replay, see `judge`).
    let cursors = outputs
        .iter()
        .map(|output| reader.cursor(&output.name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut step = EventsStep::default();
    let mut young = false;
    reader.scan(Seq(after.0 + 1), |stored| {
        let mut expired = Vec::new();
        // The value the scan starts in may hold seqs at or below `after`, judged by an earlier
        // step (kept): counted again, a pack of `BATCH` held events, the last before swept
        // ones, was the whole of every step, and retention stopped there for good.
        let new = stored.events.iter().filter(|(seq, _)| *seq > after);
        let mut judged = 0;
        for (seq, event) in new {
            judged += 1;
            let verdict = match event {
                Ok(event) => judge(reader, outputs, &cursors, event, cutoff_ms)?,
                Err(err) => {
                    tracing::warn!(seq = %seq, error = %err, "Keeping an event that cannot be read.");
                    Verdict::Held
                }
            };
            if verdict == Verdict::Young {
                // This one and every later one stay; those before it in the value may go.
                young = true;
                break;
            }
            if verdict == Verdict::Expired {
                expired.push(*seq);
            }
        }
        step.examined += judged;
        step.last = stored.events.last().map(|(seq, _)| *seq);
        step.events += expired.len() as u64;
        // Removed whole only when every record it holds was judged: the open pack may hold
        // records of a batch that is being synced (past the durable `last_seq`, left out of
        // `events`), acknowledged by the time the removal is applied; the value as it is would
        // have taken them with it (`without` keeps them).
        if expired.len() == stored.events.len() && !stored.holds_more {
            // The first key's value only if it is still what was judged (the committer may
            // have appended to the pack since); a large record's parts never change.
            let mut keys = stored.keys.into_iter();
            if let Some(first) = keys.next() {
                let expected = stored.value.to_vec();
                step.writes
                    .push(Write::Swap(TreeId::Events, first, expected, None));
            }
            step.writes
                .extend(keys.map(|key| Write::Delete(TreeId::Events, key)));
        } else if !expired.is_empty() {
            step.writes.push(without(&stored, &expired)?);
        }
        Ok(!young && step.examined < BATCH)
    })?;
    step.done = young || step.last.is_none() || step.examined < BATCH;
    Ok(step)
}

/// The pack `stored`, rewritten without the `expired` seqs (a large value holds one event,
/// so it is never partly expired).
fn without(stored: &Stored, expired: &[Seq]) -> Result<Write, StoreError> {
    let corrupt =
        |err: String| StoreError::Corrupt(format!("events value {}: {err}", stored.first));
    let unsealed = pack::unseal(&stored.value).map_err(corrupt)?;
    let pack::Value::Pack(records) = pack::parse(&unsealed).map_err(corrupt)? else {
        return Err(corrupt("a large record partly expired".into()));
    };
    // It holds fewer bytes than the pack it replaces, so within the store's bound.
    let mut kept = Pack::new(stored.first, pack::MAX_PACK);
    for (offset, record) in records {
        let seq = Seq(stored.first.0 + u64::from(offset));
        if !expired.contains(&seq) && !kept.push_at(seq, record) {
            return Err(corrupt("a pack that no longer fits".into()));
        }
    }
    Ok(Write::Swap(
        TreeId::Events,
        pack::key(stored.first).to_vec(),
        stored.value.to_vec(),
        Some(kept.sealed()),
    ))
}

/// What one blocking step over the events found.
#[derive(Default)]
pub(super) struct EventsStep {
    /// The deletes (and pack rewrites) that remove the expired events, and how many those are.
    pub(super) writes: Vec<Write>,
    events: u64,
    examined: usize,
    /// The last seq of the last value looked at.
    last: Option<Seq>,
    /// The scan reached a young event or the end.
    done: bool,
}

/// The verdict on one event; the marks are read only when the cursors alone would let it go.
/// The remaining race, an operator replaying an event already delivered while it is being
/// swept, loses nothing that was not delivered.
fn judge(
    reader: &Reader,
    outputs: &[Output],
    cursors: &[Seq],
    event: &StoredEvent,
    cutoff_ms: u64,
) -> Result<Verdict, StoreError> {
    let seq = Seq(event.seq);
    let mut standings: Vec<Standing> = outputs
        .iter()
        .zip(cursors)
        .map(|(output, cursor)| Standing {
            takes: output.takes(event),
            cursor: *cursor,
            kept: false,
        })
        .collect();
    let first = verdict(seq, event.received_at_ms, cutoff_ms, &standings);
    if first != Verdict::Expired {
        return Ok(first);
    }
    for (output, standing) in outputs.iter().zip(standings.iter_mut()) {
        if output.keeps_marks {
            let marks = reader.marks(&output.name, seq)?;
            standing.kept = marks.dead.is_some() || marks.replay;
        }
    }
    Ok(verdict(seq, event.received_at_ms, cutoff_ms, &standings))
}
