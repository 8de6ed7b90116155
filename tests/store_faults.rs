//! The store under faults: a failed fsync stops the gateway before any later ack (fail-stop),
//! and a damaged `db` file is either refused at start, loudly, or served whole; never served
//! empty or partial in silence.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use common::load::Load;
use common::sign;
use common::{provider, Gateway};

/// The env var that makes the store's log fsync fail after this many successful ones.
const FAULT_ENV: &str = "HOOKGATE_TEST_FAIL_FSYNC_AFTER";
const FAIL_AFTER: usize = 30;
/// Beside the config: when present, its content is the `FAULT_ENV` value for the next start.
const FAULT_FILE: &str = "fail_fsync_after";

fn id_provider() -> String {
    provider("p", "none", &[], "event_id = \"header:X-Id\"")
}

/// Runs the gateway directly, with `FAULT_ENV` set from the file beside the config if it is
/// there (a `Wrapper` is a plain `fn`, so the setting travels through the file).
fn with_fault_from_file(bin: &Path, config: &Path, _data_dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("serve").arg("--config").arg(config);
    let file = config.parent().unwrap().join(FAULT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(n) => {
            cmd.env(FAULT_ENV, n.trim());
        }
        Err(_) => {
            cmd.env_remove(FAULT_ENV);
        }
    }
    cmd
}

/// What one POST got (the texts are read through `Debug`, in failure messages).
#[derive(Debug)]
#[allow(dead_code)]
enum Answer {
    Ok(u64),
    Status(u16, String),
    /// No answer: the gateway was gone or went away.
    Transport(String),
}

#[test]
fn a_failed_fsync_stops_the_gateway_before_any_later_ack() {
    fail_an_fsync(false);
}

/// The same after a reload: the process watched the committer's end through a notice a reload
/// consumed, and after any SIGHUP a failed fsync left it running, answering 503 for ever.
#[test]
fn a_failed_fsync_after_a_reload_stops_the_gateway_too() {
    fail_an_fsync(true);
}

