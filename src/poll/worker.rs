//! One provider's polling loop: set the cursor once, then every `interval` (or when woken) a
//! round of at most `max_pages_per_round` pages; on failure, back off (at least what
//! `Retry-After` asks) without moving the cursor.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::page::{self, Page};
use super::{now_ms, Poller};
use crate::config::SyncAuth;
use crate::event::Seq;
use crate::metrics::{PollErrorLabels, ProviderLabels};
use crate::response_body::read_at_most;
use crate::store::{Committed, NewEvent, StoreError};

/// Items of a page committed at once (the committer batches them).
const COMMIT_CHUNK: usize = 1_000;
/// How long an item may wait for the committer.
const COMMIT_DEADLINE: Duration = Duration::from_secs(30);
/// The longest back-off, unless the interval is longer.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// How much of a malformed page the log shows.
const LOGGED_BYTES: usize = 200;
/// Events read per step while looking for the highest id received.
const SCAN_BATCH: usize = 1000;

/// Why a round stopped early.
#[derive(Debug)]
struct Failure {
    /// The `kind` label of `hookgate_poll_errors_total`.
    kind: &'static str,
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(kind: &'static str, message: String) -> Failure {
        Failure {
            kind,
            message,
            retry_after: None,
        }
    }

    fn store(err: StoreError) -> Failure {
        Failure::new("store", format!("the store failed: {err}"))
    }
}

/// The cursor as persisted under `sync/{provider}` in `meta`, with the items stored from the
/// pages last fetched (see [`round`]), each by its [`seen_key`].
#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    cursor: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen_keys: Vec<String>,
    /// The ids themselves, as cursors stored before `seen_keys` hold them (read, not written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    seen: Vec<String>,
}

impl Persisted {
    /// The keys of the items seen from the cursor, those of ids stored before keys included.
    fn seen_keys(&mut self) -> Vec<String> {
        let mut keys = std::mem::take(&mut self.seen_keys);
        keys.extend(self.seen.iter().map(|id| seen_key(id)));
        keys
    }
}

/// What an item seen is remembered by: 12 characters of its id's SHA-256, so that as many
/// items fit the store's bound on a cursor whatever their ids (the ids themselves, 600 UUIDs in
/// sled's 24 KiB, left most of a last page of 1,000 out, and those were stored and delivered
/// again once their dedup keys expired). 72 bits: two of 10,000 ids collide once in ~10^14.
fn seen_key(id: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..9])
}

/// Items kept in [`Persisted::seen_keys`], at most (the newest): ~150 KB, well under the NATS
/// servers' `max_payload` (1 MiB by default), or every write of the cursor would fail.
const MAX_SEEN: usize = 10_000;
/// Polls until `stop` (the end of this gateway's lease on the poller, or shutdown).
pub(super) async fn run(poller: Arc<Poller>, stop: CancellationToken) {
    let provider = poller.provider.to_string();
    tracing::info!(provider, url = %crate::shown_url::shown(&poller.config.url), "Poller started.");
    // Read the durable cursor again at the first round: another gateway may have moved it
    // since this one last held the lease.
    poller.update(|s| {
        s.polling_here = true;
        s.cursor_set = false;
    });
    poller.metrics.poll_started(&provider);
    let mut failures: u32 = 0;
    loop {
        poller.update(|s| s.running = true);
        poller.rounds.send_modify(|(started, _)| *started += 1);
        // Stopping abandons a round at once: its page's cursor has not moved, so the page is
        // fetched again after a restart and its items already stored are duplicates.
        let outcome = tokio::select! {
            _ = stop.cancelled() => break,
            outcome = async {
                let _round = poller.round_lock.lock().await;
                // Each round reads the durable cursor: an operator may have set it, through
                // this gateway or (on JetStream) another one.
                poller.update(|s| s.cursor_set = false);
                round(&poller, &stop).await
            } => outcome,
        };
        let now = now_ms();
        let wait = match outcome {
            Ok(()) => {
                failures = 0;
                poller.metrics.poll_succeeded(&provider);
                poller.update(|s| s.last_success_ms = Some(now));
                poller.config.interval
            }
            Err(failure) => {
                failures = failures.saturating_add(1);
                poller
                    .metrics
                    .poll_errors
                    .get_or_create(&PollErrorLabels {
                        provider: provider.clone(),
                        kind: failure.kind.to_string(),
                    })
                    .inc();
                let wait = backoff(failures, poller.config.interval, failure.retry_after);
                tracing::warn!(provider, kind = failure.kind, error = %failure.message, retry_in_ms = wait.as_millis() as u64, "Poll failed; the cursor stays.");
                poller.update(|s| {
                    s.last_error_ms = Some(now);
                    s.last_error = Some(failure.message);
                    // After a store's failure (a cursor moved by another gateway, a write whose
                    // outcome is unknown), the next round reads the durable cursor again.
                    s.cursor_set &= failure.kind != "store";
                });
                wait
            }
        };
        poller.update(|s| {
            s.running = false;
            s.rounds += 1;
        });
        poller.rounds.send_modify(|(_, finished)| *finished += 1);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
            _ = poller.wake.notified() => {}
        }
    }
    poller.update(|s| {
        s.polling_here = false;
        s.running = false;
    });
    // A round cut short ended too: `poll_now` waits for one started after its request.
    poller
        .rounds
        .send_modify(|(started, finished)| *finished = *started);
    poller.metrics.poll_stopped(&provider);
    tracing::info!(provider, "Poller stopped.");
}

