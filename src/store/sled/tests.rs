//! The committer's own work between requests, on a real store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::committer::Message;
use super::{pack, Backend, SledStore, TreeId};
use crate::config::StoreConfig;
use crate::event::{EventId, ProviderName, Seq};
use crate::metrics::Metrics;
use crate::store::{now_ms, Cutoffs, NewEvent};

fn tree_len(store: &SledStore, id: TreeId) -> usize {
    let handles = store.handles.read().unwrap();
    handles.as_ref().unwrap().0.get(id).len()
}

/// The claims in the log of recent claims (`claims.rs`).
fn log_claims(store: &SledStore, _: TreeId) -> usize {
    let handles = store.handles.read().unwrap();
    let log = handles.as_ref().unwrap().0.get(TreeId::Dedup);
    log.iter()
        .values()
        .map(|value| super::claims::entries(&value.unwrap()).count())
        .sum()
}

/// A store with the default settings.
fn open_default(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir, &StoreConfig::default(), Arc::new(Metrics::new())).unwrap()
}

/// A store that seals a run every 1,000 new claims, and never compacts.
fn open_sealing_often(dir: &std::path::Path) -> Arc<SledStore> {
    let config = StoreConfig {
        dedup_run_keys: 1_000,
        compact_ratio: 0.0,
        ..StoreConfig::default()
    };
    Arc::new(SledStore::open(dir, &config, Arc::new(Metrics::new())).unwrap())
}

