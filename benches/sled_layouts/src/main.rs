//! sled 0.34.7 layout benchmark for hookgate.
//!
//! usage:
//!   bench fill   <layout L1|L2|L3> <dir> <n> [seg_size_bytes] [cache_bytes] [fsync 0|1]
//!   bench reopen <layout> <dir> <n> [seg] [cache] [k_buckets_for_miss]
//!   bench retain <layout> <dir> <n> [seg] [cache] [extra_batches] [report_every]
//!   bench txsize <dir> <values> <values_per_transaction> [value_bytes] [segment_bytes]
//!   bench firstwrite <dir> <values> [segment_bytes]
//!   bench logdrop <dir> <values> [value_bytes] [events_per_value] [step]
//!
//! Events: i in 0..n, seq = i+1, received_at = T0 + i*EV_MS ms.
//! body = 1024 bytes of JSON-ish text with random hex.
//! event id = 40 chars derived deterministically from i (so lookups can regenerate it).
use rand::{rngs::SmallRng, Rng, SeedableRng};
use sha2::{Digest, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::time::Instant;

const TX_EVENTS: u64 = 32;
/// events per chunk (L2-L4); env CHUNK, default 32 (= one chunk per 32-event transaction)
fn chunk_len() -> u64 {
    std::env::var("CHUNK")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(32)
}
const T0: u64 = 1_700_000_000_000;
const EV_MS: u64 = 360; // 10k events per hour bucket
const PROVIDER: &[u8] = b"github";

fn status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for l in s.lines() {
        if l.starts_with(field) {
            return l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() / 1024;
        }
    }
    0
}
fn rss() -> String {
    format!(
        "VmRSS={}MiB VmHWM={}MiB",
        status("VmRSS:"),
        status("VmHWM:")
    )
}
fn du(dir: &str) -> u64 {
    let o = std::process::Command::new("du")
        .args(["-sb", dir])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
fn du_detail(dir: &str) -> String {
    let mut out = String::new();
    let mut blobs = 0u64;
    let mut nblobs = 0u64;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let md = e.metadata().unwrap();
        if md.is_dir() {
            for b in std::fs::read_dir(e.path()).unwrap() {
                blobs += b.unwrap().metadata().unwrap().len();
                nblobs += 1;
            }
            out += &format!(
                "{}/:{}files,{}B ",
                e.file_name().to_string_lossy(),
                nblobs,
                blobs
            );
        } else {
            out += &format!("{}:{}B ", e.file_name().to_string_lossy(), md.len());
        }
    }
    out
}

fn event_id(i: u64) -> [u8; 40] {
    let h = Sha256::digest(i.to_le_bytes());
    let hex = b"0123456789abcdef";
    let mut id = [0u8; 40];
    for k in 0..20 {
        id[2 * k] = hex[(h[k] >> 4) as usize];
        id[2 * k + 1] = hex[(h[k] & 15) as usize];
    }
    id
}
fn dedup_key_full(i: u64) -> Vec<u8> {
    let mut k = PROVIDER.to_vec();
    k.push(0);
    k.extend_from_slice(&event_id(i));
    k
}
fn hash16(full: &[u8]) -> [u8; 16] {
    let h = Sha256::digest(full);
    let mut o = [0u8; 16];
    o.copy_from_slice(&h[..16]);
    o
}
fn ts(i: u64) -> u64 {
    T0 + i * EV_MS
}
fn bucket(t: u64) -> u32 {
    (t / 3_600_000) as u32
}
fn dedup_key(layout: &str, i: u64) -> Vec<u8> {
    match layout {
        "L1" => dedup_key_full(i),
        "L2" => hash16(&dedup_key_full(i)).to_vec(),
        "L4" => {
            let h = hash16(&dedup_key_full(i));
            let mut k = bucket(ts(i)).to_be_bytes().to_vec();
            k.push(h[0]);
            k
        }
        _ => {
            let mut k = bucket(ts(i)).to_be_bytes().to_vec();
            k.extend_from_slice(&hash16(&dedup_key_full(i)));
            k
        }
    }
}
fn l4_has(dd: &sled::Tree, bucket_: u32, h: &[u8; 16]) -> bool {
    let mut k = bucket_.to_be_bytes().to_vec();
    k.push(h[0]);
    match dd.get(k).unwrap() {
        Some(v) => v.chunks(24).any(|x| x[..16] == h[..]),
        None => false,
    }
}
fn body(rng: &mut SmallRng) -> Vec<u8> {
    let hex = b"0123456789abcdef";
    let mut b = Vec::with_capacity(1024);
    b.extend_from_slice(b"{\"action\":\"opened\",\"data\":\"");
    while b.len() < 1022 {
        b.push(hex[rng.gen_range(0..16)]);
    }
    b.extend_from_slice(b"\"}");
    b
}
/// postcard-ish record: seq, received_at, provider, id, body (~1.1 KiB)
fn record(i: u64, body: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(body.len() + 80);
    r.extend_from_slice(&(i + 1).to_be_bytes());
    r.extend_from_slice(&ts(i).to_be_bytes());
    r.push(PROVIDER.len() as u8);
    r.extend_from_slice(PROVIDER);
    r.push(40);
    r.extend_from_slice(&event_id(i));
    r.extend_from_slice(&(body.len() as u32).to_be_bytes());
    r.extend_from_slice(body);
    r
}

