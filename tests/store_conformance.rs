//! The store's conformance suite: what every [`Backend`] promises, checked through [`Store`]
//! alone. Each check takes an opener (`Fn(&Path) -> Store`, the same directory reopening the
//! same store) and a fresh directory; `conformance!` turns the checks into one test each for a
//! backend. A new backend adds one `conformance!` line.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hookgate::config::{ConsumerConfig, JetStreamConfig, NatsAuth, StoreBackend, StoreConfig};
use hookgate::event::{EventId, ProviderName, Seq, Source};
use hookgate::metrics::Metrics;
use hookgate::store::{
    read_to_end, Backend, Change, Committed, Cutoffs, DeadRecord, Mark, Marks, NewEvent, Output,
    OutputState, Store, StoreError, StoredEvent, Swept, READ_BODY_BYTES,
};
use rand::RngCore as _;

use common::nats::NatsServer;

/// Long enough for any commit on a loaded test machine.
const DEADLINE: Duration = Duration::from_secs(30);
/// Arrival time of "old" events: long before any cutoff used here.
const LONG_AGO_MS: u64 = 1_000;
/// Events and dedup keys received before this go (when their outputs are done with them);
/// events received now (2020s) are young.
const CUTOFF_MS: u64 = 1_000_000;

fn event(provider: &str, id: &str, body: &[u8]) -> NewEvent {
    NewEvent::poll(
        ProviderName::parse(provider).unwrap(),
        EventId::new(id).unwrap(),
        Some("application/json".into()),
        Bytes::copy_from_slice(body),
    )
}

async fn commit(store: &Store, event: NewEvent) -> Committed {
    store.commit(event, DEADLINE).await.unwrap()
}

async fn accept(store: &Store, provider: &str, id: &str, body: &[u8]) -> Seq {
    match commit(store, event(provider, id, body)).await {
        Committed::Accepted(seq) => seq,
        other => panic!("{provider}/{id}: expected Accepted, got {other:?}"),
    }
}

async fn accept_old(store: &Store, provider: &str, id: &str) -> Seq {
    match commit(store, event(provider, id, b"{}").received_at(LONG_AGO_MS)).await {
        Committed::Accepted(seq) => seq,
        other => panic!("{provider}/{id}: expected Accepted, got {other:?}"),
    }
}

async fn all_seqs(store: &Store) -> Vec<u64> {
    let events = store.events_after(Seq(0), 100_000, None).await.unwrap();
    events.iter().map(|e| e.seq).collect()
}

fn last_seq(store: &Store) -> Seq {
    *store.last_seq().borrow()
}

fn dead(attempts: u32) -> DeadRecord {
    DeadRecord {
        at_ms: 1_700_000_000_000 + u64::from(attempts),
        attempts,
        error: format!("HTTP 500 after {attempts} attempts"),
    }
}

/// Sweeps until a sweep removes nothing (a sweep is a bounded step that resumes), and returns
/// the total.
async fn sweep_all(store: &Store, cutoffs: Cutoffs, outputs: &Arc<Vec<Output>>) -> Swept {
    let mut total = Swept::default();
    for _ in 0..20 {
        let swept = store.sweep(cutoffs, outputs.clone()).await.unwrap();
        // A compaction after the pass (sled) frees disk, not events: not counted here.
        if swept.events == 0 && swept.dedup_keys == 0 {
            return total;
        }
        total.events += swept.events;
        total.dedup_keys += swept.dedup_keys;
    }
    panic!("sweeping never settled: {total:?} so far");
}

/// Closes `store`, drops it, and opens the same directory again.
async fn reopen(store: Store, dir: &Path, open: &impl Fn(&Path) -> Store) -> Store {
    store.close().await;
    assert!(!store.is_open(), "is_open() after close()");
    drop(store);
    open(dir)
}

/// Waits, once a check is done with its store (dropped, closed or not), for the store to be let
/// go of: the temporary directory is removed after, not while the committer's last sync, a
/// checkpoint's reopening or sled's own threads still write in it (they left
/// `store/{conf,db,snap.*}` behind in /tmp). A sled data dir holds the watermark `acked`; a
/// JetStream store keeps nothing here but its server's files.
async fn settle(dir: &Path) {
    if dir.join("acked").exists() {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || {
            hookgate::store::checkpoint(&dir, &StoreConfig::default())
        })
        .await
        .unwrap()
        .unwrap_or_else(|err| panic!("the store left behind cannot be opened: {err}"));
    }
}

// ---- the checks ----

/// Accepted seqs start at 1 and strictly increase; `last_seq` covers each one once it is acked.
pub async fn seqs_start_at_one_and_increase(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    assert!(store.is_open());
    assert_eq!(last_seq(&store), Seq(0), "an empty store's last_seq");
    let mut previous = Seq(0);
    for i in 0..50 {
        let seq = accept(&store, "p", &format!("id-{i}"), b"{}").await;
        if i == 0 {
            assert_eq!(seq, Seq(1), "the first seq");
        }
        assert!(seq > previous, "seq {seq} after {previous}");
        assert!(
            last_seq(&store) >= seq,
            "acked {seq}, last_seq {}",
            last_seq(&store)
        );
        previous = seq;
    }
}

/// Same provider + id: a duplicate of the first seq, whatever the body; same id under another
/// provider: a new event.
pub async fn dedup_by_provider_and_id(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let first = accept(&store, "a", "id-1", b"first").await;
    assert_eq!(
        commit(&store, event("a", "id-1", b"second")).await,
        Committed::Duplicate(first)
    );
    let other = accept(&store, "b", "id-1", b"other provider").await;
    assert!(other > first);
    // An id that is a prefix or extension of another is another id.
    let longer = accept(&store, "a", "id-10", b"longer").await;
    assert!(longer > other);
    assert_eq!(
        commit(&store, event("b", "id-1", b"again")).await,
        Committed::Duplicate(other)
    );
    // A provider name and id that concatenate alike are distinct.
    let ab = accept(&store, "ab", "c", b"ab/c").await;
    let a_bc = accept(&store, "a", "bc", b"a/bc").await;
    assert_ne!(ab, a_bc);
    // The duplicate stored nothing: the first body stays.
    let stored = store.event(first).await.unwrap().unwrap();
    assert_eq!(stored.body, b"first");
    let ids: Vec<(String, String)> = store
        .events_after(Seq(0), 100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.provider, e.event_id))
        .collect();
    let expected = [
        ("a", "id-1"),
        ("b", "id-1"),
        ("a", "id-10"),
        ("ab", "c"),
        ("a", "bc"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(p, i)| (p.to_string(), i.to_string()))
        .collect();
    assert_eq!(ids, expected);
}