/// Commits events `event-000000` to `event-{count - 1}`, received at `at`, from 32 tasks at
/// once.
async fn commit_events(store: &Arc<SledStore>, count: usize, at: u64) {
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in (task..count).step_by(32) {
                    let event = NewEvent::poll(
                        ProviderName::parse("p").unwrap(),
                        EventId::new(format!("event-{n:06}")).unwrap(),
                        None,
                        Bytes::from_static(b"{}"),
                    )
                    .received_at(at);
                    store.commit(event, Duration::from_secs(30)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits until `len` stays the same for 300 ms; returns it.
async fn settled(store: &SledStore, id: TreeId, len: fn(&SledStore, TreeId) -> usize) -> usize {
    let mut last = len(store, id);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = len(store, id);
        if now == last {
            return now;
        }
        last = now;
    }
}

/// The count of stored bytes follows the log of recent claims as runs are sealed from it and
/// its values trimmed: after several runs, it is what the trees hold, but for the few `meta`
/// values the committer writes uncounted (the next seq, the count itself, the layout, the next
/// run id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_count_of_stored_bytes_follows_the_sealed_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sealing_often(dir.path());
    commit_events(&store, 10_000, now_ms()).await;
    assert!(settled(&store, TreeId::Dedup, log_claims).await < 1_000);
    // The runs' changes since the last batch are counted with the next.
    let last = NewEvent::poll(
        ProviderName::parse("p").unwrap(),
        EventId::new("event-last").unwrap(),
        None,
        Bytes::from_static(b"{}"),
    );
    store.commit(last, Duration::from_secs(30)).await.unwrap();
    let counted = store.live.get().expect("a counted store");
    let held: u64 = {
        let handles = store.handles.read().unwrap();
        let trees = &handles.as_ref().unwrap().0;
        let all = trees.all.iter().flat_map(|tree| tree.iter());
        all.map(|item| item.map(|(key, value)| (key.len() + value.len()) as u64))
            .sum::<Result<u64, _>>()
            .unwrap()
    };
    assert!(
        counted.abs_diff(held) < 100,
        "counted {counted} bytes, the trees hold {held}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_runs_go_while_no_request_comes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_sealing_often(dir.path());
    commit_events(&store, 20_000, 1_000).await;
    // The sealing of the last claims ends while no request comes, too.
    assert!(settled(&store, TreeId::Dedup, log_claims).await < 1_000);
    let values = tree_len(&store, TreeId::Runs);
    assert!(
        values > 2 * 64,
        "{values} run values: too few for several steps"
    );

    let expired = store.expire_dedup(2_000).await.unwrap();
    assert!(expired >= 19_000, "{expired} keys expired");
    // No request follows: the committer removes the runs' values on its own.
    let started = Instant::now();
    while tree_len(&store, TreeId::Runs) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of {values} run values left",
            tree_len(&store, TreeId::Runs)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// sled refuses to open a store with another segment size than the one it was made with: a store
/// made with sled's default (512 KiB, every store before `SEGMENT_BYTES`) keeps it, and a new
/// one gets `SEGMENT_BYTES`; both open, take events and open again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_keeps_the_segment_size_it_was_made_with() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    drop(::sled::Config::new().path(old.path()).open().unwrap());
    assert_ne!(super::open::SEGMENT_BYTES, 512 * 1024);
    for (dir, expected) in [
        (old.path(), 512 * 1024),
        (new.path(), super::open::SEGMENT_BYTES),
    ] {
        for round in 0..2 {
            let store =
                SledStore::open(dir, &StoreConfig::default(), Arc::new(Metrics::new())).unwrap();
            let event = NewEvent::poll(
                ProviderName::parse("p").unwrap(),
                EventId::new(format!("event-{round}")).unwrap(),
                None,
                Bytes::from_static(b"{}"),
            );
            store.commit(event, Duration::from_secs(30)).await.unwrap();
            store.close().await;
            let conf = std::fs::read(dir.join("conf")).unwrap();
            assert_eq!(super::open::recorded_segment_bytes(&conf), Some(expected));
            assert_eq!(super::segment_bytes(dir), expected);
        }
    }
    assert_eq!(
        super::segment_bytes(&new.path().join("nothing")),
        super::open::SEGMENT_BYTES
    );
}

/// Packs grow to the bound of the store's segments (`pack::max_value`): 24 KiB at hookgate's 2 MiB,
/// 6 KiB in a store made with sled's default 512 KiB, so that no node of either reaches sled's
/// blob threshold; every event reads back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_grow_to_the_bound_of_the_store_s_segments() {
    let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    drop(::sled::Config::new().path(old.path()).open().unwrap());
    let bodies = json_bodies(100, &"word ".repeat(200));
    for (dir, bound) in [
        (old.path(), super::pack::MAX_VALUE),
        (new.path(), super::pack::MAX_PACK),
    ] {
        let store =
            SledStore::open(dir, &StoreConfig::default(), Arc::new(Metrics::new())).unwrap();
        commit_bodies(&store, &bodies).await;
        let events = store.events_after(super::Seq(0), 200, None).await.unwrap();
        let read: Vec<Bytes> = events.into_iter().map(|e| Bytes::from(e.body)).collect();
        assert_eq!(read, bodies);
        store.close().await;
        drop(store);
        let db = super::open_db(dir, &StoreConfig::default()).unwrap();
        let sizes: Vec<usize> = db
            .open_tree("events")
            .unwrap()
            .iter()
            .values()
            .map(|value| super::pack::unseal(&value.unwrap()).unwrap().len())
            .collect();
        let largest = sizes.iter().copied().max().unwrap();
        assert!(largest <= bound, "{sizes:?}");
        assert!(
            largest > bound - 1100,
            "packs fill up to the bound: {sizes:?}"
        );
        assert_eq!(
            std::fs::read_dir(dir.join("blobs")).unwrap().count(),
            0,
            "no blob files"
        );
    }
}

/// A full pack is stored sealed (compressed) and reads back as it was written; a store of layout
/// 4 to 7 opens and is marked 8, so that an older hookgate
/// refuses it, and a store of a layout this hookgate does not know is refused with a message
/// that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_packs_are_sealed_and_the_layout_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let bodies = json_bodies(150, &"hello ".repeat(150));
    let meta_layout = |set: Option<u8>| {
        let db = super::open_db(dir.path(), &config).unwrap();
        let meta = db.open_tree("meta").unwrap();
        if let Some(layout) = set {
            meta.insert(super::LAYOUT_KEY, &[layout]).unwrap();
            db.flush().unwrap();
        }
        let layout = meta.get(super::LAYOUT_KEY).unwrap().unwrap().to_vec();
        let events = db.open_tree("events").unwrap();
        let kinds: Vec<u8> = events.iter().values().map(|v| v.unwrap()[0]).collect();
        (layout, kinds)
    };
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    commit_bodies(&store, &bodies).await;
    store.close().await;
    drop(store);
    let (layout, kinds) = meta_layout(Some(4));
    assert_eq!(layout, [4]);
    // Every pack in `events` is sealed (kind 5); the newest, raw (kind 3), is in `meta`.
    assert!(kinds.len() > 4, "{kinds:?}");
    assert!(kinds.iter().all(|&kind| kind == 5), "{kinds:?}");
    {
        let db = super::open_db(dir.path(), &config).unwrap();
        let open = db.open_tree("meta").unwrap().get(pack::OPEN_KEY).unwrap();
        assert_eq!(open.unwrap()[8], 3, "the open pack");
    }

    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    let events = store.events_after(super::Seq(0), 200, None).await.unwrap();
    let read: Vec<Bytes> = events.into_iter().map(|e| Bytes::from(e.body)).collect();
    assert_eq!(read, bodies);
    store.close().await;
    drop(store);
    assert_eq!(meta_layout(None).0, [8], "marked at its open");
    for older in [5, 6, 7] {
        assert_eq!(meta_layout(Some(older)).0, [older]);
        let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
        store.close().await;
        drop(store);
        assert_eq!(
            meta_layout(None).0,
            [8],
            "layout {older} marked at its open"
        );
    }
    assert_eq!(meta_layout(Some(9)).0, [9]);

    let refused = SledStore::open(dir.path(), &config, Arc::new(Metrics::new()))
        .err()
        .expect("a store of layout 9 is refused");
    assert!(refused.to_string().contains("newer hookgate"), "{refused}");
    assert_eq!(meta_layout(Some(8)).1.len(), kinds.len());
}

/// Every event's seq and body, from the first.
async fn read_all(store: &SledStore) -> (Vec<u64>, Vec<Bytes>) {
    let events = store.events_after(super::Seq(0), 100, None).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let read: Vec<Bytes> = events.into_iter().map(|e| Bytes::from(e.body)).collect();
    (seqs, read)
}