fn open(dir: &str, seg: usize, cache: u64) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .segment_size(seg)
        .cache_capacity(cache)
        .open()
        .unwrap()
}

fn write_batch(
    layout: &str,
    ev: &sled::Tree,
    dd: &sled::Tree,
    start: u64,
    end: u64,
    rng: &mut SmallRng,
) -> u64 {
    let recs: Vec<(u64, Vec<u8>)> = (start..end).map(|i| (i, record(i, &body(rng)))).collect();
    let dkeys: Vec<Vec<u8>> = (start..end).map(|i| dedup_key(layout, i)).collect();
    let payload: u64 = recs.iter().map(|r| r.1.len() as u64).sum();
    let chunk = if layout != "L1" {
        let mut c = Vec::with_capacity(payload as usize + 4 * recs.len());
        for (_, r) in &recs {
            c.extend_from_slice(&(r.len() as u32).to_be_bytes());
            c.extend_from_slice(r);
        }
        Some(c)
    } else {
        None
    };
    if layout == "L4" {
        let mut parts: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = Default::default();
        for (j, (i, _)) in recs.iter().enumerate() {
            let e = parts.entry(dkeys[j].clone()).or_default();
            e.extend_from_slice(&hash16(&dedup_key_full(*i)));
            e.extend_from_slice(&(i + 1).to_be_bytes());
        }
        let chunk = chunk.unwrap();
        let res: Result<(), TransactionError<()>> = (ev, dd).transaction(|(ev, dd)| {
            for (pk, add) in &parts {
                let mut v = dd.get(pk)?.map(|v| v.to_vec()).unwrap_or_default();
                for e in add.chunks(24) {
                    if v.chunks(24).any(|x| x[..16] == e[..16]) {
                        return Err(ConflictableTransactionError::Abort(()));
                    }
                }
                v.extend_from_slice(add);
                dd.insert(pk.as_slice(), v)?;
            }
            ev.insert(&(start + 1).to_be_bytes()[..], chunk.as_slice())?;
            Ok(())
        });
        res.unwrap();
        return payload;
    }
    let res: Result<(), TransactionError<()>> = (ev, dd).transaction(|(ev, dd)| {
        for (j, (i, r)) in recs.iter().enumerate() {
            if dd.get(&dkeys[j])?.is_some() {
                return Err(ConflictableTransactionError::Abort(()));
            }
            let seq = (i + 1).to_be_bytes();
            if layout == "L1" {
                let mut v = [0u8; 16];
                v[..8].copy_from_slice(&seq);
                v[8..].copy_from_slice(&ts(*i).to_be_bytes());
                dd.insert(dkeys[j].as_slice(), &v[..])?;
                ev.insert(&seq[..], r.as_slice())?;
            } else {
                dd.insert(dkeys[j].as_slice(), &seq[..])?;
            }
        }
        if let Some(c) = &chunk {
            ev.insert(&(start + 1).to_be_bytes()[..], c.as_slice())?;
        }
        Ok(())
    });
    res.unwrap();
    payload
}