/// Many tasks commit the same ids at once: exactly one is accepted per id, every other answer
/// is a duplicate of that seq, and one event is stored per id.
pub async fn concurrent_commits_of_one_id(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    const IDS: usize = 8;
    const TASKS_PER_ID: usize = 24;
    let mut tasks = Vec::new();
    for task in 0..TASKS_PER_ID {
        for id in 0..IDS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("task {task}");
                let committed = commit(&store, event("p", &format!("race-{id}"), body.as_bytes()));
                (id, committed.await)
            }));
        }
    }
    let mut answers: Vec<Vec<Committed>> = vec![Vec::new(); IDS];
    for task in tasks {
        let (id, committed) = task.await.unwrap();
        answers[id].push(committed);
    }
    let mut seqs = BTreeSet::new();
    for (id, answers) in answers.iter().enumerate() {
        let accepted: Vec<Seq> = answers
            .iter()
            .filter_map(|c| match c {
                Committed::Accepted(seq) => Some(*seq),
                Committed::Duplicate(_) => None,
            })
            .collect();
        assert_eq!(accepted.len(), 1, "race-{id}: accepted {accepted:?}");
        let seq = accepted[0];
        for answer in answers {
            assert!(
                *answer == Committed::Accepted(seq) || *answer == Committed::Duplicate(seq),
                "race-{id}: {answer:?} beside Accepted({seq})"
            );
        }
        seqs.insert(seq.0);
    }
    let stored = store.events_after(Seq(0), 1000, None).await.unwrap();
    assert_eq!(stored.len(), IDS, "one event per id");
    for event in &stored {
        assert!(
            seqs.contains(&event.seq),
            "stored seq {} never acked",
            event.seq
        );
    }
}

/// `events_after`: seq order, `limit`, the provider filter, and nothing past the end.
pub async fn events_after_orders_limits_and_filters(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let mut committed = Vec::new();
    for i in 0..30u32 {
        let provider = if i % 3 == 0 { "a" } else { "b" };
        let id = format!("ev-{i}");
        let body = format!(r#"{{"n":{i}}}"#);
        let seq = accept(&store, provider, &id, body.as_bytes()).await;
        committed.push((seq.0, provider.to_string(), id, body.into_bytes()));
    }
    let all = store.events_after(Seq(0), 1000, None).await.unwrap();
    let got: Vec<(u64, String, String, Vec<u8>)> = all
        .iter()
        .map(|e| {
            (
                e.seq,
                e.provider.clone(),
                e.event_id.clone(),
                e.body.clone(),
            )
        })
        .collect();
    assert_eq!(got, committed);
    for e in &all {
        assert_eq!(e.source, Source::Poll);
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
    }
    let seqs: Vec<u64> = committed.iter().map(|c| c.0).collect();

    // Limit, from the middle.
    let page = store.events_after(Seq(seqs[9]), 5, None).await.unwrap();
    let page: Vec<u64> = page.iter().map(|e| e.seq).collect();
    assert_eq!(page, seqs[10..15]);
    // Paging with the last seq of each page visits everything once.
    let mut paged = Vec::new();
    let mut after = Seq(0);
    loop {
        let page = store.events_after(after, 7, None).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        after = Seq(last.seq);
        paged.extend(page.iter().map(|e| e.seq));
    }
    assert_eq!(paged, seqs);
    assert!(store
        .events_after(Seq(0), 0, None)
        .await
        .unwrap()
        .is_empty());

    // The provider filter, with and without a limit.
    let of_a: Vec<u64> = committed
        .iter()
        .filter(|c| c.1 == "a")
        .map(|c| c.0)
        .collect();
    let got = store
        .events_after(Seq(0), 1000, Some("a".into()))
        .await
        .unwrap();
    assert!(got.iter().all(|e| e.provider == "a"));
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), of_a);
    let got = store
        .events_after(Seq(of_a[2]), 3, Some("a".into()))
        .await
        .unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), of_a[3..6]);
    assert!(store
        .events_after(Seq(0), 1000, Some("nobody".into()))
        .await
        .unwrap()
        .is_empty());

    // At and beyond the end.
    let last = *seqs.last().unwrap();
    for after in [last, last + 1, last + 1000, u64::MAX] {
        let page = store.events_after(Seq(after), 1000, None).await.unwrap();
        assert!(page.is_empty(), "after {after}: {} events", page.len());
    }
}

/// The provider filter across thousands of other providers' events (on sled, more than one
/// step of its scan): every event of the provider, in order, whatever the limit.
pub async fn a_provider_filter_reads_past_many_other_events(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    const EVENTS: u32 = 10_000;
    let store = open(dir);
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (task..EVENTS).step_by(32) {
                    let provider = if i % 997 == 500 { "rare" } else { "busy" };
                    accept(&store, provider, &format!("ev-{i}"), b"{}").await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let rare: Vec<u64> = store
        .events_after(Seq(0), EVENTS as usize, None)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.provider == "rare")
        .map(|e| e.seq)
        .collect();
    assert_eq!(rare.len(), 10);
    for limit in [1, 3, 10, 1000] {
        let mut read = Vec::new();
        let mut after = Seq(0);
        loop {
            let page = store
                .events_after(after, limit, Some("rare".into()))
                .await
                .unwrap();
            assert!(page.len() <= limit);
            assert!(page.iter().all(|e| e.provider == "rare"));
            let Some(last) = page.last() else { break };
            after = Seq(last.seq);
            read.extend(page.iter().map(|e| e.seq));
        }
        assert_eq!(read, rare, "limit {limit}");
    }
    assert!(store
        .events_after(Seq(rare[9]), 10, Some("rare".into()))
        .await
        .unwrap()
        .is_empty());
    // A name no provider can have holds no event (on JetStream, `*` was a subject wildcard
    // answering every provider's events, and `a.b` no valid subject: a store error).
    for name in ["*", ">", "busy.>", "bu sy", "a.b"] {
        let found = store.events_after(Seq(0), 10, Some(name.into())).await;
        assert!(found.unwrap().is_empty(), "{name}");
    }
}