/// A batch of events is written without a transaction, its next seq last: a crash may keep any
/// prefix of its writes. Each such store opens holding exactly the batches before it (every
/// value past the next seq removed, a pack holding seqs on both sides cut back), and the torn
/// batch's events are taken again as new ones, under the same seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_cuts_what_a_crash_kept_of_a_batch_past_its_next_seq() {
    let config = StoreConfig::default();
    // ~6 bodies a pack: the first 8 leave an open pack of 2, which the next 10 fill and seal.
    let bodies = json_bodies(18, &"hello ".repeat(150));
    let mut large = bodies.clone();
    large[16] = Bytes::from(format!(r#"{{"text":"{}"}}"#, "x".repeat(20_000)));
    // (what the crash kept of the torn batch's writes, the events committed before it)
    let cases: [(&str, usize, &[Bytes]); 5] = [
        ("all but the next seq", 8, &bodies),
        ("all but the open pack and the next seq", 8, &bodies),
        ("an open pack appended to, not sealed", 16, &bodies),
        ("a large record and the pack after it", 15, &large),
        (
            "the first batch of a store, all but the next seq",
            0,
            &bodies,
        ),
    ];
    for (case, (what, before, bodies)) in cases.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let meta_value = |key: &[u8]| {
            let db = super::open_db(dir.path(), &config).unwrap();
            let value = db.open_tree("meta").unwrap().get(key).unwrap();
            value.map(|v| v.to_vec())
        };
        let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
        commit_bodies(&store, &bodies[..before]).await;
        store.close().await;
        drop(store);
        let (next_before, open_before) =
            (meta_value(super::NEXT_SEQ_KEY), meta_value(pack::OPEN_KEY));
        // Nor was the torn batch acknowledged (`watermark.rs`).
        let acked = dir.path().join("acked");
        let acked_before = std::fs::read(&acked).ok();
        // The torn batch, committed whole; then what the crash lost of it is put back.
        let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
        let torn = (before..bodies.len()).map(|n| event_with(n, bodies[n].clone()));
        let committed = futures_util::future::join_all(
            torn.map(|event| store.commit(event, Duration::from_secs(30))),
        )
        .await;
        assert!(committed.iter().all(Result::is_ok), "{what}");
        store.close().await;
        drop(store);
        {
            let db = super::open_db(dir.path(), &config).unwrap();
            let meta = db.open_tree("meta").unwrap();
            match &next_before {
                Some(next) => meta.insert(super::NEXT_SEQ_KEY, next.as_slice()).unwrap(),
                None => meta.remove(super::NEXT_SEQ_KEY).unwrap(),
            };
            if case == 1 {
                meta.insert(pack::OPEN_KEY, open_before.clone().unwrap())
                    .unwrap();
            }
            db.flush().unwrap();
        }
        match &acked_before {
            Some(bytes) => std::fs::write(&acked, bytes).unwrap(),
            None => std::fs::remove_file(&acked).unwrap(),
        }
        let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
        let (seqs, read) = read_all(&store).await;
        assert_eq!(seqs, (1..=before as u64).collect::<Vec<_>>(), "{what}");
        assert_eq!(read, bodies[..before], "{what}");
        {
            let handles = store.handles.read().unwrap();
            let trees = &handles.as_ref().unwrap().0;
            let first_past = super::Seq(before as u64 + 1).to_key();
            for id in [TreeId::Events, TreeId::Dedup] {
                assert_eq!(
                    trees.get(id).range(first_past..).count(),
                    0,
                    "{what}: {id:?}"
                );
            }
        }
        // Its events are new again, under the same seqs (sent again with other bodies, so that
        // nothing of the torn batch can pass for them).
        let mut expected = bodies[..before].to_vec();
        for n in before..bodies.len() {
            let body = Bytes::from(format!(r#"{{"id":"event-{n}","again":true}}"#));
            let committed = store
                .commit(event_with(n, body.clone()), Duration::from_secs(30))
                .await
                .unwrap();
            let seq = super::Seq(n as u64 + 1);
            assert_eq!(committed, crate::store::Committed::Accepted(seq), "{what}");
            expected.push(body);
        }
        let all_seqs: Vec<u64> = (1..=bodies.len() as u64).collect();
        assert_eq!(
            read_all(&store).await,
            (all_seqs.clone(), expected.clone()),
            "{what}"
        );
        store.close().await;
        drop(store);
        let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
        assert_eq!(
            read_all(&store).await,
            (all_seqs, expected),
            "{what}, reopened"
        );
        store.close().await;
    }
}

/// A store of layout 6 kept its open pack raw in `events`: it is read where it is, and the
/// committer starts a new open pack in `meta` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_pack_left_in_events_by_layout_6_is_read_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let bodies = json_bodies(150, &"hello ".repeat(150));
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    commit_bodies(&store, &bodies[..100]).await;
    store.close().await;
    drop(store);
    {
        // What layout 6 left: the open pack raw under its key in `events`.
        let db = super::open_db(dir.path(), &config).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let open = meta.remove(pack::OPEN_KEY).unwrap().unwrap();
        let (first, bytes) = pack::parse_open(&open).unwrap();
        db.open_tree("events")
            .unwrap()
            .insert(pack::key(first), bytes)
            .unwrap();
        meta.insert(super::LAYOUT_KEY, &[6]).unwrap();
        db.flush().unwrap();
    }
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    for (n, body) in bodies.iter().enumerate().skip(100) {
        store
            .commit(event_with(n, body.clone()), Duration::from_secs(30))
            .await
            .unwrap();
    }
    let mut store = store;
    for reading in ["before a reopen", "after one"] {
        let events = store.events_after(super::Seq(0), 200, None).await.unwrap();
        let read: Vec<Bytes> = events.into_iter().map(|e| Bytes::from(e.body)).collect();
        assert_eq!(read, bodies, "{reading}");
        let from_middle = store.events_after(super::Seq(95), 10, None).await.unwrap();
        let seqs: Vec<u64> = from_middle.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (96..=105).collect::<Vec<_>>(), "{reading}");
        store.close().await;
        drop(store);
        store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    }
    store.close().await;
}