/// The wait after `failures` failures in a row: the interval, doubling, capped, and at least
/// what the API asked for.
pub fn backoff(failures: u32, interval: Duration, retry_after: Option<Duration>) -> Duration {
    let doubled = interval.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let capped = doubled.min(MAX_BACKOFF.max(interval));
    retry_after.map_or(capped, |asked| capped.max(asked))
}

/// One round: pages from the cursor until the API has no more, or the round's page budget is
/// spent, or the poller is stopped.
async fn round(poller: &Poller, stop: &CancellationToken) -> Result<(), Failure> {
    let mut cursor = cursor(poller).await?;
    for _ in 0..poller.config.max_pages_per_round {
        if stop.is_cancelled() {
            break;
        }
        // A cursor stored before next URLs were checked may point elsewhere: checked again.
        let url = page::request_url(&poller.config, cursor.as_deref()).map_err(cross_origin)?;
        let (body, content_type) = fetch(poller, url).await?;
        let page = page::parse(&poller.config, &body).map_err(|message| {
            let start = String::from_utf8_lossy(&body[..body.len().min(LOGGED_BYTES)]).into_owned();
            Failure::new(
                "malformed",
                format!("malformed page ({message}); it starts with {start:?}"),
            )
        })?;
        if let Some(first) = page.without_id.first() {
            let message = format!(
                "{} item(s) skipped, with no id at {:?} (the first: item #{first} of the page)",
                page.without_id.len(),
                poller.config.item_id
            );
            tracing::error!(provider = %poller.provider, skipped = page.without_id.len(), item_id = %poller.config.item_id, "Polled items without an id; skipped (nothing could deduplicate them).");
            skipped(poller, "item_without_id", message);
        }
        // Items this cursor's pages gave before are stored already: a last page fetched again
        // every round (next_pointer), an item at an inclusive cursor that is no number, an API
        // that ignores the cursor. Committed again, each was a duplicate only while its dedup
        // key lived, then stored and delivered again, every dedup_window.
        let seen = poller.status().seen;
        let known: HashSet<&str> = seen.iter().map(String::as_str).collect();
        let fresh: Vec<&page::Item> = page
            .items
            .iter()
            .filter(|item| !known.contains(seen_key(item.id.as_str()).as_str()))
            .collect();
        count_items(poller, page.items.len());
        commit(poller, &fresh, content_type).await?;
        let next = page::next_cursor(&poller.config, cursor.as_deref(), &page);
        // The page's items are stored; a next URL elsewhere ends the chain here: the cursor
        // stays, and the page's ids are seen from it (fetched again every round, they were
        // committed again, and stored again once their dedup keys expired).
        let next_url = page::cursor_url(&poller.config, next.as_deref());
        let refused = page::check_origin(&poller.config, next_url.as_ref()).err();
        let next = if refused.is_some() {
            cursor.clone()
        } else {
            next
        };
        let more = page::has_more(&poller.config, &page, cursor.as_deref(), next.as_deref());
        let seen_after = seen_after(&seen, next == cursor, &page);
        // As it will be stored (the oldest left out past the store's bound): compared so, a
        // page fetched again every round rewrote the cursor every round.
        let (_, seen_after) =
            persisted(next.clone(), seen_after, poller.store.largest_sync_cursor())
                .map_err(|err| Failure::new("store", err.to_string()))?;
        if next != cursor || seen_after != *seen {
            save_cursor(poller, next.clone(), seen_after).await?;
            cursor = next;
        }
        if let Some(message) = refused {
            return Err(cross_origin(message));
        }
        if !more {
            break;
        }
    }
    Ok(())
}