/// `event(seq)`: the event stored under seq, or None.
pub async fn event_by_seq(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    assert_eq!(store.event(Seq(1)).await.unwrap(), None, "an empty store");
    let mut seqs = Vec::new();
    for i in 0..20 {
        let seq = accept(
            &store,
            "p",
            &format!("id-{i}"),
            format!("body {i}").as_bytes(),
        )
        .await;
        seqs.push(seq);
    }
    for (i, seq) in seqs.iter().enumerate() {
        let event = store.event(*seq).await.unwrap();
        let event = event.unwrap_or_else(|| panic!("seq {seq} missing"));
        assert_eq!(event.seq, seq.0);
        assert_eq!(event.provider, "p");
        assert_eq!(event.event_id, format!("id-{i}"));
        assert_eq!(event.body, format!("body {i}").into_bytes());
        assert_eq!(event.source, Source::Poll);
    }
    let last = seqs.last().unwrap().0;
    for absent in [0, last + 1, last + 100, u64::MAX] {
        assert_eq!(
            store.event(Seq(absent)).await.unwrap(),
            None,
            "seq {absent}"
        );
    }
}

/// Bodies of any size and content come back byte for byte, through both reads, and do not
/// disturb their neighbours.
pub async fn large_bodies_round_trip(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let sizes = [
        1 << 20,
        200 * 1024,
        (1 << 20) - 1,
        6 * 1024 - 1,
        6 * 1024,
        6 * 1024 + 1,
        12 * 1024 + 3,
        0,
        1,
        64 * 1024,
    ];
    let mut sent = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let mut body = vec![0u8; *size];
        rand::thread_rng().fill_bytes(&mut body);
        let seq = accept(&store, "p", &format!("large-{i}"), &body).await;
        // A small event beside each large one.
        let small = format!("small {i}").into_bytes();
        let small_seq = accept(&store, "p", &format!("small-{i}"), &small).await;
        sent.push((seq, body));
        sent.push((small_seq, small));
    }
    for (seq, body) in &sent {
        let stored = store.event(*seq).await.unwrap().unwrap().body;
        assert!(
            stored == *body,
            "seq {seq}: {} bytes sent, {} read, differing",
            body.len(),
            stored.len()
        );
    }
    let all = store.events_after(Seq(0), 1000, None).await.unwrap();
    assert_eq!(all.len(), sent.len());
    for (event, (seq, body)) in all.iter().zip(&sent) {
        assert_eq!(event.seq, seq.0);
        assert!(
            event.body == *body,
            "seq {seq} differs through events_after"
        );
    }
    // Starting a page right after, or at, a large event.
    let after = store.events_after(sent[0].0, 1, None).await.unwrap();
    assert_eq!(after[0].seq, sent[1].0 .0);
}

/// A read stops once its bodies reach [`READ_BODY_BYTES`] (the event that reaches it included),
/// whatever its limit, and says so: a reader of 256 events of 64 MiB held 16 GiB.
pub async fn a_read_stops_once_its_bodies_reach_the_bound(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    let store = open(dir);
    let size = store.largest_body().unwrap_or(usize::MAX).min(1 << 20);
    let per_read = READ_BODY_BYTES.div_ceil(size);
    let total = per_read + 4;
    for i in 0..total {
        accept(&store, "p", &format!("big-{i}"), &vec![b'x'; size]).await;
        // Events of another provider between them: a provider's read skips them.
        accept(&store, "q", &format!("small-{i}"), b"small").await;
    }
    for provider in [Some("p".to_string()), None] {
        let (mut after, mut read, mut reads) = (Seq(0), 0, 0);
        loop {
            let events = store
                .events_after(after, 1000, provider.clone())
                .await
                .unwrap();
            reads += 1;
            let bytes: usize = events.iter().map(|e| e.body.len()).sum();
            assert!(
                bytes < READ_BODY_BYTES + size,
                "{provider:?}: a read of {bytes} bytes"
            );
            read += events.iter().filter(|e| e.provider == "p").count();
            if read_to_end(&events, 1000) {
                break;
            }
            assert!(bytes >= READ_BODY_BYTES, "a short read not at the end");
            after = Seq(events.last().unwrap().seq);
        }
        assert_eq!(read, total, "{provider:?}: every event read");
        assert_eq!(reads, 2, "{provider:?}: a read of {per_read} then the rest");
    }
}

/// An output's cursor starts at 0 and never moves back; the pause flag toggles; outputs are
/// independent.
pub async fn output_cursor_and_pause(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let unset = OutputState {
        cursor: Seq(0),
        paused: false,
    };
    assert_eq!(store.output("crm").await.unwrap(), unset);
    store
        .change("crm", vec![Change::Cursor(Seq(5))])
        .await
        .unwrap();
    assert_eq!(store.output("crm").await.unwrap().cursor, Seq(5));
    store
        .change("crm", vec![Change::Cursor(Seq(3))])
        .await
        .unwrap();
    assert_eq!(
        store.output("crm").await.unwrap().cursor,
        Seq(5),
        "moved back"
    );
    store
        .change(
            "crm",
            vec![Change::Cursor(Seq(300)), Change::Cursor(Seq(7))],
        )
        .await
        .unwrap();
    assert_eq!(store.output("crm").await.unwrap().cursor, Seq(300));
    store
        .change("crm", vec![Change::Paused(true)])
        .await
        .unwrap();
    assert_eq!(
        store.output("crm").await.unwrap(),
        OutputState {
            cursor: Seq(300),
            paused: true
        }
    );
    // Other outputs, including one whose name extends this one's, are untouched.
    assert_eq!(store.output("crm2").await.unwrap(), unset);
    assert_eq!(store.output("cr").await.unwrap(), unset);
    store
        .change("crm2", vec![Change::Cursor(Seq(2)), Change::Paused(true)])
        .await
        .unwrap();
    store
        .change("crm", vec![Change::Paused(false)])
        .await
        .unwrap();
    assert_eq!(
        store.output("crm").await.unwrap(),
        OutputState {
            cursor: Seq(300),
            paused: false
        }
    );
    assert_eq!(
        store.output("crm2").await.unwrap(),
        OutputState {
            cursor: Seq(2),
            paused: true
        }
    );
}