/// At open, the journal's frames that sled lacks are applied under their seqs (with their dedup
/// claims), frames it already holds are skipped, and the journal is emptied; a journal that
/// does not follow sled's seqs is refused, naming the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_applies_the_journal_sled_lacks() {
    use super::committer::encode;
    use super::journal::{Frame, Journal};
    use crate::store::Committed;

    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let open = || SledStore::open(dir.path(), &config, Arc::new(Metrics::new()));
    let event = |id: &str| {
        NewEvent::poll(
            ProviderName::parse("p").unwrap(),
            EventId::new(id.to_string()).unwrap(),
            None,
            Bytes::from(format!(r#"{{"id":"{id}"}}"#)),
        )
    };
    let frame = |first: u64, ids: &[&str]| Frame {
        first: super::Seq(first),
        events: ids.iter().map(|id| encode(&event(id))).collect(),
    };
    let write_journal = |frames: &[Frame]| {
        let (mut journal, _) = Journal::open(dir.path()).unwrap();
        journal.clear().unwrap();
        for frame in frames {
            journal.append(frame).unwrap();
        }
    };
    let deadline = Duration::from_secs(30);

    let store = open().unwrap();
    for id in ["a", "b"] {
        store.commit(event(id), deadline).await.unwrap();
    }
    store.close().await;
    drop(store);
    // Seqs 1-2 are in sled already (a crash after applying, before emptying the journal).
    write_journal(&[
        frame(1, &["a", "b"]),
        frame(3, &["c"]),
        frame(4, &["d", "e"]),
    ]);
    let store = open().unwrap();
    assert_eq!(*store.last_seq().borrow(), super::Seq(5));
    let events = store.events_after(super::Seq(0), 10, None).await.unwrap();
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c", "d", "e"]);
    assert_eq!(
        store.commit(event("d"), deadline).await.unwrap(),
        Committed::Duplicate(super::Seq(4))
    );
    store.close().await;
    drop(store);
    assert_eq!(
        std::fs::metadata(dir.path().join("journal")).unwrap().len(),
        super::journal::FILE_HEADER as u64
    );

    // A frame past a gap: acknowledged events are missing between sled and the journal.
    write_journal(&[frame(8, &["h"])]);
    let refused = open().err().expect("a journal with a gap is refused");
    let text = refused.to_string();
    assert!(
        text.contains("journal") && text.contains("from seq 8"),
        "{text}"
    );
}

/// Under a load that never lets the committer's queue empty, a checkpoint still ends: after sled
/// is back, each step of applying the journal journals a bounded number of new events, so the
/// committer returns to sled and the next checkpoints come every `checkpoint_mb` (the bench's
/// pre-load, 4,096 commits in flight, once journaled 1.7 M events in one checkpoint's apply, with
/// the readers waiting the whole time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_go_on_under_a_load_that_never_lets_the_queue_empty() {
    checkpoints_go_on_with_commits_in_flight(4_096).await;
}

/// The same with more commits in flight than the committer's queue holds: senders then wait for
/// room, and a checkpoint must not need a free place in the queue to begin (it once did, and
/// never began under such a load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_go_on_with_more_commits_in_flight_than_the_queue_holds() {
    checkpoints_go_on_with_commits_in_flight(super::QUEUE_CAPACITY + 2_048).await;
}