/// A counter of `/proc/self/io` (`wchar`: bytes handed to write calls; `write_bytes`: bytes
/// that reached the block device).
fn proc_io(field: &str) -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap();
    io.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(": "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `txsize <dir> <values> <values per transaction> [value bytes] [segment bytes]`: sled alone, written as
/// hookgate's committer writes (a transaction over an `events` and a `meta` tree, then
/// `flush`): `values` values of `value bytes` (default 6,000) under ascending 8-byte keys, plus
/// two small `meta` values per transaction. Prints the data dir and the bytes written against
/// the values' bytes, to see what the size of a transaction does to sled's space.
fn txsize(a: &[String]) {
    let dir = a[0].as_str();
    let total: u64 = a[1].parse().unwrap();
    let per: u64 = a[2].parse().unwrap();
    let vlen: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(6000);
    let segment: usize = a.get(4).map_or(512 * 1024, |s| s.parse().unwrap());
    let db = open(dir, segment, 32 << 20);
    let ev = db.open_tree("events").unwrap();
    let mt = db.open_tree("meta").unwrap();
    let (wchar, block) = (proc_io("wchar"), proc_io("write_bytes"));
    let t = Instant::now();
    let value = vec![7u8; vlen];
    let mut k = 0u64;
    while k < total {
        (&ev, &mt)
            .transaction(|(ev, mt)| {
                for i in k..(k + per).min(total) {
                    ev.insert(&i.to_be_bytes(), value.as_slice())?;
                }
                mt.insert(b"next", &(k + per).to_be_bytes())?;
                mt.insert(b"live", &k.to_be_bytes())?;
                Ok::<_, ConflictableTransactionError<()>>(())
            })
            .unwrap();
        db.flush().unwrap();
        k += per;
    }
    let took = t.elapsed();
    let (wchar, block) = (proc_io("wchar") - wchar, proc_io("write_bytes") - block);
    drop((ev, mt));
    drop(db);
    let payload = (total * vlen as u64) as f64;
    println!(
        "{total} values of {vlen} B, {per} a transaction, segments of {segment} B: {:.1} s; data dir {:.2} x the values, \
         written {:.2} x (write calls), {:.2} x (block device)",
        took.as_secs_f64(),
        du(dir) as f64 / payload,
        wchar as f64 / payload,
        block as f64 / payload
    );
}

/// `firstwrite <dir> <values> [segment bytes]`: fills sled with `values` values of 6,000 bytes
/// (200 a transaction) in segments of that size (default 512 KiB), closes it, opens it
/// again and times the open, then 400 writes of one value, each flushed (2.4 MB: sled rolls into
/// new segments, for which a writer needs its `SegmentAccountant`). sled's first write after an
/// open deactivates every segment of the log at once (`SegmentAccountant::stabilize`), on the io
/// thread that wrote it, after the flush has returned; each deactivation counts the free and
/// inactive segments over all of them, so that pass is quadratic in the segment count, and a
/// write that needs the accountant meanwhile waits for it.
fn firstwrite(a: &[String]) {
    let dir = a[0].as_str();
    let total: u64 = a[1].parse().unwrap();
    let segment: usize = a.get(2).map_or(512 * 1024, |s| s.parse().unwrap());
    let value = vec![7u8; 6000];
    {
        let db = open(dir, segment, 32 << 20);
        let ev = db.open_tree("events").unwrap();
        for start in (0..total).step_by(200) {
            let mut batch = sled::Batch::default();
            for i in start..(start + 200).min(total) {
                batch.insert(&i.to_be_bytes(), value.as_slice());
            }
            ev.apply_batch(batch).unwrap();
        }
        db.flush().unwrap();
    }
    // Once more, so that the open below reads a snapshot and replays little.
    drop(open(dir, segment, 32 << 20));
    let t = Instant::now();
    let db = open(dir, segment, 32 << 20);
    let opened = t.elapsed();
    let ev = db.open_tree("events").unwrap();
    let started = Instant::now();
    let mut slowest = (0, std::time::Duration::ZERO);
    for i in 0..400u64 {
        let t = Instant::now();
        ev.insert(&(total + i).to_be_bytes(), value.as_slice())
            .unwrap();
        db.flush().unwrap();
        if t.elapsed() > slowest.1 {
            slowest = (i, t.elapsed());
        }
    }
    let size = du(dir);
    println!(
        "{total} values ({} MB, {} segments of {segment} bytes): open {:.3} s; 400 writes after \
         it {:.3} s, the slowest (write {}) {:.3} s",
        size / 1_000_000,
        size / segment as u64,
        opened.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        slowest.0,
        slowest.1.as_secs_f64()
    );
}

/// The log of recent claims after a run is sealed: `values` values of `value_bytes` (one per
/// committed batch, beside `events_per_value` 1 KiB events in `events`), removed `step` at a
/// time (each step's values read first) from the log's front, as hookgate did; the same from
/// the key after the last one removed; and a third such log dropped whole with `Db::drop_tree`.
fn logdrop(a: &[String]) {
    let dir = a[0].as_str();
    let values: u64 = a[1].parse().unwrap();
    let value_bytes: usize = a.get(2).map_or(1100, |s| s.parse().unwrap());
    let events_per_value: u64 = a.get(3).map_or(17, |s| s.parse().unwrap());
    let step: usize = a.get(4).map_or(256, |s| s.parse().unwrap());
    let db = open(dir, 2 << 20, 32 << 20);
    let events = db.open_tree("events").unwrap();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut fill = |log: &sled::Tree, first: u64| {
        for i in first..first + values {
            let mut value = vec![0u8; value_bytes];
            rng.fill(value.as_mut_slice());
            let mut event = vec![0u8; 1024 * events_per_value as usize];
            rng.fill(event.as_mut_slice());
            events.insert(i.to_be_bytes(), event).unwrap();
            log.insert(i.to_be_bytes(), value).unwrap();
        }
        db.flush().unwrap();
    };
    let front = db.open_tree("log_front").unwrap();
    let cursor = db.open_tree("log_cursor").unwrap();
    let dropped = db.open_tree("log_dropped").unwrap();
    fill(&front, 0);
    fill(&cursor, values);
    fill(&dropped, 2 * values);
    drop(dropped);

    let trim = |log: &sled::Tree, from_cursor: bool| {
        let t = Instant::now();
        let mut slowest = std::time::Duration::ZERO;
        let mut after: Option<sled::IVec> = None;
        loop {
            let started = Instant::now();
            let range = match (&after, from_cursor) {
                (Some(key), true) => log.range::<&[u8], _>((
                    std::ops::Bound::Excluded(key.as_ref()),
                    std::ops::Bound::Unbounded,
                )),
                _ => log.range::<&[u8], _>(..),
            };
            let taken: Vec<(sled::IVec, sled::IVec)> =
                range.take(step).collect::<Result<_, _>>().unwrap();
            let Some((last, _)) = taken.last() else {
                break;
            };
            after = Some(last.clone());
            let mut batch = sled::Batch::default();
            for (key, _) in &taken {
                batch.remove(key);
            }
            log.apply_batch(batch).unwrap();
            slowest = slowest.max(started.elapsed());
        }
        let took = t.elapsed();
        format!(
            "{:.1} ms ({:.2} us a value, slowest step {:.2} ms)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / values as f64,
            slowest.as_secs_f64() * 1e3
        )
    };
    let from_front = trim(&front, false);
    let from_cursor = trim(&cursor, true);
    db.flush().unwrap();

    let t = Instant::now();
    assert!(db.drop_tree("log_dropped").unwrap());
    let drop_time = t.elapsed();
    let t = Instant::now();
    db.flush().unwrap();
    let drop_flush = t.elapsed();
    println!(
        "{values} log values of {value_bytes} bytes, removed {step} a step: from the front \
         {from_front}; from the last removed {from_cursor}; dropped whole in {:.1} ms ({:.2} us a \
         value, flush after {:.1} ms)",
        drop_time.as_secs_f64() * 1e3,
        drop_time.as_secs_f64() * 1e6 / values as f64,
        drop_flush.as_secs_f64() * 1e3,
    );
}

fn main() {
    #[allow(non_snake_case)]
    let BATCH: u64 = chunk_len();
    let a: Vec<String> = std::env::args().collect();
    match a[1].as_str() {
        "txsize" => return txsize(&a[2..]),
        "firstwrite" => return firstwrite(&a[2..]),
        "logdrop" => return logdrop(&a[2..]),
        _ => {}
    }
    let cmd = a[1].as_str();
    let layout = a[2].as_str();
    let dir = a[3].as_str();
    let n: u64 = a[4].parse().unwrap();
    let seg: usize = a.get(5).map(|s| s.parse().unwrap()).unwrap_or(512 * 1024);
    let cache: u64 = a.get(6).map(|s| s.parse().unwrap()).unwrap_or(32 << 20);
    match cmd {
        "fill" => {
            let t = Instant::now();
            let db = open(dir, seg, cache);
            let ev = db.open_tree("events").unwrap();
            let dd = db.open_tree("dedup").unwrap();
            let mut rng = SmallRng::seed_from_u64(1);
            let mut payload = 0u64;
            let mut i = 0u64;
            let mut last = Instant::now();
            let c = if layout == "L1" {
                TX_EVENTS
            } else {
                chunk_len()
            };
            while i < n {
                let end = (i + TX_EVENTS).min(n);
                let mut s = i;
                while s < end {
                    let e = (s + c).min(end);
                    payload += write_batch(layout, &ev, &dd, s, e, &mut rng);
                    s = e;
                }
                db.flush().unwrap();
                i = end;
                if last.elapsed().as_secs() >= 30 {
                    last = Instant::now();
                    eprintln!(
                        "  progress {} ev {:.0}s {} du={}",
                        i,
                        t.elapsed().as_secs_f64(),
                        rss(),
                        du(dir)
                    );
                }
            }
            let el = t.elapsed().as_secs_f64();
            let d = du(dir);
            println!(
                "FILL {} n={} seg={} {:.1}s rate={:.0} ev/s {} payload={} du={} ratio={:.2} [{}]",
                layout,
                n,
                seg,
                el,
                n as f64 / el,
                rss(),
                payload,
                d,
                d as f64 / payload as f64,
                du_detail(dir)
            );
            drop((ev, dd));
            let t2 = Instant::now();
            drop(db);
            println!(
                "  drop(db) took {:.2}s; du after drop={}",
                t2.elapsed().as_secs_f64(),
                du(dir)
            );
        }
        "reopen" => {
            let k: u32 = a.get(7).map(|s| s.parse().unwrap()).unwrap_or(24);
            let t = Instant::now();
            let db = open(dir, seg, cache);
            let ev = db.open_tree("events").unwrap();
            let dd = db.open_tree("dedup").unwrap();
            let got = ev.get(&1u64.to_be_bytes()[..]).unwrap().is_some();
            let ro = t.elapsed().as_secs_f64();
            println!(
                "REOPEN {} n={} open+get={:.3}s found={} {}",
                layout,
                n,
                ro,
                got,
                rss()
            );
            let mut rng = SmallRng::seed_from_u64(7);
            let t = Instant::now();
            let mut hits = 0;
            for _ in 0..100_000 {
                let i = rng.gen_range(0..n);
                let hit = if layout == "L4" {
                    l4_has(&dd, bucket(ts(i)), &hash16(&dedup_key_full(i)))
                } else {
                    dd.get(dedup_key(layout, i)).unwrap().is_some()
                };
                if hit {
                    hits += 1;
                }
            }
            let el = t.elapsed().as_secs_f64();
            println!(
                "  100k random dedup hit lookups {:.2}s ({:.1} us/op) hits={} {}",
                el,
                el * 1e6 / 1e5,
                hits,
                rss()
            );
            // misses
            let t = Instant::now();
            let mut probes = 0u64;
            for m in 0..100_000u64 {
                let i = n + 10_000_000 + m; // never inserted
                if layout == "L4" {
                    let h = hash16(&dedup_key_full(i));
                    let newest = bucket(ts(n - 1));
                    for b in 0..k {
                        probes += 1;
                        assert!(!l4_has(&dd, newest - b, &h));
                    }
                } else if layout == "L3" {
                    let h = hash16(&dedup_key_full(i));
                    let newest = bucket(ts(n - 1));
                    for b in 0..k {
                        let mut key = (newest - b).to_be_bytes().to_vec();
                        key.extend_from_slice(&h);
                        probes += 1;
                        assert!(dd.get(key).unwrap().is_none());
                    }
                } else {
                    probes += 1;
                    assert!(dd.get(dedup_key(layout, i)).unwrap().is_none());
                }
            }
            let el = t.elapsed().as_secs_f64();
            println!(
                "  100k dedup misses ({} probes, k={}) {:.2}s ({:.1} us/miss) {}",
                probes,
                if layout == "L3" || layout == "L4" {
                    k
                } else {
                    1
                },
                el,
                el * 1e6 / 1e5,
                rss()
            );
            // random event reads
            let t = Instant::now();
            for _ in 0..100_000 {
                let i = rng.gen_range(0..n);
                if layout == "L1" {
                    ev.get(&(i + 1).to_be_bytes()[..]).unwrap().unwrap();
                } else {
                    let first = i / BATCH * BATCH + 1;
                    ev.get(&first.to_be_bytes()[..]).unwrap().unwrap();
                }
            }
            println!(
                "  100k random event reads {:.2}s {}",
                t.elapsed().as_secs_f64(),
                rss()
            );
            let t2 = Instant::now();
            drop((ev, dd));
            drop(db);
            println!("  drop {:.2}s", t2.elapsed().as_secs_f64());
        }
        "retain" => {
            // delete oldest 90% of events + their dedup keys, then keep inserting+flushing
            let extra_batches: u64 = a.get(7).map(|s| s.parse().unwrap()).unwrap_or(100_000);
            let every: u64 = a.get(8).map(|s| s.parse().unwrap()).unwrap_or(2000);
            let db = open(dir, seg, cache);
            let ev = db.open_tree("events").unwrap();
            let dd = db.open_tree("dedup").unwrap();
            let cut = n * 9 / 10 / BATCH * BATCH; // events [0,cut) are deleted
            let t = Instant::now();
            // events/chunks
            let mut i = 0;
            while i < cut {
                let end = (i + BATCH * 64).min(cut);
                let mut b = sled::Batch::default();
                let mut bd = sled::Batch::default();
                if layout == "L1" {
                    for j in i..end {
                        b.remove(&(j + 1).to_be_bytes()[..]);
                    }
                } else {
                    let mut j = i;
                    while j < end {
                        b.remove(&(j + 1).to_be_bytes()[..]);
                        j += BATCH;
                    }
                }
                if layout != "L3" && layout != "L4" {
                    for j in i..end {
                        bd.remove(dedup_key(layout, j));
                    }
                }
                ev.apply_batch(b).unwrap();
                dd.apply_batch(bd).unwrap();
                db.flush().unwrap();
                i = end;
            }
            if layout == "L3" || layout == "L4" {
                // range delete of expired buckets: all buckets strictly before bucket(ts(cut))
                let lim = bucket(ts(cut)).to_be_bytes();
                let mut nd = 0;
                loop {
                    let keys: Vec<_> = dd
                        .range(..&lim[..])
                        .keys()
                        .take(4096)
                        .map(|k| k.unwrap())
                        .collect();
                    if keys.is_empty() {
                        break;
                    }
                    let mut bd = sled::Batch::default();
                    for k in keys {
                        bd.remove(k);
                        nd += 1;
                    }
                    dd.apply_batch(bd).unwrap();
                    db.flush().unwrap();
                }
                println!("  L3 range-deleted {} dedup keys", nd);
            }
            let kept_payload = (n - cut) * 1124;
            let d = du(dir);
            println!(
                "RETAIN {} deleted {} events in {:.1}s; kept~{} du={} ratio={:.2} {} [{}]",
                layout,
                cut,
                t.elapsed().as_secs_f64(),
                kept_payload,
                d,
                d as f64 / kept_payload as f64,
                rss(),
                du_detail(dir)
            );
            // keep inserting with retention: keep size constant by deleting the oldest batch per new batch
            let mut rng = SmallRng::seed_from_u64(99);
            let mut next = n;
            let mut oldest = cut;
            let t = Instant::now();
            for b in 0..extra_batches {
                write_batch(layout, &ev, &dd, next, next + BATCH, &mut rng);
                next += BATCH;
                // retention: delete oldest batch too (steady state)
                if layout == "L1" {
                    for j in oldest..oldest + BATCH {
                        ev.remove(&(j + 1).to_be_bytes()[..]).unwrap();
                        dd.remove(dedup_key(layout, j)).unwrap();
                    }
                } else {
                    ev.remove(&(oldest + 1).to_be_bytes()[..]).unwrap();
                    if layout == "L2" {
                        for j in oldest..oldest + BATCH {
                            dd.remove(dedup_key(layout, j)).unwrap();
                        }
                    } else {
                        // L3/L4: when `oldest` crosses into a new hour, range-delete the expired bucket
                        let (b0, b1) = (bucket(ts(oldest)), bucket(ts(oldest + BATCH)));
                        if b1 != b0 {
                            let lo = b0.to_be_bytes();
                            let hi = b1.to_be_bytes();
                            let mut bd = sled::Batch::default();
                            for k in dd.range(&lo[..]..&hi[..]).keys() {
                                bd.remove(k.unwrap());
                            }
                            dd.apply_batch(bd).unwrap();
                        }
                    }
                }
                oldest += BATCH;
                db.flush().unwrap();
                if (b + 1) % every == 0 {
                    let d = du(dir);
                    println!(
                        "  +{} batches ({} ev written) {:.0}s du={} ratio={:.2} {} [{}]",
                        b + 1,
                        (b + 1) * BATCH,
                        t.elapsed().as_secs_f64(),
                        d,
                        d as f64 / kept_payload as f64,
                        rss(),
                        du_detail(dir)
                    );
                }
            }
        }
        _ => panic!("unknown cmd"),
    }
}