/// Dead, replay and settled marks: set, listed by range and limit, counted, read per event,
/// cleared, and kept apart per output.
pub async fn marks_set_list_count_and_clear(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let all = Seq(0)..=Seq(u64::MAX);
    assert!(store
        .marked("crm", Mark::Dead, all.clone(), 100)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), 0);
    assert_eq!(store.marks("crm", Seq(3)).await.unwrap(), Marks::default());

    store
        .change(
            "crm",
            vec![
                Change::Dead(Seq(3), dead(3)),
                Change::Dead(Seq(256), dead(256)),
                Change::Dead(Seq(5), dead(5)),
                Change::Dead(Seq(1), dead(1)),
                Change::Mark(Mark::Replay, Seq(4)),
                Change::Mark(Mark::Settled, Seq(6)),
                Change::Mark(Mark::Settled, Seq(7)),
            ],
        )
        .await
        .unwrap();
    // Another output, whose name extends this one's.
    store
        .change(
            "crm2",
            vec![
                Change::Dead(Seq(2), dead(2)),
                Change::Mark(Mark::Replay, Seq(3)),
            ],
        )
        .await
        .unwrap();

    let dead_marks = store
        .marked("crm", Mark::Dead, all.clone(), 100)
        .await
        .unwrap();
    assert_eq!(
        dead_marks,
        vec![
            (Seq(1), Some(dead(1))),
            (Seq(3), Some(dead(3))),
            (Seq(5), Some(dead(5))),
            (Seq(256), Some(dead(256))),
        ]
    );
    let ranged = store
        .marked("crm", Mark::Dead, Seq(3)..=Seq(255), 100)
        .await
        .unwrap();
    assert_eq!(
        ranged,
        vec![(Seq(3), Some(dead(3))), (Seq(5), Some(dead(5)))]
    );
    let limited = store
        .marked("crm", Mark::Dead, Seq(2)..=Seq(1000), 2)
        .await
        .unwrap();
    assert_eq!(
        limited,
        vec![(Seq(3), Some(dead(3))), (Seq(5), Some(dead(5)))]
    );
    assert_eq!(
        store
            .marked("crm", Mark::Replay, all.clone(), 100)
            .await
            .unwrap(),
        vec![(Seq(4), None)]
    );
    assert_eq!(
        store
            .marked("crm", Mark::Settled, all.clone(), 100)
            .await
            .unwrap(),
        vec![(Seq(6), None), (Seq(7), None)]
    );
    assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), 4);
    assert_eq!(store.count_marked("crm", Mark::Replay).await.unwrap(), 1);
    assert_eq!(store.count_marked("crm", Mark::Settled).await.unwrap(), 2);
    assert_eq!(store.count_marked("crm2", Mark::Dead).await.unwrap(), 1);
    assert_eq!(store.count_marked("cr", Mark::Dead).await.unwrap(), 0);
    assert_eq!(
        store.marks("crm", Seq(3)).await.unwrap(),
        Marks {
            dead: Some(dead(3)),
            replay: false,
            settled: false
        }
    );
    assert_eq!(
        store.marks("crm2", Seq(3)).await.unwrap(),
        Marks {
            dead: None,
            replay: true,
            settled: false
        }
    );
    assert_eq!(store.marks("crm", Seq(2)).await.unwrap(), Marks::default());

    // Replayed: the dead mark goes and a replay mark comes, in one change.
    store
        .change(
            "crm",
            vec![
                Change::Unmark(Mark::Dead, Seq(5)),
                Change::Mark(Mark::Replay, Seq(5)),
                Change::Unmark(Mark::Settled, Seq(6)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.marks("crm", Seq(5)).await.unwrap(),
        Marks {
            dead: None,
            replay: true,
            settled: false
        }
    );
    assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), 3);
    assert_eq!(store.count_marked("crm", Mark::Replay).await.unwrap(), 2);
    assert_eq!(
        store
            .marked("crm", Mark::Settled, all.clone(), 100)
            .await
            .unwrap(),
        vec![(Seq(7), None)]
    );
    // A dead record is replaced by a later one for the same seq.
    store
        .change("crm", vec![Change::Dead(Seq(3), dead(9))])
        .await
        .unwrap();
    assert_eq!(
        store.marks("crm", Seq(3)).await.unwrap().dead,
        Some(dead(9))
    );
    // Clearing a mark that is not there is harmless.
    store
        .change("crm", vec![Change::Unmark(Mark::Replay, Seq(99))])
        .await
        .unwrap();
    assert_eq!(store.count_marked("crm2", Mark::Dead).await.unwrap(), 1);
    assert_eq!(store.count_marked("crm2", Mark::Replay).await.unwrap(), 1);
}