async fn checkpoints_go_on_with_commits_in_flight(in_flight: usize) {
    const EVENTS: usize = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        checkpoint_bytes: 4 * 1024 * 1024,
        compact_ratio: 0.0,
        ..StoreConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SledStore::open(dir.path(), &config, metrics.clone()).unwrap());
    let body = Bytes::from(vec![b'x'; 1024]);
    let tasks: Vec<_> = (0..in_flight)
        .map(|task| {
            let (store, body) = (store.clone(), body.clone());
            tokio::spawn(async move {
                for n in (task..EVENTS).step_by(in_flight) {
                    let event = NewEvent::poll(
                        ProviderName::parse("p").unwrap(),
                        EventId::new(format!("event-{n:06}")).unwrap(),
                        None,
                        body.clone(),
                    );
                    store.commit(event, Duration::from_secs(60)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // ~300 MB committed. A checkpoint comes every 4 MiB, and journals up to ~51,000 events while
    // its journal is applied (`JOURNALING_STEPS` steps of `APPLY_STEP`), which count towards
    // the next one: at least ~5 checkpoints.
    let checkpoints = metrics.store_checkpoints.get();
    assert!(checkpoints >= 3, "{checkpoints} checkpoints");
}

/// Readers that read `[store] checkpoint_read_mb` of stored events have the committer reopen
/// sled (which empties its cache, see `reader.rs`), once per bound read, and nothing read
/// changes; with the bound at 0, reads never do, nor do reads of only the newest events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_bound_of_stored_events_checkpoints_sled() {
    for (bound, recent, expect_checkpoints) in [
        (256 * 1024, 16, true),
        (0, 16, false),
        (256 * 1024, 4096, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            checkpoint_bytes: 0,
            checkpoint_read_bytes: bound,
            recent_read_seqs: recent,
            ..StoreConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let store = SledStore::open(dir.path(), &config, metrics.clone()).unwrap();
        let bodies: Vec<Bytes> = (0..200).map(noise).collect();
        commit_bodies(&store, &bodies).await;
        assert_eq!(metrics.store_checkpoints.get(), 0, "none from commits");
        // ~200 KiB stored: each pass reads most of the bound.
        for pass in 0..6 {
            let events = store.events_after(super::Seq(0), 500, None).await.unwrap();
            let read: Vec<Bytes> = events.into_iter().map(|e| Bytes::from(e.body)).collect();
            assert_eq!(read, bodies, "pass {pass}");
        }
        // The committer takes the ask between two requests: one more commit lets it be seen.
        store
            .commit(event(999_999), Duration::from_secs(30))
            .await
            .unwrap();
        let checkpoints = metrics.store_checkpoints.get();
        if expect_checkpoints {
            assert!((1..=6).contains(&checkpoints), "{checkpoints} checkpoints");
        } else {
            assert_eq!(checkpoints, 0);
        }
        store.close().await;
    }
}

/// A retention sweep's removals count towards `checkpoint_mb` by the bytes they remove: sled
/// rewrites the nodes around them, and a start after a crash replays that (counted as 8 bytes a
/// pack, 3.5 GB of packs removed from the bench's 10 M-event store went without a checkpoint,
/// and took 3.6 s to replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_sweep_removes_counts_towards_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        checkpoint_bytes: 4 * 1024 * 1024,
        checkpoint_read_bytes: 0,
        compact_ratio: 0.0,
        ..StoreConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let store = SledStore::open(dir.path(), &config, metrics.clone()).unwrap();
    let bodies: Vec<Bytes> = (0..3_000).map(noise).collect();
    commit_bodies(&store, &bodies).await;
    assert_eq!(
        metrics.store_checkpoints.get(),
        0,
        "3 MB committed, under the bound"
    );
    let cutoffs = Cutoffs {
        events_ms: now_ms() + 1_000,
        dedup_ms: 0,
    };
    let mut swept = 0;
    loop {
        let sweep = store.sweep(cutoffs, Arc::new(Vec::new())).await.unwrap();
        swept += sweep.events;
        if sweep.events == 0 {
            break;
        }
    }
    assert_eq!(swept, 3_000);
    assert_eq!(
        metrics.store_checkpoints.get(),
        1,
        "3 MB of packs removed after 3 MB committed: over the 4 MB bound once"
    );
    store.close().await;
}

/// What earlier copies of the store left (the old log a crash interrupted the removal of, a
/// copy a crash interrupted) goes after an open, in a thread of its own, not before the open
/// ends (removing ~12 GB at once held a start 1.5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_removes_what_old_copies_left_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let config = StoreConfig::default();
    let store = SledStore::open(data, &config, Arc::new(Metrics::new())).unwrap();
    let seq = match store
        .commit(event(1), Duration::from_secs(30))
        .await
        .unwrap()
    {
        crate::store::Committed::Accepted(seq) => seq,
        other => panic!("{other:?}"),
    };
    store.close().await;
    drop(store);
    // The store moves to sled.1, as a compaction leaves it; the old log and an interrupted
    // copy stay beside it.
    std::fs::create_dir(data.join("sled.1")).unwrap();
    for entry in std::fs::read_dir(data).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name == "db" || name == "conf" || name.starts_with("snap.") || name == "blobs" {
            std::fs::rename(data.join(&name), data.join("sled.1").join(&name)).unwrap();
        }
    }
    std::fs::write(data.join("current"), "sled.1\n").unwrap();
    std::fs::write(data.join("db"), vec![0u8; 20 << 20]).unwrap();
    std::fs::create_dir(data.join("sled.2")).unwrap();
    std::fs::write(data.join("sled.2").join("db"), vec![0u8; 1 << 20]).unwrap();

    let store = SledStore::open(data, &config, Arc::new(Metrics::new())).unwrap();
    assert!(
        store.event(seq).await.unwrap().is_some(),
        "the live copy is sled.1"
    );
    let removing = Instant::now();
    while data.join("db").exists() || data.join("db.old").exists() || data.join("sled.2").exists() {
        assert!(
            removing.elapsed() < Duration::from_secs(30),
            "the old copies are still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(data.join("sled.1").join("db").exists());
    store.close().await;
}

/// A second compaction is not started while one is under way (a reload stopped the sweeper
/// whose copy went on, and the new sweeper's pass started another into the same directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_compaction_starts_while_one_is_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compact_ratio: 1.0,
        compact_min_bytes: 0,
        ..StoreConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SledStore::open(dir.path(), &config, metrics.clone()).unwrap());
    commit_events(&store, 2_000, now_ms()).await;
    store
        .compacting
        .store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(store.compact_if_worth_it().await.unwrap(), 0);
    assert!(!dir.path().join("sled.1").exists());
    assert_eq!(metrics.store_compactions.get(), 0);
    // Once it is over, one does.
    store
        .compacting
        .store(false, std::sync::atomic::Ordering::Release);
    store.compact_if_worth_it().await.unwrap();
    assert_eq!(metrics.store_compactions.get(), 1);
    assert!(!store.compacting.load(std::sync::atomic::Ordering::Acquire));
    store.close().await;
}

/// A record over what a large record's parts can count (only a polled item can be one) is
/// refused as too large: it panicked the committer, which stopped the gateway, and the poller
/// fetched the same page after every restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_largest_is_refused_as_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_default(dir.path());
    let body = Bytes::from(vec![b'x'; pack::LARGEST_RECORD]);
    match store
        .commit(event_with(1, body), Duration::from_secs(30))
        .await
    {
        Err(crate::store::StoreError::TooLarge { bytes, max }) => {
            assert_eq!(bytes, pack::LARGEST_RECORD);
            assert!(max < bytes && max > pack::LARGEST_RECORD - 1024, "{max}");
        }
        other => panic!("{other:?}"),
    }
    assert!(store
        .commit(event(2), Duration::from_secs(30))
        .await
        .is_ok());
    store.close().await;
}

/// A pack of more than a step's events that an output holds, with the events after it swept:
/// each step started in it (the last value at or below where it resumes), counted its events
/// again, stopped there, and expired events after it were never removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_goes_past_a_full_pack_of_held_events() {
    use crate::store::retention::Output;
    use crate::store::StoredEvent;
    let dir = tempfile::tempdir().unwrap();
    let store = open_default(dir.path());
    let commit = |provider: &'static str, n: usize| {
        let event = NewEvent::poll(
            ProviderName::parse(provider).unwrap(),
            EventId::new(format!("{n}")).unwrap(),
            None,
            Bytes::from_static(b"{}"),
        )
        .received_at(1);
        store.commit(event, Duration::from_secs(30))
    };
    // Tiny events, one at a time: 600 of provider a in one pack, then b's.
    let mut n = 0;
    for provider in ["a", "b"] {
        for _ in 0..600 {
            commit(provider, n).await.unwrap();
            n += 1;
        }
    }
    // An output that takes only a's events, and has received none: they are held.
    let outputs = Arc::new(vec![Output::destination(
        "crm".into(),
        |e: &StoredEvent| e.provider == "a",
    )]);
    let cutoffs = Cutoffs {
        events_ms: 1_000,
        dedup_ms: 0,
    };
    let first = store.sweep(cutoffs, outputs.clone()).await.unwrap();
    assert_eq!(first.events, 600, "every b event goes");
    // More b's after the swept ones: the next passes start from the pack of a's.
    for _ in 0..600 {
        commit("b", n).await.unwrap();
        n += 1;
    }
    let mut swept = 0;
    for _ in 0..5 {
        swept += store.sweep(cutoffs, outputs.clone()).await.unwrap().events;
    }
    assert_eq!(swept, 600, "every new b event goes");
    assert!(store.event(Seq(n as u64)).await.unwrap().is_none());
    assert!(store.event(Seq(1)).await.unwrap().is_some());
    store.close().await;
}