fn fail_an_fsync(reload_first: bool) {
    let mut gw = Gateway::builder()
        .config(&id_provider())
        .wrapper(with_fault_from_file)
        .start();
    // The config's directory exists only once the gateway runs: arm the fault, then restart.
    let fault_file = gw.config_path().parent().unwrap().join(FAULT_FILE);
    std::fs::write(&fault_file, FAIL_AFTER.to_string()).unwrap();
    gw.restart();
    assert!(
        gw.logs().contains(FAULT_ENV),
        "the gateway did not log the injected fault; stderr:\n{}",
        gw.logs()
    );
    if reload_first {
        gw.signal(nix::sys::signal::Signal::SIGHUP);
        common::wait_until(Duration::from_secs(10), "the reload", || {
            gw.logs().contains("Config reloaded.")
        });
    }

    let mut answers: Vec<(String, Answer)> = Vec::new();
    let mut failed_at = None;
    for i in 0..(FAIL_AFTER * 3) {
        let id = format!("seq-{i}");
        let body = format!(r#"{{"id":"{id}"}}"#);
        let answer = match gw.try_post("p", &sign::headers(&[("X-Id", &id)]), body.as_bytes()) {
            Ok(reply) if reply.status == 200 => {
                let (status, seq) = reply.ack();
                assert_eq!(status, "accepted", "{id}");
                Answer::Ok(seq)
            }
            Ok(reply) => Answer::Status(reply.status, reply.text()),
            Err(err) => Answer::Transport(common::error_chain(&err)),
        };
        let ok = matches!(answer, Answer::Ok(_));
        answers.push((id, answer));
        if !ok && failed_at.is_none() {
            failed_at = Some(i);
        }
        // After the failure, keep posting until the process is gone (and a few more).
        if failed_at.is_some_and(|f| i >= f + 5) && !gw.is_running() {
            break;
        }
    }
    let failed_at = failed_at.unwrap_or_else(|| {
        panic!(
            "{} posts all got 200 with {FAULT_ENV}={FAIL_AFTER}; stderr:\n{}",
            answers.len(),
            gw.logs()
        )
    });
    eprintln!("answers: {answers:?}");
    // Every post needs a sync of its own: at most FAIL_AFTER of them could succeed.
    assert!(
        (1..=FAIL_AFTER).contains(&failed_at),
        "the first non-200 was post {failed_at}: {:?}",
        answers[failed_at]
    );
    let late_acks: Vec<_> = answers[failed_at..]
        .iter()
        .filter(|(_, a)| matches!(a, Answer::Ok(_)))
        .collect();
    assert!(
        late_acks.is_empty(),
        "acks after the failed fsync (post {failed_at}: {:?}): {late_acks:?}",
        answers[failed_at].1
    );
    if let Answer::Status(status, _) = &answers[failed_at].1 {
        assert!(*status >= 500, "the failing post got {status}, not a 5xx");
    }
    let status = gw.wait_exit(Duration::from_secs(10));
    assert!(
        !status.success(),
        "the gateway exited {status:?} after a failed fsync"
    );
    assert!(
        gw.logs().contains("fdatasync of the store's log failed"),
        "the log does not name the failed fsync; stderr:\n{}",
        gw.logs()
    );

    // Restarted without the fault: every ack is stored under its seq.
    std::fs::remove_file(&fault_file).unwrap();
    gw.restart();
    let stored = gw.ids_by_seq();
    let mut highest = 0;
    for (id, answer) in &answers {
        if let Answer::Ok(seq) = answer {
            assert_eq!(stored.get(seq), Some(id), "acked {id} as {seq}");
            highest = highest.max(*seq);
        }
    }
    // And the store takes events again, after every seq it ever acked.
    let (status, seq) = gw
        .post("p", &sign::headers(&[("X-Id", "after-restart")]), b"{}")
        .ack();
    assert_eq!(status, "accepted");
    assert!(seq > highest, "seq {seq} after acks up to {highest}");
}

// ---- corruption ----

/// An acked event: id, seq, body.
type Acked = Vec<(String, u64, Vec<u8>)>;

/// Runs a gateway, posts events (small and large), stops it gracefully, and returns a copy of
/// its data dir and what was acked. Dedup runs are sealed every 40 keys, so that the copy holds
/// some, with their files in `dedup-runs/`.
fn stopped_store_with_events(copy_to: &Path) -> Acked {
    stopped_store(copy_to, false)
}

/// [`stopped_store_with_events`], compacted first if `compacted` (sled's files then in a
/// `sled.<n>` that `current` names).
fn stopped_store(copy_to: &Path, compacted: bool) -> Acked {
    let store = if compacted {
        "[store]\ncompact_ratio = 1.0\ncompact_min_mb = 0\nsweep_interval = \"200ms\"\n"
    } else {
        ""
    };
    let mut gw = Gateway::builder()
        .config(&format!("{}\n{store}", id_provider()))
        .env("HOOKGATE_TEST_DEDUP_RUN_KEYS", "40")
        .start();
    let mut acked = Vec::new();
    for i in 0..120u64 {
        let id = format!("ev-{i:03}");
        let body = if i == 57 {
            // Past sled's inline limit for its segments (half of one): a blob file of its own.
            common::pseudo_random_bytes(1000 * 1024, i)
        } else if i % 10 == 3 {
            common::pseudo_random_bytes(40 * 1024, i)
        } else {
            format!(
                r#"{{"id":"{id}","marker":"MARK-{i:03}-{}"}}"#,
                "y".repeat(400)
            )
            .into_bytes()
        };
        let (status, seq) = gw.post("p", &sign::headers(&[("X-Id", &id)]), &body).ack();
        assert_eq!(status, "accepted");
        acked.push((id, seq, body));
    }
    if compacted {
        common::wait_until(Duration::from_secs(60), "a compaction", || {
            gw.metric("hookgate_store_compactions_total", &[])
                .is_some_and(|compactions| compactions >= 1.0)
        });
    }
    let status = gw.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM exit: {status:?}");
    copy_dir(gw.data_dir(), copy_to);
    acked
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// An answer's status (`accepted` or `duplicate`) and seq.
type Ack = (String, u64);

/// How a gateway started on a damaged store behaved.
enum Start {
    /// It exited before listening.
    Refused { status: ExitStatus, log: String },
    /// It listened, but stopped on its own as soon as a read met the damage, before serving
    /// any of the damaged store.
    Stopped { status: ExitStatus, log: String },
    /// It listened; what it served, and answered to events sent again (by id).
    Served {
        events: Result<BTreeMap<u64, (String, Vec<u8>)>, String>,
        resent: Vec<(String, Result<Ack, String>)>,
        next: Result<u64, String>,
        log: String,
    },
}

/// Starts `hookgate serve` on `data_dir` (a config of its own), and either sees it exit or
/// reads every event it serves, sends `resend` again and posts one more.
fn start_on(data_dir: &Path, resend: &[&(String, u64, Vec<u8>)]) -> Start {
    let config_path = data_dir.parent().unwrap().join("config.toml");
    let config = common::config_toml(data_dir, "", &id_provider());
    std::fs::write(&config_path, config).unwrap();
    let mut child = Command::new(common::hookgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .env_remove("HOOKGATE_CONFIG")
        .env_remove(FAULT_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let drain = {
        let (stderr, log) = (child.stderr.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).split(b'\n') {
                let Ok(line) = line else { break };
                let line = String::from_utf8_lossy(&line).into_owned();
                if let Some(addrs) = common::parse_listening_line(&line) {
                    let _ = tx.send(addrs);
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        })
    };
    let deadline = Instant::now() + common::START_TIMEOUT;
    let (public, admin) = loop {
        if let Ok(addrs) = rx.try_recv() {
            break addrs;
        }
        if let Some(status) = child.try_wait().unwrap() {
            drain.join().unwrap();
            let log = log.lock().unwrap().clone();
            return Start::Refused { status, log };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the gateway neither listened nor exited; stderr:\n{}",
                log.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let events = read_all(&client, &format!("http://{admin}"));
    if events.is_err() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                drain.join().unwrap();
                let log = log.lock().unwrap().clone();
                return Start::Stopped { status, log };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let post = |id: &str, body: Vec<u8>| {
        client
            .post(format!("http://{public}/hooks/p"))
            .header("X-Id", id)
            .body(body)
            .send()
            .map_err(|err| common::error_chain(&err))
            .and_then(|response| {
                let status = response.status();
                let body: serde_json::Value = response.json().map_err(|e| e.to_string())?;
                match (body["status"].as_str(), body["seq"].as_u64()) {
                    (Some(answer), Some(seq)) if status == 200 => Ok((answer.to_string(), seq)),
                    _ => Err(format!("{status} {body}")),
                }
            })
    };
    let resent = resend
        .iter()
        .map(|(id, _, body)| (id.clone(), post(id, body.clone())))
        .collect();
    let next = post("after-damage", b"{}".to_vec()).map(|(_, seq)| seq);
    let _ = child.kill();
    let _ = child.wait();
    drain.join().unwrap();
    let log = log.lock().unwrap().clone();
    Start::Served {
        events,
        resent,
        next,
        log,
    }
}

/// Every event the admin API serves, by seq, with its id and body.
fn read_all(
    client: &reqwest::blocking::Client,
    admin_url: &str,
) -> Result<BTreeMap<u64, (String, Vec<u8>)>, String> {
    let mut events = BTreeMap::new();
    let mut after = 0;
    loop {
        let response = client
            .get(format!("{admin_url}/v1/events?after={after}&limit=1000"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .map_err(|err| common::error_chain(&err))?;
        let status = response.status();
        let text = response.text().map_err(|err| err.to_string())?;
        if status != 200 {
            return Err(format!("GET /v1/events?after={after}: {status} {text}"));
        }
        let page: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        for event in page["events"].as_array().unwrap() {
            let seq = event["seq"].as_u64().unwrap();
            let id = event["event_id"].as_str().unwrap().to_string();
            events.insert(seq, (id, common::event_body(event)));
        }
        match page["next_after"].as_u64() {
            Some(next) if next > after => after = next,
            _ => return Ok(events),
        }
    }
}

/// The required behaviour on a damaged store: refused at start with a non-zero exit and an
/// error naming the damaged file or its directory, or stopped at the first read of the damage
/// with an error naming the store, or every acked event served as acked, the first, a middle
/// and the last of them still duplicates when sent again, and new seqs after them. Returns
/// whether it refused or stopped.
fn assert_refused_loudly_or_served_whole(case: &str, data_dir: &Path, acked: &Acked) -> bool {
    let resend = [&acked[0], &acked[acked.len() / 2], &acked[acked.len() - 1]];
    let start = start_on(data_dir, &resend);
    if let Start::Refused { status, log } = &start {
        let error = log.lines().rfind(|line| line.contains("ERROR"));
        assert!(
            error.is_some_and(|line| line.contains(&*data_dir.to_string_lossy())),
            "{case}: refused to start ({status:?}) without naming the damaged file's directory; \
             stderr:\n{log}"
        );
    }
    match start {
        Start::Refused { status, log } | Start::Stopped { status, log } => {
            eprintln!("{case}: refused to start or to go on ({status:?}); stderr:\n{log}");
            assert!(
                !status.success(),
                "{case}: exited {status:?} without serving"
            );
            let lower = log.to_lowercase();
            let names_store = lower.contains("store")
                || log.contains(&*data_dir.to_string_lossy())
                || lower.contains("sled");
            assert!(
                names_store,
                "{case}: refused to start without naming the store or its file; stderr:\n{log}"
            );
            true
        }
        Start::Served {
            events,
            resent,
            next,
            log,
        } => {
            let events = events.unwrap_or_else(|err| {
                panic!("{case}: started, but reading its events failed: {err}; stderr:\n{log}")
            });
            let missing: Vec<String> = acked
                .iter()
                .filter(|(id, seq, body)| events.get(seq).is_none_or(|(i, b)| i != id || b != body))
                .map(|(id, seq, _)| match events.get(seq) {
                    None => format!("{id}@{seq}: missing"),
                    Some((i, _)) if i != id => format!("{id}@{seq}: now {i}"),
                    Some(_) => format!("{id}@{seq}: body differs"),
                })
                .collect();
            eprintln!(
                "{case}: started and served {} of {} acked events ({} missing or changed); \
                 next post: {next:?}",
                acked.len() - missing.len(),
                acked.len(),
                missing.len()
            );
            assert!(
                missing.is_empty(),
                "{case}: started and served {} events, but {} of {} acked events are missing or \
                 changed, silently: {:?}...; stderr:\n{log}",
                events.len(),
                missing.len(),
                acked.len(),
                &missing[..missing.len().min(8)]
            );
            for ((id, answer), (_, seq, _)) in resent.iter().zip(resend) {
                assert_eq!(
                    answer.as_ref().ok(),
                    Some(&("duplicate".to_string(), *seq)),
                    "{case}: {id}, acked at {seq}, sent again; stderr:\n{log}"
                );
            }
            let highest = acked.iter().map(|(_, seq, _)| *seq).max().unwrap();
            let next = next.unwrap_or_else(|err| panic!("{case}: a new post failed: {err}"));
            assert!(
                next > highest,
                "{case}: new seq {next} after acks up to {highest}"
            );
            false
        }
    }
}

/// A fresh copy of the stopped store, as `<tmp>/data`.
fn fresh_copy(pristine: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(pristine, &data);
    (dir, data)
}

/// The harness itself: an undamaged copy starts and serves every acked event.
#[test]
fn an_intact_copy_of_a_stopped_store_serves_every_ack() {
    let pristine = tempfile::tempdir().unwrap();
    let acked = stopped_store_with_events(pristine.path());
    let (_dir, data) = fresh_copy(pristine.path());
    match start_on(&data, &[]) {
        Start::Served { .. } => {}
        Start::Refused { status, log } | Start::Stopped { status, log } => {
            panic!("an intact store was refused ({status:?}); stderr:\n{log}")
        }
    }
    let (_dir, data) = fresh_copy(pristine.path());
    assert_refused_loudly_or_served_whole("intact", &data, &acked);
}

#[test]
fn a_truncated_db_is_refused_or_served_whole() {
    let pristine = tempfile::tempdir().unwrap();
    let acked = stopped_store_with_events(pristine.path());
    let (_dir, data) = fresh_copy(pristine.path());
    let db = data.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(len / 2).unwrap();
    file.sync_all().unwrap();
    eprintln!("db truncated from {len} to {} bytes", len / 2);
    assert_refused_loudly_or_served_whole("db truncated to half", &data, &acked);
}

#[test]
fn flipped_bytes_in_db_are_refused_or_served_whole() {
    let pristine = tempfile::tempdir().unwrap();
    let acked = stopped_store_with_events(pristine.path());
    let (_dir, data) = fresh_copy(pristine.path());
    let db = data.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    // Flip 64 bytes in the middle of the file, in 8 runs of 8 a page apart.
    let middle = bytes.len() / 2;
    for run in 0..8 {
        let at = middle + run * 4096;
        for byte in &mut bytes[at..at + 8] {
            *byte ^= 0xFF;
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    eprintln!(
        "flipped 8 runs of 8 bytes from offset {middle} of {}",
        bytes.len()
    );
    assert_refused_loudly_or_served_whole("db with flipped bytes", &data, &acked);
}

/// Flipped bytes inside the stored records of one acked event (every copy sled holds of it):
/// the event cannot be served as acked, so the store must say so.
#[test]
fn a_damaged_event_record_in_db_is_refused_or_served_whole() {
    let pristine = tempfile::tempdir().unwrap();
    let acked = stopped_store_with_events(pristine.path());
    let (_dir, data) = fresh_copy(pristine.path());
    let db = data.join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let marker = b"MARK-060-";
    let found: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(_, window)| window == marker)
        .map(|(at, _)| at)
        .collect();
    assert!(!found.is_empty(), "event 60's body is not in db as written");
    for &at in &found {
        for byte in &mut bytes[at + marker.len()..at + marker.len() + 16] {
            *byte ^= 0x5A;
        }
    }
    std::fs::write(&db, &bytes).unwrap();
    eprintln!(
        "flipped 16 bytes in each of the {} copies of event 60's body",
        found.len()
    );
    assert_refused_loudly_or_served_whole("db with a damaged record", &data, &acked);
}

/// What a disk does to one file of a stopped store.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Removed,
    Emptied,
    CutToHalf,
    /// Eight bytes inverted in the middle of the file.
    Flipped,
}

impl Damage {
    fn apply(self, file: &Path) {
        let bytes = std::fs::read(file).unwrap();
        match self {
            Damage::Removed => std::fs::remove_file(file).unwrap(),
            Damage::Emptied => std::fs::write(file, b"").unwrap(),
            Damage::CutToHalf => std::fs::write(file, &bytes[..bytes.len() / 2]).unwrap(),
            Damage::Flipped => {
                let mut bytes = bytes;
                let at = bytes.len().saturating_sub(8) / 2;
                let end = bytes.len().min(at + 8);
                for byte in &mut bytes[at..end] {
                    *byte ^= 0xFF;
                }
                std::fs::write(file, &bytes).unwrap();
            }
        }
    }
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let inner = files_under(&path);
            let name = path.strip_prefix(dir).unwrap().to_path_buf();
            files.extend(inner.into_iter().map(|file| name.join(file)));
        } else {
            files.push(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    files.sort();
    files
}

/// Each file of a stopped store (sled's, the acknowledged watermark, the checkpoint journal, the
/// dedup runs' copies), removed, emptied, cut to half or with bytes flipped, one at a time:
/// refused loudly, or served whole with acked ids still duplicates; never served short.
#[test]
fn any_store_file_damaged_is_refused_or_served_whole() {
    damage_each_file_of_a_stopped_store(false);
}

/// The same on a compacted store, whose sled files are in `sled.<n>`, named by `current`.
#[test]
fn any_file_of_a_compacted_store_damaged_is_refused_or_served_whole() {
    damage_each_file_of_a_stopped_store(true);
}

fn damage_each_file_of_a_stopped_store(compacted: bool) {
    let pristine = tempfile::tempdir().unwrap();
    let acked = stopped_store(pristine.path(), compacted);
    let files = files_under(pristine.path());
    eprintln!("the stopped store's files: {files:?}");
    assert!(
        files.iter().any(|file| file.starts_with("dedup-runs")),
        "no dedup run was sealed: {files:?}"
    );
    assert_eq!(
        files.iter().any(|file| file == Path::new("current")),
        compacted,
        "{files:?}"
    );
    for file in &files {
        for damage in [
            Damage::Removed,
            Damage::Emptied,
            Damage::CutToHalf,
            Damage::Flipped,
        ] {
            let (_dir, data) = fresh_copy(pristine.path());
            damage.apply(&data.join(file));
            let case = format!("{} {damage:?}", file.display());
            if assert_refused_loudly_or_served_whole(&case, &data, &acked) {
                // A refusal changed nothing: with the file as it was, the store is whole.
                std::fs::copy(pristine.path().join(file), data.join(file)).unwrap();
                let case = format!("{case}, then repaired");
                assert!(
                    !assert_refused_loudly_or_served_whole(&case, &data, &acked),
                    "{case}: refused"
                );
            }
        }
    }
}

/// The start warns when the data dir's file system is mounted with online discard (which
/// stalls every commit while space is freed: `src/store/sled/mount.rs`), and only then.
/// `findmnt` (util-linux) says how the test machine's is mounted; either way is checked.
#[test]
fn a_data_dir_on_a_discard_mount_is_warned_about_at_start() {
    let gw = Gateway::start(&id_provider());
    let findmnt = Command::new("findmnt")
        .args(["--noheadings", "--output", "OPTIONS", "--target"])
        .arg(gw.data_dir())
        .output()
        .expect("findmnt (util-linux) runs");
    assert!(findmnt.status.success(), "{findmnt:?}");
    let options = String::from_utf8_lossy(&findmnt.stdout).trim().to_string();
    let discard = options.split(',').any(|option| option == "discard");
    let warned = gw.logs().contains("mounted with online discard");
    assert_eq!(
        warned,
        discard,
        "mount options {options:?}; logs:\n{}",
        gw.logs()
    );
}

/// A second `hookgate serve` started by mistake on a running gateway's data dir, again and
/// again while the first compacts its store (a copy written beside the live one, then switched
/// to) under load: each is refused at once, naming the data dir, and the first loses nothing.
#[test]
fn a_second_gateway_on_the_same_data_dir_is_refused_and_costs_the_first_nothing() {
    let store = "[store]\ncompact_ratio = 1.0\ncompact_min_mb = 0\nsweep_interval = \"100ms\"\n";
    let mut gw = Gateway::builder()
        .config(&format!("{}\n{store}", id_provider()))
        .start();
    let data_dir = gw.data_dir().to_path_buf();
    let second_dir = tempfile::tempdir().unwrap();
    let config_path = second_dir.path().join("config.toml");
    let config = common::config_toml(&data_dir, "", &format!("{}\n{store}", id_provider()));
    std::fs::write(&config_path, config).unwrap();
    let load = Load::default();
    load.while_running(&gw, 4, || {
        for attempt in 0..12 {
            common::wait_until(Duration::from_secs(30), "a compaction", || {
                gw.metric("hookgate_store_compactions_total", &[])
                    .is_some_and(|compactions| compactions >= f64::from(attempt))
            });
            let mut second = Command::new(common::hookgate_bin())
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .env_remove("HOOKGATE_CONFIG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let status = loop {
                if let Some(status) = second.try_wait().unwrap() {
                    break Some(status);
                }
                if Instant::now() > deadline {
                    let _ = second.kill();
                    let _ = second.wait();
                    break None;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let mut log = String::new();
            std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut log).unwrap();
            let status = status.unwrap_or_else(|| {
                panic!("attempt {attempt}: a second gateway ran 5 s; stderr:\n{log}")
            });
            assert!(!status.success(), "attempt {attempt}: {status:?}");
            assert!(
                log.contains("another hookgate") && log.contains(&*data_dir.to_string_lossy()),
                "attempt {attempt}: refused without saying why; stderr:\n{log}"
            );
        }
        load.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(
        !gw.logs().contains("Compacting the store failed"),
        "{}",
        gw.logs()
    );
    gw.restart();
    load.assert_all_stored(&gw);
}

/// A data dir that cannot be made (a path through a regular file): refused at start, naming it.
#[test]
fn a_data_dir_that_cannot_be_made_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a-file"), b"").unwrap();
    let data_dir = dir.path().join("a-file").join("data");
    let config_path = dir.path().join("config.toml");
    std::fs::write(
        &config_path,
        common::config_toml(&data_dir, "", &id_provider()),
    )
    .unwrap();
    let output = Command::new(common::hookgate_bin())
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .env_remove("HOOKGATE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot create the data dir {}: Not a directory",
            data_dir.display()
        )),
        "{stderr}"
    );
}