/// Thousands of dead records (a destination down for long): listed in seq order by range and
/// limit, counted, cleared one by one, and the cursor still moves beside them.
pub async fn many_dead_records(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    const DEAD: u64 = 3_000;
    // Every third seq from 1 on, 500 to a change.
    let seqs: Vec<u64> = (0..DEAD).map(|i| 1 + 3 * i).collect();
    for chunk in seqs.chunks(500) {
        let changes = chunk.iter().map(|&seq| Change::Dead(Seq(seq), dead(7)));
        store.change("crm", changes.collect()).await.unwrap();
    }
    assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), DEAD);
    let first = store
        .marked("crm", Mark::Dead, Seq(0)..=Seq(u64::MAX), 5)
        .await
        .unwrap();
    let first: Vec<u64> = first.into_iter().map(|(seq, _)| seq.0).collect();
    assert_eq!(first, vec![1, 4, 7, 10, 13]);
    let ranged = store
        .marked("crm", Mark::Dead, Seq(4_000)..=Seq(5_000), usize::MAX)
        .await
        .unwrap();
    let expected: Vec<u64> = seqs
        .iter()
        .copied()
        .filter(|seq| (4_000..=5_000).contains(seq))
        .collect();
    assert_eq!(
        ranged.iter().map(|(seq, _)| seq.0).collect::<Vec<_>>(),
        expected
    );
    assert!(ranged.iter().all(|(_, record)| record == &Some(dead(7))));
    for &seq in &seqs[..100] {
        store
            .change("crm", vec![Change::Unmark(Mark::Dead, Seq(seq))])
            .await
            .unwrap();
    }
    assert_eq!(
        store.count_marked("crm", Mark::Dead).await.unwrap(),
        DEAD - 100
    );
    assert_eq!(store.marks("crm", Seq(1)).await.unwrap(), Marks::default());
    assert_eq!(
        store.marks("crm", Seq(seqs[100])).await.unwrap().dead,
        Some(dead(7))
    );
    store
        .change("crm", vec![Change::Cursor(Seq(DEAD * 3))])
        .await
        .unwrap();
    assert_eq!(store.output("crm").await.unwrap().cursor, Seq(DEAD * 3));
}