/// 1 KiB of bytes that do not compress (so that packs are sealed at about their raw size),
/// different for each `n`.
fn noise(n: usize) -> Bytes {
    let mut state = n as u64 + 1;
    let bytes: Vec<u8> = (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    Bytes::from(bytes)
}

fn event(n: usize) -> NewEvent {
    event_with(n, Bytes::from_static(b"{}"))
}

/// Event `n` (id `event-{n:06}`) with `body`.
fn event_with(n: usize, body: Bytes) -> NewEvent {
    NewEvent::poll(
        ProviderName::parse("p").unwrap(),
        EventId::new(format!("event-{n:06}")).unwrap(),
        None,
        body,
    )
}

/// `count` JSON bodies, each its id and `text`.
fn json_bodies(count: usize, text: &str) -> Vec<Bytes> {
    (0..count)
        .map(|n| Bytes::from(format!(r#"{{"id":"event-{n}","text":"{text}"}}"#)))
        .collect()
}

/// Commits `bodies` as events 0, 1, ... one after the other.
async fn commit_bodies(store: &SledStore, bodies: &[Bytes]) {
    for (n, body) in bodies.iter().enumerate() {
        store
            .commit(event_with(n, body.clone()), Duration::from_secs(30))
            .await
            .unwrap();
    }
}

/// Senders that come together let batches gather for `[store] commit_delay`: pairs of events
/// sent every 10 ms, each pair answered in ~1 ms, would take a commit each (or one a pair)
/// without it; with a delay of 100 ms, about one commit in 100 ms takes them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_gather_for_the_commit_delay_once_senders_come_together() {
    assert_pairs_gather(None).await;
}

/// A checkpoint's thread may send `Reopened` after the committer has seen sled back, so the
/// committer finds it in its queue between two checkpoints: batches gather as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_left_from_a_checkpoint_does_not_stop_batches_gathering() {
    assert_pairs_gather(Some(Message::Reopened)).await;
}

/// Commits 40 pairs of events, a pair every 10 ms, with a commit delay of 100 ms, after
/// `first` if any reaches the committer: they must take at most a sync per two pairs.
async fn assert_pairs_gather(first: Option<Message>) {
    const PAIRS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        commit_delay: Duration::from_millis(100),
        ..StoreConfig::default()
    };
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(SledStore::open(dir.path(), &config, metrics.clone()).unwrap());
    if let Some(message) = first {
        store.queue.send(message).await.unwrap();
    }
    let fsyncs_before = metrics.fsyncs.get();
    let mut sent = Vec::new();
    for pair in 0..PAIRS {
        let store = store.clone();
        sent.push(tokio::spawn(async move {
            let (a, b) = tokio::join!(
                store.commit(event(2 * pair), Duration::from_secs(30)),
                store.commit(event(2 * pair + 1), Duration::from_secs(30)),
            );
            a.unwrap();
            b.unwrap();
        }));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for pair in sent {
        pair.await.unwrap();
    }
    let fsyncs = metrics.fsyncs.get() - fsyncs_before;
    assert!(
        fsyncs <= PAIRS as u64 / 2,
        "{fsyncs} syncs for {PAIRS} pairs 10 ms apart: the batches did not gather"
    );
}

/// A lone sender's next event cannot come before its last is answered: its commits never wait
/// for a batch to gather (20 of them with a 100 ms delay would take 2 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_sender_never_waits_for_a_batch_to_gather() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        commit_delay: Duration::from_millis(100),
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    let start = Instant::now();
    for n in 0..20 {
        store
            .commit(event(n), Duration::from_secs(30))
            .await
            .unwrap();
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1_500),
        "20 commits took {took:?}"
    );
}

