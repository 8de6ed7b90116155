//! Reading an output's marks on the sled store: consistent while the committer moves them, and
//! without writing to the disk (a read-only sled transaction, which the reads used before, writes
//! an io buffer to sled's log for every read).

use std::path::Path;
use std::sync::Arc;

use hookgate::config::StoreConfig;
use hookgate::event::Seq;
use hookgate::metrics::Metrics;
use hookgate::store::{Change, DeadRecord, Mark, Store};

/// The two tests run one at a time: one counts this process's writes.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open(dir: &Path) -> Store {
    Store::open(dir, &StoreConfig::default(), Arc::new(Metrics::new())).expect("open the store")
}

fn dead() -> DeadRecord {
    DeadRecord {
        at_ms: 1_700_000_000_000,
        attempts: 3,
        error: "HTTP 500 after 3 attempts".into(),
    }
}

/// This process's write calls so far (`syscw` of `/proc/self/io`).
fn write_calls() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("read /proc/self/io");
    io.lines()
        .find_map(|line| line.strip_prefix("syscw: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("syscw in /proc/self/io")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn marks_moving_between_dead_and_replay_are_never_seen_in_neither() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let seq = Seq(7);
    store
        .change("crm", vec![Change::Dead(seq, dead())])
        .await
        .unwrap();
    let moving = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..300 {
                // Replayed, then dead again: each move one transaction.
                let replayed = vec![
                    Change::Unmark(Mark::Dead, seq),
                    Change::Mark(Mark::Replay, seq),
                ];
                store.change("crm", replayed).await.unwrap();
                let dead_again = vec![Change::Unmark(Mark::Replay, seq), Change::Dead(seq, dead())];
                store.change("crm", dead_again).await.unwrap();
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut reads = 0u64;
                loop {
                    let marks = store.marks("crm", seq).await.unwrap();
                    assert!(
                        marks.dead.is_some() || marks.replay,
                        "a moving mark was seen in neither tree after {reads} reads: {marks:?}"
                    );
                    assert!(!marks.settled, "{marks:?}");
                    reads += 1;
                    if reads.is_multiple_of(64)
                        && store.marks("crm", Seq(8)).await.unwrap().dead.is_some()
                    {
                        return reads;
                    }
                }
            })
        })
        .collect();
    moving.await.unwrap();
    // Tells the readers to stop.
    store
        .change("crm", vec![Change::Dead(Seq(8), dead())])
        .await
        .unwrap();
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_marks_writes_nothing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .change("crm", vec![Change::Dead(Seq(3), dead())])
        .await
        .unwrap();
    let before = write_calls();
    for seq in 0..2_000 {
        let marks = store.marks("crm", Seq(seq)).await.unwrap();
        assert_eq!(marks.dead.is_some(), seq == 3);
    }
    let writes = write_calls() - before;
    // A read-only sled transaction per read wrote ~2,000 times; what is left is the harness's.
    assert!(
        writes < 100,
        "{writes} write calls for 2,000 reads of marks"
    );
    store.close().await;
}