/// Changes to one output from many tasks at once all apply: the cursor ends at the highest
/// one, and every mark set is there (a backend whose `change` is a read-modify-write must not
/// lose one to another writer).
pub async fn concurrent_changes_of_one_output_all_apply(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    const TASKS: u64 = 8;
    const CHANGES: u64 = 10;
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CHANGES {
                let seq = 1 + task * CHANGES + i;
                // Cursors arrive out of order across tasks.
                let cursor = (task * 7 + i * 13) % (TASKS * CHANGES) + 1;
                store
                    .change(
                        "crm",
                        vec![
                            Change::Cursor(Seq(cursor)),
                            Change::Mark(Mark::Settled, Seq(seq)),
                        ],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let highest = (0..TASKS)
        .flat_map(|task| (0..CHANGES).map(move |i| (task * 7 + i * 13) % (TASKS * CHANGES) + 1))
        .max()
        .unwrap();
    assert_eq!(store.output("crm").await.unwrap().cursor, Seq(highest));
    assert_eq!(
        store.count_marked("crm", Mark::Settled).await.unwrap(),
        TASKS * CHANGES
    );
}

/// Pollers' sync cursors: absent, saved, overwritten, per provider.
pub async fn sync_cursors_round_trip(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    assert_eq!(store.sync_cursor("gh").await.unwrap(), None);
    let binary = vec![0u8, 255, 1, 0, 7, b'x'];
    store.set_sync_cursor("gh", binary.clone()).await.unwrap();
    assert_eq!(store.sync_cursor("gh").await.unwrap(), Some(binary));
    store
        .set_sync_cursor("gh", b"page=2".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.sync_cursor("gh").await.unwrap(),
        Some(b"page=2".to_vec())
    );
    assert_eq!(store.sync_cursor("g").await.unwrap(), None);
    assert_eq!(store.sync_cursor("gh2").await.unwrap(), None);
    store
        .set_sync_cursor("gh2", b"other".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.sync_cursor("gh").await.unwrap(),
        Some(b"page=2".to_vec())
    );
    // As large as the store says it takes.
    let largest = vec![b'x'; store.largest_sync_cursor()];
    assert!(largest.len() >= 6 * 1024, "{} bytes", largest.len());
    store.set_sync_cursor("big", largest.clone()).await.unwrap();
    assert_eq!(store.sync_cursor("big").await.unwrap(), Some(largest));
    // A sync cursor is not an output: it moves any way.
    store
        .set_sync_cursor("gh", b"page=1".to_vec())
        .await
        .unwrap();
    assert_eq!(
        store.sync_cursor("gh").await.unwrap(),
        Some(b"page=1".to_vec())
    );
}

/// A dead or replay mark keeps an event whether its destination takes it now or not: a reload
/// that narrowed the destination's providers (or stopped forwarding test events) left the
/// event listed dead and replayable, and retention removed it (the replay then dropped it as
/// gone, after a 202).
pub async fn retention_keeps_a_marked_event_its_output_no_longer_takes(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    let store = open(dir);
    let seqs = [
        accept_old(&store, "b", "dead-then-narrowed").await,
        accept_old(&store, "b", "queued-then-narrowed").await,
        accept_old(&store, "b", "delivered").await,
    ];
    store
        .change(
            "crm",
            vec![
                Change::Cursor(seqs[2]),
                Change::Dead(seqs[0], dead(3)),
                Change::Mark(Mark::Replay, seqs[1]),
            ],
        )
        .await
        .unwrap();
    // The destination now takes provider a only.
    let outputs = Arc::new(vec![Output::destination(
        "crm".into(),
        |event: &StoredEvent| event.provider == "a",
    )]);
    let cutoffs = Cutoffs {
        events_ms: CUTOFF_MS,
        dedup_ms: 0,
    };
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    assert_eq!(swept.events, 1, "{swept:?}");
    assert_eq!(all_seqs(&store).await, vec![seqs[0].0, seqs[1].0]);
}

/// Retention removes exactly the old events every output that takes them is done with: an
/// output behind, a dead or a replay mark holds an event; young events stay whatever the
/// cursors; the counts returned match what went.
pub async fn retention_removes_only_what_every_output_is_done_with(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    let store = open(dir);
    // Old events 1..=8 (odd: provider a, even: b), then young ones.
    let mut old = Vec::new();
    for i in 1..=8u64 {
        let provider = if i % 2 == 1 { "a" } else { "b" };
        old.push(accept_old(&store, provider, &format!("old-{i}")).await);
    }
    assert_eq!(old, (1..=8).map(Seq).collect::<Vec<_>>());
    let young = [
        accept(&store, "a", "young-9", b"{}").await,
        accept(&store, "b", "young-10", b"{}").await,
    ];

    // The destination takes everything; it is past 6, but keeps 2 dead and 3 queued for replay.
    // The consumer takes provider b only, and is past 4. The "bystander" destination takes
    // nothing and is at 0.
    let outputs = Arc::new(vec![
        Output::destination("crm".into(), |_: &StoredEvent| true),
        Output::consumer(&ConsumerConfig {
            name: "pull".into(),
            providers: Some(vec![ProviderName::parse("b").unwrap()]),
        }),
        Output::destination("bystander".into(), |_: &StoredEvent| false),
    ]);
    store
        .change(
            "crm",
            vec![
                Change::Cursor(Seq(6)),
                Change::Dead(Seq(2), dead(2)),
                Change::Mark(Mark::Replay, Seq(3)),
            ],
        )
        .await
        .unwrap();
    store
        .change("pull", vec![Change::Cursor(Seq(4))])
        .await
        .unwrap();

    let cutoffs = Cutoffs {
        events_ms: CUTOFF_MS,
        dedup_ms: 0,
    };
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    // 1 (a, crm past), 4 (b, both past), 5 (a, crm past) go; 2 dead, 3 replay, 6 (pull
    // behind), 7 and 8 (crm behind) stay.
    assert_eq!(
        all_seqs(&store).await,
        vec![2, 3, 6, 7, 8, young[0].0, young[1].0],
        "after the first sweep"
    );
    assert_eq!(
        swept,
        Swept {
            events: 3,
            dedup_keys: 0,
            disk_freed: 0,
            more: false,
            held_only: false,
        }
    );
    for gone in [1, 4, 5] {
        assert_eq!(store.event(Seq(gone)).await.unwrap(), None, "seq {gone}");
    }
    assert!(store.event(Seq(2)).await.unwrap().is_some());

    // Every output past everything, the dead event replayed and settled: every old event goes,
    // the young ones stay.
    store
        .change(
            "crm",
            vec![
                Change::Cursor(Seq(1000)),
                Change::Unmark(Mark::Dead, Seq(2)),
                Change::Unmark(Mark::Replay, Seq(3)),
            ],
        )
        .await
        .unwrap();
    store
        .change("pull", vec![Change::Cursor(Seq(1000))])
        .await
        .unwrap();
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    assert_eq!(
        all_seqs(&store).await,
        vec![young[0].0, young[1].0],
        "after the second sweep"
    );
    assert_eq!(swept.events, 5);
    // Nothing more to do.
    assert_eq!(
        store.sweep(cutoffs, outputs.clone()).await.unwrap(),
        Swept::default()
    );
}

/// An old event no output takes goes; a young event stays even when every output is past it.
pub async fn retention_of_events_nobody_takes_and_young_events(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    let store = open(dir);
    // Arrival times follow seqs (a sweep may stop at the first young event).
    let old = accept_old(&store, "b", "old").await;
    let young = accept(&store, "a", "young", b"{}").await;
    let outputs = Arc::new(vec![Output::consumer(&ConsumerConfig {
        name: "pull-a".into(),
        providers: Some(vec![ProviderName::parse("a").unwrap()]),
    })]);
    store
        .change("pull-a", vec![Change::Cursor(Seq(1000))])
        .await
        .unwrap();
    let cutoffs = Cutoffs {
        events_ms: CUTOFF_MS,
        dedup_ms: 0,
    };
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    assert_eq!(all_seqs(&store).await, vec![young.0]);
    assert_eq!(store.event(old).await.unwrap(), None);
    assert_eq!(swept.events, 1);
}

/// Dedup keys received before the dedup cutoff go (the id is then a new event, under a new
/// seq); younger ones stay.
pub async fn dedup_keys_expire_by_arrival(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(accept_old(&store, "p", &format!("old-{i}")).await);
    }
    let young = accept(&store, "p", "young", b"{}").await;
    // No outputs and an events cutoff of 0: events stay, only dedup keys are judged.
    let outputs = Arc::new(Vec::new());
    let cutoffs = Cutoffs {
        events_ms: 0,
        dedup_ms: CUTOFF_MS,
    };
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    assert_eq!(
        swept,
        Swept {
            events: 0,
            dedup_keys: 5,
            disk_freed: 0,
            more: false,
            held_only: false,
        }
    );
    assert_eq!(all_seqs(&store).await.len(), 6, "events are not dedup keys");
    assert_eq!(
        commit(&store, event("p", "young", b"{}")).await,
        Committed::Duplicate(young)
    );
    let again = accept(&store, "p", "old-0", b"{}").await;
    assert!(
        again > young,
        "a forgotten id got seq {again}, not a new one"
    );
    assert!(!old.contains(&again));
    // The new copy has a dedup key of its own.
    assert_eq!(
        commit(&store, event("p", "old-0", b"{}")).await,
        Committed::Duplicate(again)
    );
}

/// Closed, then opened again on the same directory: events, dedup keys, cursors, pause flags,
/// marks and sync cursors are all there, commits after `close` fail, and new seqs continue
/// after the old ones.
pub async fn reopen_keeps_everything(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    let mut large = vec![0u8; 300 * 1024];
    rand::thread_rng().fill_bytes(&mut large);
    let mut sent = Vec::new();
    for i in 0..20 {
        let body = if i == 7 {
            large.clone()
        } else {
            format!("body {i}").into_bytes()
        };
        let seq = accept(&store, "p", &format!("id-{i}"), &body).await;
        sent.push((seq, body));
    }
    let last = sent.last().unwrap().0;
    store
        .change(
            "crm",
            vec![
                Change::Cursor(Seq(4)),
                Change::Paused(true),
                Change::Dead(Seq(2), dead(2)),
                Change::Mark(Mark::Replay, Seq(3)),
                Change::Mark(Mark::Settled, Seq(9)),
            ],
        )
        .await
        .unwrap();
    store
        .set_sync_cursor("gh", b"cursor-1".to_vec())
        .await
        .unwrap();
    store.close().await;
    assert!(!store.is_open());
    match store.commit(event("p", "late", b"{}"), DEADLINE).await {
        Err(StoreError::Closed) => {}
        other => panic!("a commit after close(): {other:?}"),
    }
    drop(store);

    let store = open(dir);
    assert!(store.is_open());
    assert_eq!(last_seq(&store), last, "last_seq after reopening");
    let events = store.events_after(Seq(0), 1000, None).await.unwrap();
    assert_eq!(events.len(), sent.len());
    for (event, (seq, body)) in events.iter().zip(&sent) {
        assert_eq!(event.seq, seq.0);
        assert!(event.body == *body, "seq {seq} changed across reopening");
    }
    assert_eq!(store.event(Seq(8)).await.unwrap().unwrap().body, large);
    assert_eq!(
        commit(&store, event("p", "id-3", b"again")).await,
        Committed::Duplicate(sent[3].0)
    );
    assert_eq!(
        store.output("crm").await.unwrap(),
        OutputState {
            cursor: Seq(4),
            paused: true
        }
    );
    assert_eq!(
        store.marks("crm", Seq(2)).await.unwrap().dead,
        Some(dead(2))
    );
    assert!(store.marks("crm", Seq(3)).await.unwrap().replay);
    assert!(store.marks("crm", Seq(9)).await.unwrap().settled);
    assert_eq!(store.count_marked("crm", Mark::Dead).await.unwrap(), 1);
    assert_eq!(
        store.sync_cursor("gh").await.unwrap(),
        Some(b"cursor-1".to_vec())
    );
    let next = accept(&store, "p", "after-reopen", b"{}").await;
    assert!(
        next > last,
        "seq {next} reused after reopening (last was {last})"
    );

    // Reopened with nothing committed in between, seqs still move on.
    let store = reopen(store, dir, &open).await;
    let after = accept(&store, "p", "after-second-reopen", b"{}").await;
    assert!(after > next, "seq {after} after {next}");
    store.close().await;
}

/// Seqs are never reused, even when retention removed the newest events before a reopen.
pub async fn seqs_never_reused_after_sweeping_everything(
    open: impl Fn(&Path) -> Store,
    dir: &Path,
) {
    let store = open(dir);
    let mut last = Seq(0);
    for i in 0..10 {
        last = accept_old(&store, "p", &format!("old-{i}")).await;
    }
    let outputs = Arc::new(Vec::new());
    let cutoffs = Cutoffs {
        events_ms: CUTOFF_MS,
        dedup_ms: CUTOFF_MS,
    };
    let swept = sweep_all(&store, cutoffs, &outputs).await;
    assert_eq!(
        swept,
        Swept {
            events: 10,
            dedup_keys: 10,
            disk_freed: 0,
            more: false,
            held_only: false,
        }
    );
    assert!(all_seqs(&store).await.is_empty());
    let store = reopen(store, dir, &open).await;
    let next = accept(&store, "p", "old-0", b"{}").await;
    assert!(next > last, "seq {next} reused (the last was {last})");
    store.close().await;
}

/// `ping` answers while the store is open, between commits too, and changes nothing; after
/// `close` it fails.
pub async fn ping_answers_while_open(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    store.ping(DEADLINE).await.unwrap();
    let seq = accept(&store, "p", "id", b"{}").await;
    store.ping(DEADLINE).await.unwrap();
    assert_eq!(last_seq(&store), seq, "a ping moved last_seq");
    assert_eq!(all_seqs(&store).await, vec![seq.0]);
    store.close().await;
    let closed = store.ping(DEADLINE).await;
    assert!(matches!(closed, Err(StoreError::Closed)), "{closed:?}");
}

// ---- the backends ----

/// One test per check, against the store `$open` opens.
/// Leases: a holder keeps its lease while it renews it; a store other gateways share (a lease
/// time) gives a lease to one holder at a time, and to another once given up; a store one
/// gateway owns (no lease time) gives every lease to whoever asks.
pub async fn leases_have_one_holder_at_a_time(open: impl Fn(&Path) -> Store, dir: &Path) {
    let store = open(dir);
    assert!(store.hold_lease("destination/crm", "a").await.unwrap());
    assert!(store.hold_lease("destination/crm", "a").await.unwrap());
    let shared = store.lease_time().is_some();
    assert_eq!(
        store.hold_lease("destination/crm", "b").await.unwrap(),
        !shared
    );
    assert!(store.hold_lease("poller/gh", "b").await.unwrap());
    // Giving up a lease one does not hold changes nothing.
    store.release_lease("destination/crm", "b").await.unwrap();
    assert!(store.hold_lease("destination/crm", "a").await.unwrap());
    store.release_lease("destination/crm", "a").await.unwrap();
    assert!(store.hold_lease("destination/crm", "b").await.unwrap());
    assert_eq!(
        store.hold_lease("destination/crm", "a").await.unwrap(),
        !shared
    );
}

macro_rules! conformance {
    ($backend:ident, $open:expr) => {
        mod $backend {
            use super::*;

            macro_rules! check {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let dir = tempfile::tempdir().unwrap();
                        let store_dir = dir.path().join("store");
                        super::$name($open, &store_dir).await;
                        settle(&store_dir).await;
                    }
                };
            }

            check!(seqs_start_at_one_and_increase);
            check!(dedup_by_provider_and_id);
            check!(concurrent_commits_of_one_id);
            check!(events_after_orders_limits_and_filters);
            check!(a_provider_filter_reads_past_many_other_events);
            check!(event_by_seq);
            check!(large_bodies_round_trip);
            check!(a_read_stops_once_its_bodies_reach_the_bound);
            check!(output_cursor_and_pause);
            check!(marks_set_list_count_and_clear);
            check!(many_dead_records);
            check!(concurrent_changes_of_one_output_all_apply);
            check!(sync_cursors_round_trip);
            check!(retention_removes_only_what_every_output_is_done_with);
            check!(retention_of_events_nobody_takes_and_young_events);
            check!(retention_keeps_a_marked_event_its_output_no_longer_takes);
            check!(dedup_keys_expire_by_arrival);
            check!(reopen_keeps_everything);
            check!(seqs_never_reused_after_sweeping_everything);
            check!(ping_answers_while_open);
            check!(leases_have_one_holder_at_a_time);
        }
    };
}