/// Readers racing the committer while packs fill, seal and leave `meta` for `events` see every
/// durable event, in order and without a gap: the open pack is read before the tree
/// (`reader.rs`), so a pack sealed between the two reads is in the tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_racing_the_committer_miss_no_event_of_the_open_pack() {
    const EVENTS: usize = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let store = Arc::new(SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap());
    let body = Bytes::from(format!(r#"{{"text":"{}"}}"#, "x".repeat(1000)));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let (store, next, body) = (store.clone(), next.clone(), body.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= EVENTS {
                        break;
                    }
                    store
                        .commit(event_with(n, body.clone()), Duration::from_secs(30))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut reads = 0;
    let mut last = super::Seq(0);
    while last.0 < EVENTS as u64 {
        last = *store.last_seq().borrow();
        let read = store
            .events_after(super::Seq(0), EVENTS, None)
            .await
            .unwrap();
        let seqs: Vec<u64> = read.iter().map(|event| event.seq).collect();
        assert!(
            seqs.iter().copied().eq(1..=seqs.len() as u64),
            "a gap after {reads} reads: {:?}",
            seqs.windows(2).find(|pair| pair[1] != pair[0] + 1)
        );
        assert!(
            seqs.len() as u64 >= last.0,
            "{} read, {last} durable",
            seqs.len()
        );
        if last.0 > 0 {
            let event = store.event(last).await.unwrap();
            assert_eq!(
                event.map(|event| event.seq),
                Some(last.0),
                "the newest one alone"
            );
        }
        reads += 1;
    }
    for writer in writers {
        writer.await.unwrap();
    }
    eprintln!("{reads} reads");
    store.close().await;
}

/// A large record (stored in parts, under its own key) after the open pack's first seq: every
/// read finds each event in its place, before and after the open pack moves into `events`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_record_after_the_open_pack_is_read_in_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    let small = |n: usize| Bytes::from(format!(r#"{{"n":{n}}}"#));
    let large = Bytes::from(format!(r#"{{"text":"{}"}}"#, "y".repeat(20_000)));
    let mut bodies = vec![small(0), small(1), small(2), large];
    commit_bodies(&store, &bodies).await;
    // Round 0: 1-3 in the open pack, 4 large after it in `events`. Round 1: 5 made 1-3 move
    // into `events`, sealed, and opened a pack. Round 2: 6 went into that pack.
    for round in 0..3 {
        let all = store.events_after(super::Seq(0), 100, None).await.unwrap();
        let read: Vec<Bytes> = all.into_iter().map(|e| Bytes::from(e.body)).collect();
        assert_eq!(read, bodies, "round {round}");
        for (n, body) in bodies.iter().enumerate() {
            let seq = super::Seq(n as u64 + 1);
            let event = store.event(seq).await.unwrap().expect("every event");
            assert_eq!(&event.body[..], &body[..], "{seq}, round {round}");
            let after = store
                .events_after(super::Seq(n as u64), 1, None)
                .await
                .unwrap();
            assert_eq!(after[0].seq, seq.0, "after {n}, round {round}");
        }
        let n = bodies.len();
        bodies.push(small(n));
        store
            .commit(event_with(n, bodies[n].clone()), Duration::from_secs(30))
            .await
            .unwrap();
    }
    store.close().await;
}

/// An open pack that does not parse stops the open, naming sled's file, rather than start
/// without the events it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_open_pack_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap();
    commit_bodies(&store, &json_bodies(3, "hello")).await;
    store.close().await;
    drop(store);
    {
        let db = super::open_db(dir.path(), &config).unwrap();
        let meta = db.open_tree("meta").unwrap();
        let open = meta.get(pack::OPEN_KEY).unwrap().unwrap();
        meta.insert(pack::OPEN_KEY, &open[..open.len() - 3])
            .unwrap();
        db.flush().unwrap();
    }
    let refused = SledStore::open(dir.path(), &config, Arc::new(Metrics::new()))
        .err()
        .expect("a damaged open pack is refused")
        .to_string();
    let file = dir.path().join("db").display().to_string();
    assert!(
        refused.contains(&file) && refused.contains("open pack"),
        "{refused}"
    );
}