/// The keys of the items seen from the next request's cursor: this page's, after those seen
/// before when the cursor stays (the newest [`MAX_SEEN`]).
fn seen_after(seen: &[String], cursor_stays: bool, page: &Page) -> Vec<String> {
    let before = if cursor_stays { seen } else { &[] };
    // Those this page gives again go last, in the page's order, as the newest: a page fetched
    // again every round keeps the same ids when not all of them fit.
    let page_keys: Vec<String> = page
        .items
        .iter()
        .map(|item| seen_key(item.id.as_str()))
        .collect();
    let on_page: HashSet<&str> = page_keys.iter().map(String::as_str).collect();
    let mut after: Vec<String> = before
        .iter()
        .filter(|key| !on_page.contains(key.as_str()))
        .cloned()
        .collect();
    let mut known: HashSet<String> = after.iter().cloned().collect();
    for key in page_keys {
        if known.insert(key.clone()) {
            after.push(key);
        }
    }
    let excess = after.len().saturating_sub(MAX_SEEN);
    after.drain(..excess);
    after
}

/// A next page the poller refuses to follow (see [`page::check_origin`]).
fn cross_origin(message: String) -> Failure {
    Failure::new("cross_origin", message)
}

/// Counts a page and its items.
fn count_items(poller: &Poller, items: usize) {
    let labels = ProviderLabels {
        provider: poller.provider.to_string(),
    };
    poller.metrics.poll_pages.get_or_create(&labels).inc();
    poller
        .metrics
        .poll_items
        .get_or_create(&labels)
        .inc_by(items as u64);
}

/// Commits the items of a page, all at once (the committer batches them), and returns once all
/// are durable. Any failure fails the page: its cursor does not move.
async fn commit(
    poller: &Poller,
    items: &[&page::Item],
    content_type: Option<String>,
) -> Result<(), Failure> {
    let labels = ProviderLabels {
        provider: poller.provider.to_string(),
    };
    let mut new = 0;
    // A chunk at a time: a page of millions of tiny items was millions of commits at once.
    for chunk in items.chunks(COMMIT_CHUNK) {
        let commits = chunk.iter().map(|item| {
            let event = NewEvent::poll(
                poller.provider.clone(),
                item.id.clone(),
                content_type.clone(),
                item.body.clone(),
            );
            poller.store.commit(event, COMMIT_DEADLINE)
        });
        let results = futures_util::future::join_all(commits).await;
        let (stored, outcome) = count_committed(poller, chunk, results);
        new += stored;
        if outcome.is_err() {
            // Those stored before the failure count: fetched again, they are duplicates.
            poller
                .metrics
                .poll_items_new
                .get_or_create(&labels)
                .inc_by(new);
            return outcome;
        }
    }
    poller
        .metrics
        .poll_items_new
        .get_or_create(&labels)
        .inc_by(new);
    if new > 0 {
        tracing::info!(provider = %poller.provider, new, items = items.len(), "Gaps filled from the sync API.");
    }
    Ok(())
}