fn open_sled(dir: &Path) -> Store {
    // A run sealed every 5 keys: every check also crosses runs.
    let config = StoreConfig {
        dedup_run_keys: 5,
        ..StoreConfig::default()
    };
    Store::open(dir, &config, Arc::new(Metrics::new()))
        .unwrap_or_else(|err| panic!("open the sled store in {}: {err}", dir.display()))
}

conformance!(sled, open_sled);

/// sled reopened by the committer after every batch (`[store] checkpoint_mb`'s checkpoints,
/// as often as they can come): readers and writers must not tell.
fn open_sled_checkpointing(dir: &Path) -> Store {
    let config = StoreConfig {
        dedup_run_keys: 5,
        checkpoint_bytes: 1,
        ..StoreConfig::default()
    };
    Store::open(dir, &config, Arc::new(Metrics::new()))
        .unwrap_or_else(|err| panic!("open the sled store in {}: {err}", dir.display()))
}

conformance!(sled_checkpointing, open_sled_checkpointing);

/// sled compacted (copied afresh, and switched to the copy) after every retention pass, and
/// checkpointed after every batch meanwhile: readers and writers must not tell either.
fn open_sled_compacting(dir: &Path) -> Store {
    let config = StoreConfig {
        dedup_run_keys: 5,
        checkpoint_bytes: 1,
        compact_ratio: 1.0,
        compact_min_bytes: 0,
        ..StoreConfig::default()
    };
    Store::open(dir, &config, Arc::new(Metrics::new()))
        .unwrap_or_else(|err| panic!("open the sled store in {}: {err}", dir.display()))
}