/// A copy of an event whose dedup key expired, acknowledged from the journal while a checkpoint
/// had sled closed, then a crash: the start applies the journal. (The expiry lived in memory
/// only, so the start found the old claim again and refused the journal as not following the
/// store, at every start.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journaled_copy_of_an_expired_key_is_applied_at_the_next_start() {
    use super::committer::encode;
    use super::journal::{Frame, Journal};
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        compact_ratio: 0.0,
        ..StoreConfig::default()
    };
    let store = Arc::new(SledStore::open(dir.path(), &config, Arc::new(Metrics::new())).unwrap());
    commit_events(&store, 20_000, 5).await;
    let next = store.last_seq().borrow().0 + 1;
    assert_eq!(store.expire_dedup(6).await.unwrap(), 20_000);
    assert!(log_claims(&store, TreeId::Dedup) > 0, "claims left to trim");
    store.close().await;
    drop(store);
    // What a checkpoint right after the expiry journals for a copy of event-019990, which the
    // expiry no longer finds; then a crash before the journal is applied.
    let event = NewEvent::poll(
        ProviderName::parse("p").unwrap(),
        EventId::new("event-019990".to_string()).unwrap(),
        None,
        Bytes::from_static(b"{}"),
    );
    let (mut journal, _) = Journal::open(dir.path()).unwrap();
    let frame = Frame {
        first: super::Seq(next),
        events: vec![encode(&event)],
    };
    journal.append(&frame).unwrap();
    drop(journal);
    let store = SledStore::open(dir.path(), &config, Arc::new(Metrics::new()))
        .unwrap_or_else(|err| panic!("the start refused the journal: {err}"));
    let stored = store
        .event(super::Seq(next))
        .await
        .unwrap()
        .expect("applied");
    assert_eq!(stored.event_id, "event-019990");
    store.close().await;
}

/// A large record is read in steps (its first value, then its parts); a sweep that removes it
/// between the two is not corruption: the reader sees the event gone, and the store goes on
/// (it failed, stopping the gateway, when an admin read or a provider-filtered destination's
/// scan met an expiring large event). The sweep's removal is made here between the two steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_record_swept_while_it_is_read_is_gone_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_default(dir.path());
    // 20 KiB bodies: a first value and three parts each.
    let bodies: Vec<Bytes> = (0..2)
        .map(|n| Bytes::from((0..20).flat_map(|k| noise(n * 20 + k)).collect::<Vec<u8>>()))
        .collect();
    commit_bodies(&store, &bodies).await;
    let read = store
        .read(|reader| {
            let events = reader.tree(TreeId::Events);
            let head = events.get(pack::key(Seq(1)))?.expect("the first value");
            // The sweep removes the first value, then the parts.
            events.remove(pack::key(Seq(1)))?;
            for part in 1..4 {
                events.remove(pack::part_key(Seq(1), part))?;
            }
            Ok(reader.decode(Seq(1), &head, Seq(2))?.events.len())
        })
        .await;
    assert_eq!(read.ok(), Some(0), "seen gone");
    // A part missing while the first value is still there is corruption, as before.
    let read = store
        .read(|reader| {
            let events = reader.tree(TreeId::Events);
            let head = events.get(pack::key(Seq(2)))?.expect("the first value");
            events.remove(pack::part_key(Seq(2), 2))?;
            Ok(reader.decode(Seq(2), &head, Seq(2))?.events.len())
        })
        .await;
    assert!(
        matches!(read, Err(crate::store::StoreError::Corrupt(ref m)) if m.contains("part 2 of 4 is missing")),
        "{read:?}"
    );
    store.close().await;
}

/// The sweeper judges durable events only, and the open pack may also hold the records of a
/// batch being synced (past `last_seq`, acknowledged by the time a removal is applied): a pack
/// whose judged events all expired is rewritten without them, not removed whole with the
/// batch's records (which it was: an acknowledged event lost on a quiet gateway whose older
/// events had all expired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_keeps_the_records_of_a_batch_being_synced() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_default(dir.path());
    for n in 0..3 {
        store
            .commit(event(n).received_at(1), Duration::from_secs(30))
            .await
            .unwrap();
    }
    // A reader to which seq 3 is not durable yet, as while its batch is being synced.
    let step = store
        .read(|reader| {
            let (_keep, behind) = tokio::sync::watch::channel(Seq(2));
            let reader = super::reader::Reader {
                trees: reader.trees.clone(),
                db: reader.db.clone(),
                last_seq: behind,
                reads: reader.reads.clone(),
                mark_moves: reader.mark_moves.clone(),
            };
            super::retention::scan_events(&reader, &[], Seq(0), now_ms())
        })
        .await
        .unwrap();
    assert!(!step.writes.is_empty(), "seqs 1 and 2 expired");
    store.write(step.writes).await.unwrap();
    assert!(store.event(Seq(1)).await.unwrap().is_none(), "swept");
    assert!(
        store.event(Seq(3)).await.unwrap().is_some(),
        "the record past last_seq is kept"
    );
    store.close().await;
}