/// How many of `items`' commits stored a new event, and the first failure, but for an item the
/// store cannot take (skipped, said).
fn count_committed(
    poller: &Poller,
    items: &[&page::Item],
    results: Vec<Result<Committed, StoreError>>,
) -> (u64, Result<(), Failure>) {
    let mut new = 0;
    let mut outcome = Ok(());
    for (item, result) in items.iter().zip(results) {
        match result {
            Ok(Committed::Accepted(seq)) => {
                new += 1;
                tracing::debug!(provider = %poller.provider, event_id = %item.id, seq = %seq, "Gap filled from the sync API.");
            }
            Ok(Committed::Duplicate(_)) => {}
            // Larger than the store takes (JetStream's `max_payload`): it never will be, and
            // failing the page would hold the cursor on it for ever, every later item with it.
            // The same body sent as a webhook is answered 413.
            Err(StoreError::TooLarge { bytes, max }) => refused(poller, item, bytes, max),
            Err(err) => {
                if outcome.is_ok() {
                    outcome = Err(Failure::store(err));
                }
            }
        }
    }
    (new, outcome)
}

/// An item the store cannot take, skipped: said in the log and by [`skipped`].
fn refused(poller: &Poller, item: &page::Item, bytes: usize, max: usize) {
    let message = format!(
        "item {} skipped: {bytes} bytes, over the {max} the store takes",
        item.id
    );
    tracing::error!(provider = %poller.provider, event_id = %item.id, bytes, max, "A polled item is larger than the store takes; skipped (the NATS servers' max_payload bounds it).");
    skipped(poller, "too_large", message);
}

/// Items skipped (the round goes on): counted in `hookgate_poll_errors_total{kind}` and shown as
/// the poller's last error.
fn skipped(poller: &Poller, kind: &str, message: String) {
    poller
        .metrics
        .poll_errors
        .get_or_create(&PollErrorLabels {
            provider: poller.provider.to_string(),
            kind: kind.to_string(),
        })
        .inc();
    poller.update(|s| {
        s.last_error_ms = Some(now_ms());
        s.last_error = Some(message);
    });
}