conformance!(sled_compacting, open_sled_compacting);

/// A JetStream store on a nats-server of its own (tests/common/nats.rs) keeping its streams in
/// `dir`. The server lives as long as the store: reopening the store restarts the server on the
/// same directory.
fn open_jetstream(dir: &Path) -> Store {
    let server = NatsServer::start(dir);
    let config = StoreConfig {
        backend: StoreBackend::JetStream(JetStreamConfig {
            servers: vec![server.url()],
            stream: "HOOKGATE".into(),
            replicas: 1,
            auth: NatsAuth::None,
            tls: None,
            lease_time: Duration::from_secs(10),
        }),
        ..StoreConfig::default()
    };
    let store = tokio::task::block_in_place(|| {
        Store::open(dir, &config, Arc::new(Metrics::new()))
            .unwrap_or_else(|err| panic!("open the JetStream store on {}: {err}", server.url()))
    });
    Store::from_backend(WithServer {
        store,
        _server: server,
    })
}

conformance!(jetstream, open_jetstream);

/// A store and the nats-server it runs on, stopped after the store is dropped.
struct WithServer {
    store: Store,
    _server: NatsServer,
}

#[async_trait]
impl Backend for WithServer {
    async fn commit(&self, event: NewEvent, deadline: Duration) -> Result<Committed, StoreError> {
        self.store.commit(event, deadline).await
    }
    fn last_seq(&self) -> tokio::sync::watch::Receiver<Seq> {
        self.store.last_seq()
    }
    async fn events_after(
        &self,
        after: Seq,
        limit: usize,
        provider: Option<String>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.store.events_after(after, limit, provider).await
    }
    async fn event(&self, seq: Seq) -> Result<Option<StoredEvent>, StoreError> {
        self.store.event(seq).await
    }
    async fn output(&self, output: &str) -> Result<OutputState, StoreError> {
        self.store.output(output).await
    }
    async fn change(&self, output: &str, changes: Vec<Change>) -> Result<(), StoreError> {
        self.store.change(output, changes).await
    }
    async fn marked(
        &self,
        output: &str,
        mark: Mark,
        range: std::ops::RangeInclusive<Seq>,
        limit: usize,
    ) -> Result<Vec<(Seq, Option<DeadRecord>)>, StoreError> {
        self.store.marked(output, mark, range, limit).await
    }
    async fn count_marked(&self, output: &str, mark: Mark) -> Result<u64, StoreError> {
        self.store.count_marked(output, mark).await
    }
    async fn marks(&self, output: &str, seq: Seq) -> Result<Marks, StoreError> {
        self.store.marks(output, seq).await
    }
    async fn sync_cursor(&self, provider: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.sync_cursor(provider).await
    }
    fn largest_sync_cursor(&self) -> usize {
        self.store.largest_sync_cursor()
    }

    async fn last_seq_now(&self) -> Result<Seq, StoreError> {
        self.store.last_seq_now().await
    }

    async fn ready(&self, within: Duration) -> bool {
        self.store.ready(within).await
    }

    async fn set_sync_cursor(&self, provider: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.store.set_sync_cursor(provider, value).await
    }
    async fn sweep(
        &self,
        cutoffs: Cutoffs,
        outputs: Arc<Vec<Output>>,
    ) -> Result<Swept, StoreError> {
        self.store.sweep(cutoffs, outputs).await
    }
    async fn hold_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.store.hold_lease(name, holder).await
    }

    async fn renew_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        self.store.renew_lease(name, holder).await
    }
    async fn release_lease(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        self.store.release_lease(name, holder).await
    }
    fn lease_time(&self) -> Option<Duration> {
        self.store.lease_time()
    }
    async fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.store.size_on_disk().await
    }
    fn is_open(&self) -> bool {
        self.store.is_open()
    }
    async fn ping(&self, within: Duration) -> Result<(), StoreError> {
        self.store.ping(within).await
    }
    async fn failed(&self) {
        self.store.failed().await;
    }
    async fn close(&self) -> bool {
        self.store.close().await
    }
}