/// GETs one page, with the configured authentication; a 401 with an OAuth token fetches a new
/// token and tries once more.
async fn fetch(poller: &Poller, url: url::Url) -> Result<(Bytes, Option<String>), Failure> {
    let mut retried = false;
    loop {
        let mut request = poller.http.get(url.clone());
        request = match &poller.config.auth {
            SyncAuth::None => request,
            SyncAuth::Basic { user, password } => {
                request.basic_auth(user, Some(String::from_utf8_lossy(password.expose())))
            }
            SyncAuth::Header { name, value } => {
                request.header(name.as_str(), sensitive(value.expose())?)
            }
            SyncAuth::OAuth { .. } => {
                let token = match &poller.token {
                    Some(source) => source.bearer().await.map_err(|m| Failure::new("auth", m))?,
                    None => return Err(Failure::new("auth", "no token source".into())),
                };
                request.bearer_auth(token)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|err| Failure::new("transport", describe(err)))?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED && !retried {
            if let Some(source) = &poller.token {
                source.invalidate().await;
                retried = true;
                continue;
            }
        }
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            let kind = match status {
                StatusCode::TOO_MANY_REQUESTS => "rate_limited",
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => "auth",
                _ => "status",
            };
            return Err(Failure {
                kind,
                message: format!("the sync API answered {status}"),
                retry_after,
            });
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let most = poller.config.max_page_bytes;
        return Ok((read_body(response, most).await?, content_type));
    }
}

/// The body, at most `most` bytes.
async fn read_body(response: reqwest::Response, most: usize) -> Result<Bytes, Failure> {
    let body = read_at_most(response, most)
        .await
        .map_err(|err| Failure::new("transport", describe(err)))?;
    if !body.whole {
        return Err(Failure::new(
            "page_too_large",
            format!("page larger than {most} bytes: set page_size if the API takes one, or raise max_page_bytes"),
        ));
    }
    Ok(body.bytes)
}

/// A credential as a header value, marked sensitive (as `basic_auth` and `bearer_auth` mark
/// theirs): left out of the client's debug output, never indexed by HTTP/2's header compression.
fn sensitive(value: &[u8]) -> Result<reqwest::header::HeaderValue, Failure> {
    let mut value = reqwest::header::HeaderValue::from_bytes(value).map_err(|_| {
        Failure::new(
            "auth",
            "the auth header's value is no valid header value".into(),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// A transport error with its causes (reqwest's `Display` hides them).
/// Without the URL, which may carry the sync API's credential (a key in its query).
fn describe(err: reqwest::Error) -> String {
    let err = err.without_url();
    let chain = crate::error_chain::error_chain(&err);
    if err.is_timeout() {
        format!("timed out: {chain}")
    } else {
        chain
    }
}

/// `Retry-After`, capped at an hour for a poll.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    crate::retry_after::parse(value, now).map(|wait| wait.min(Duration::from_secs(3600)))
}

/// The cursor, from `meta`; on the very first round, set once and persisted.
async fn cursor(poller: &Poller) -> Result<Option<String>, Failure> {
    let status = poller.status();
    if status.cursor_set {
        return Ok(status.cursor);
    }
    let store = poller.store.clone();
    let provider = poller.provider.to_string();
    let start = poller.config.start_cursor.clone();
    // In next_pointer mode a cursor is the API's page token: no event id stands for one.
    let highest_id_mode = match poller.config.next {
        crate::config::NextCursor::HighestId { inclusive } => Some(inclusive),
        crate::config::NextCursor::Pointer(_) => None,
    };
    let lookup = async {
        if let Some(value) = store.sync_cursor(&provider).await? {
            let mut persisted: Persisted = serde_json::from_slice(&value)
                .map_err(|err| StoreError::Corrupt(format!("sync cursor: {err}")))?;
            let seen = persisted.seen_keys();
            return Ok::<_, StoreError>((Some((persisted.cursor, seen)), None));
        }
        // After the highest id received, that id counts as seen: from an exclusive cursor an
        // API that answers from the cursor on gives it again.
        let initial = match (start, highest_id_mode) {
            (Some(start), _) => (Some(start), Vec::new()),
            (None, Some(inclusive)) => match highest_event_id(&store, &provider).await? {
                Some(id) => (Some(page::after_id(&id, inclusive)), vec![seen_key(&id)]),
                None => (None, Vec::new()),
            },
            (None, None) => (None, Vec::new()),
        };
        Ok((None, Some(initial)))
    };
    let (persisted, initial) = lookup.await.map_err(Failure::store)?;
    let (cursor, seen) = match (persisted, initial) {
        (Some(persisted), _) => persisted,
        (None, Some((initial, seen))) => {
            tracing::info!(provider = %poller.provider, cursor = ?initial, "Sync cursor set for the first time.");
            save_cursor(poller, initial.clone(), seen.clone()).await?;
            (initial, seen)
        }
        (None, None) => (None, Vec::new()),
    };
    poller.update(|s| {
        s.cursor_set = true;
        s.cursor = cursor.clone();
        s.seen = Arc::new(seen);
    });
    set_cursor_gauge(poller, cursor.as_deref());
    Ok(cursor)
}

/// The highest event id the sender gave among those stored for `provider` (numbers compared as
/// numbers, above any text; ids hookgate made, as a body's hash, do not count).
async fn highest_event_id(
    store: &crate::store::Store,
    provider: &str,
) -> Result<Option<String>, StoreError> {
    let mut highest: Option<String> = None;
    let mut after = Seq(0);
    loop {
        let events = store
            .events_after(after, SCAN_BATCH, Some(provider.to_string()))
            .await?;
        for event in events
            .iter()
            .filter(|event| !crate::event::is_generated_id(&event.event_id))
        {
            let higher = highest.as_deref().is_none_or(|h| {
                page::compare_ids(&event.event_id, h) == std::cmp::Ordering::Greater
            });
            if higher {
                highest = Some(event.event_id.clone());
            }
        }
        match events.last() {
            Some(last) if !crate::store::read_to_end(&events, SCAN_BATCH) => after = Seq(last.seq),
            _ => return Ok(highest),
        }
    }
}

/// Persists the cursor and the ids `seen` from it (durably, through the group commit), then
/// shows it.
async fn save_cursor(
    poller: &Poller,
    cursor: Option<String>,
    seen: Vec<String>,
) -> Result<(), Failure> {
    let (value, seen) = persisted(cursor.clone(), seen, poller.store.largest_sync_cursor())
        .map_err(|err| Failure::new("store", err.to_string()))?;
    poller
        .store
        .set_sync_cursor(poller.provider.as_str(), value)
        .await
        .map_err(Failure::store)?;
    set_cursor_gauge(poller, cursor.as_deref());
    poller.update(|s| {
        s.cursor_set = true;
        s.cursor = cursor;
        s.seen = Arc::new(seen);
    });
    Ok(())
}

/// The cursor and the keys `seen` from it as stored, within `most` bytes: the oldest keys left
/// out as needed (sled takes 24 KiB, ~1,600 keys; 6 KiB in a store of 512 KiB segments: a
/// page of 5,000 items all kept made every write of the cursor fail, and the poller fetched
/// that page again for good). An item left out is stored again if the vendor gives it again,
/// a duplicate while its dedup key lives.
fn persisted(
    cursor: Option<String>,
    seen_keys: Vec<String>,
    most: usize,
) -> Result<(Vec<u8>, Vec<String>), serde_json::Error> {
    let mut persisted = Persisted {
        cursor,
        seen_keys,
        seen: Vec::new(),
    };
    loop {
        let value = serde_json::to_vec(&persisted)?;
        let keys = &mut persisted.seen_keys;
        if value.len() <= most || keys.is_empty() {
            return Ok((value, persisted.seen_keys));
        }
        // Each key takes its length, its quotes and a comma.
        let (mut over, mut dropped) = (value.len() - most, 0);
        while over > 0 && dropped < keys.len() {
            over = over.saturating_sub(keys[dropped].len() + 3);
            dropped += 1;
        }
        keys.drain(..dropped);
    }
}

/// An operator's cursor: written by compare-and-set against the value just read (on JetStream a
/// worker of another gateway then fails its next write, and reads this one), and read again by
/// the next round here.
pub(super) async fn set_cursor(poller: &Poller, cursor: Option<String>) -> Result<(), StoreError> {
    let provider = poller.provider.as_str();
    poller.store.sync_cursor(provider).await?;
    let value = serde_json::to_vec(&Persisted {
        cursor: cursor.clone(),
        ..Persisted::default()
    })
    .map_err(|err| StoreError::Corrupt(err.to_string()))?;
    poller.store.set_sync_cursor(provider, value).await?;
    tracing::info!(provider, cursor = ?cursor, "Sync cursor set by an operator.");
    // Not its gauge: only the gateway polling exports it, from the next round's read.
    poller.update(|s| {
        s.cursor_set = false;
        s.cursor = cursor;
        s.seen = Arc::default();
    });
    Ok(())
}

/// The cursor as a number (0: from the beginning); no series for one that is no number (a
/// next-page token: the 0 of the first round stayed while the tokens moved on).
fn set_cursor_gauge(poller: &Poller, cursor: Option<&str>) {
    let labels = ProviderLabels {
        provider: poller.provider.to_string(),
    };
    match cursor.map_or(Some(0.0), |c| c.parse::<f64>().ok()) {
        Some(value) => {
            poller.metrics.poll_cursor.get_or_create(&labels).set(value);
        }
        None => {
            poller.metrics.poll_cursor.remove(&labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page_of(ids: impl IntoIterator<Item = String>) -> Page {
        Page {
            items: ids
                .into_iter()
                .map(|id| page::Item {
                    id: crate::event::EventId::new(id).expect("id"),
                    body: bytes::Bytes::new(),
                })
                .collect(),
            without_id: Vec::new(),
            next: None,
        }
    }

    fn keys(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| seen_key(id)).collect()
    }

    #[test]
    fn a_cursor_is_stored_within_the_store_s_bound_the_oldest_keys_left_out() {
        let seen: Vec<String> = (0..5_000).map(|n| seen_key(&format!("id-{n}"))).collect();
        let cursor = Some("c".repeat(100));
        let (value, kept) = persisted(cursor.clone(), seen.clone(), 6 * 1024).unwrap();
        assert!(value.len() <= 6 * 1024, "{} bytes", value.len());
        assert!(value.len() > 6 * 1024 - 20, "{} bytes", value.len());
        assert_eq!(kept, seen[seen.len() - kept.len()..]);
        let stored: Persisted = serde_json::from_slice(&value).unwrap();
        assert_eq!((stored.cursor, stored.seen_keys), (cursor.clone(), kept));
        let (value, kept) = persisted(cursor.clone(), seen.clone(), 1 << 20).unwrap();
        assert_eq!(kept, seen);
        let all = Persisted {
            cursor,
            seen_keys: seen,
            seen: Vec::new(),
        };
        assert_eq!(value, serde_json::to_vec(&all).unwrap());
        // A cursor too long alone is left to the store to refuse.
        let (value, kept) = persisted(Some("c".repeat(100)), kept, 50).unwrap();
        assert!(kept.is_empty() && value.len() > 50);
    }

    /// A last page of 1,000 UUIDs is remembered whole in sled's 24 KiB (its ids were not: 600
    /// of them fit).
    #[test]
    fn a_page_of_a_thousand_uuids_fits_sled_s_bound() {
        let uuids = (0..1_000).map(|n| format!("{n:08x}-6b1c-4f0e-9a3d-2c5e8f7a1b4d"));
        let page = page_of(uuids);
        let (value, kept) = persisted(None, seen_after(&[], true, &page), 24 * 1024).unwrap();
        assert_eq!(kept.len(), 1_000, "{} bytes", value.len());
    }

    /// Cursors stored before keys list the ids themselves: read as their keys.
    #[test]
    fn a_cursor_stored_with_ids_is_read_as_their_keys() {
        let mut stored: Persisted =
            serde_json::from_str(r#"{"cursor": "c", "seen": ["a", "b"]}"#).unwrap();
        assert_eq!(stored.seen_keys(), keys(&["a", "b"]));
        let (value, _) = persisted(Some("c".into()), keys(&["a"]), 1 << 20).unwrap();
        let text = String::from_utf8(value).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"cursor":"c","seen_keys":["{}"]}}"#, seen_key("a"))
        );
    }

    #[test]
    fn the_items_seen_are_bounded_in_number_the_newest_kept() {
        let few = page_of(["a".to_string(), "b".to_string()]);
        assert_eq!(
            seen_after(&keys(&["z"]), true, &few),
            keys(&["z", "a", "b"])
        );
        assert_eq!(seen_after(&keys(&["z"]), false, &few), keys(&["a", "b"]));
        assert_eq!(seen_after(&keys(&["a"]), true, &few), keys(&["a", "b"]));
        // Given again, an item moves to the end, as the newest.
        assert_eq!(
            seen_after(&keys(&["b", "z"]), true, &few),
            keys(&["z", "a", "b"])
        );
        // A page fetched again whose items do not all fit keeps the same ones round after round.
        let page = page_of((0..2_000).map(|n| format!("id-{n:05}")));
        let (_, first) = persisted(None, seen_after(&[], true, &page), 6 * 1024).unwrap();
        let (_, again) = persisted(None, seen_after(&first, true, &page), 6 * 1024).unwrap();
        assert!(first.len() < 2_000);
        assert_eq!(first, again);
        let many = page_of((0..MAX_SEEN + 5).map(|n| n.to_string()));
        let kept = seen_after(&[], true, &many);
        assert_eq!(kept.len(), MAX_SEEN);
        assert_eq!(kept[0], seen_key("5"));
        // Long ids take no more room than short ones.
        let long = page_of((0..4_000).map(|n| format!("{n:0>200}")));
        let (value, kept) = persisted(None, seen_after(&[], true, &long), 1 << 20).unwrap();
        assert_eq!(kept.len(), 4_000);
        assert!(value.len() < 64 * 1024, "{} bytes", value.len());
    }

    #[test]
    fn backoff_doubles_from_the_interval_and_honours_retry_after() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(60), None), s(60));
        assert_eq!(backoff(3, s(60), None), s(240));
        assert_eq!(backoff(30, s(60), None), s(900));
        assert_eq!(backoff(30, s(3600), None), s(3600));
        assert_eq!(backoff(1, Duration::from_millis(200), Some(s(2))), s(2));
        assert_eq!(backoff(2, s(60), Some(s(1))), s(120));
    }

    #[test]
    fn retry_after_values() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("99999", now), Some(Duration::from_secs(3600)));
        // 2023-11-14T22:13:20Z is 1_700_000_000.
        assert_eq!(
            retry_after("Tue, 14 Nov 2023 22:13:30 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(retry_after("soon", now), None);
    }
}
