//! The destinations API: `GET /v1/destinations`, pause and resume, the recent errors, the dead
//! events and their replay.

use crate::event::Seq;
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{page_size, unavailable, Authorized};
use crate::forward::{DestinationView, Replayed};
use crate::http::{ApiError, AppState, Live};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/destinations", web::get().to(list))
        .route("/v1/destinations/{name}/pause", web::post().to(pause))
        .route("/v1/destinations/{name}/resume", web::post().to(resume))
        .route("/v1/errors", web::get().to(errors))
        .route("/v1/dead", web::get().to(dead))
        .route("/v1/dead/replay", web::post().to(replay_dead));
}

async fn list(_: Authorized, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let views = views(&state).await?;
    Ok(HttpResponse::Ok().json(json!({ "destinations": views })))
}

/// Every destination's queue depth, oldest pending age, counts and live state.
pub(in crate::http) async fn views(state: &AppState) -> Result<Vec<DestinationView>, ApiError> {
    let mut views = Vec::new();
    for destination in &state.live().destinations {
        views.push(destination.view().await.map_err(unavailable)?);
    }
    Ok(views)
}

async fn pause(
    _: Authorized,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&name, true, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "destination": *name, "paused": true })))
}

async fn resume(
    _: Authorized,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    set_paused(&name, false, &state).await?;
    Ok(HttpResponse::Ok().json(json!({ "destination": *name, "paused": false })))
}

/// Pauses or resumes the destination `name` (404 if unknown), durably.
pub(in crate::http) async fn set_paused(
    name: &str,
    paused: bool,
    state: &AppState,
) -> Result<(), ApiError> {
    let (_settled, live) = state.settled().await;
    let destination = live.destination(name).ok_or(ApiError::NotFound)?;
    destination.set_paused(paused).await.map_err(|err| {
        tracing::error!(destination = name, error = %err, "Cannot record the pause state.");
        ApiError::Unavailable
    })?;
    tracing::info!(
        destination = name,
        paused,
        "Destination paused or resumed by an operator."
    );
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    destination: Option<String>,
    limit: Option<usize>,
}

/// The most recent failed attempts, newest first, of one destination or of all.
async fn errors(
    _: Authorized,
    query: Result<web::Query<ListQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    let limit = page_size(query.limit);
    let mut entries = Vec::new();
    for destination in selected(&state.live(), query.destination.as_deref())? {
        for entry in destination.status.errors(limit) {
            entries.push(json!({ "destination": destination.config.name, "error": entry }));
        }
    }
    entries.sort_by_key(|e| std::cmp::Reverse(e["error"]["at_ms"].as_u64()));
    entries.truncate(limit);
    Ok(HttpResponse::Ok().json(json!({ "errors": entries })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadQuery {
    destination: Option<String>,
    limit: Option<usize>,
    /// Only events after this seq (a previous page's `next_after`).
    #[serde(default)]
    after: u64,
}

/// Dead events after `after`, oldest first, a page at a time: `next_after` names the next page
/// (there was none: past the first 1,000 dead events, none could be listed).
async fn dead(
    _: Authorized,
    query: Result<web::Query<DeadQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    let limit = page_size(query.limit);
    let range = Seq(query.after.saturating_add(1))..=Seq(u64::MAX);
    let mut dead = Vec::new();
    for destination in selected(&state.live(), query.destination.as_deref())? {
        let page = destination.dead_in(range.clone(), limit + 1).await;
        for (seq, record) in page.map_err(unavailable)? {
            dead.push((seq, destination.config.name.clone(), record));
        }
    }
    // The oldest `limit` of all destinations' (each gave its oldest `limit` + 1): the limit was
    // each destination's, and the list in the config's order.
    dead.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let next_after = page_end(&mut dead, limit, |(seq, ..)| seq.0);
    let dead: Vec<_> = dead
        .into_iter()
        .map(|(seq, destination, record)| json!({ "destination": destination, "seq": seq.0, "at_ms": record.at_ms, "attempts": record.attempts, "error": record.error }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "dead": dead, "next_after": next_after })))
}

/// Cuts `entries` (in seq order) to a page of at most `limit`, whole seqs only (several
/// destinations may hold one seq dead: a page that ended within one lost the rest from the next,
/// which starts after it), and says after which seq the next page starts, if one may.
fn page_end<T>(entries: &mut Vec<T>, limit: usize, seq: impl Fn(&T) -> u64) -> Option<u64> {
    if entries.len() <= limit {
        return None;
    }
    let first_left = seq(&entries[limit]);
    let whole = entries[..limit]
        .iter()
        .take_while(|entry| seq(entry) < first_left)
        .count();
    // A page of one seq held dead by more destinations than `limit`: all of them, past it.
    let end = if whole == 0 {
        entries.iter().take_while(|e| seq(e) == first_left).count()
    } else {
        whole
    };
    let more = entries.len() > end;
    entries.truncate(end);
    entries.last().map(seq).filter(|_| more)
}

/// Which dead events a replay takes: every one unless narrowed.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(in crate::http) struct ReplayFilter {
    pub destination: Option<String>,
    pub provider: Option<String>,
    pub from_seq: Option<u64>,
    pub to_seq: Option<u64>,
}

/// Queues dead events for delivery again; the body (optional JSON) filters by destination,
/// provider and seq range.
async fn replay_dead(
    _: Authorized,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let filter: ReplayFilter = if body.is_empty() {
        ReplayFilter::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?
    };
    let replayed = replay_dead_events(&filter, &state).await?;
    Ok(HttpResponse::Accepted().json(json!({
        "replayed": replayed.queued,
        "left_dead": replayed.left,
    })))
}

/// Queues the dead events `filter` selects for delivery again, oldest first, as many as each
/// destination's queue of replays has room for; says how many, and how many were left dead.
pub(in crate::http) async fn replay_dead_events(
    filter: &ReplayFilter,
    state: &AppState,
) -> Result<Replayed, ApiError> {
    // Read a page at a time, and only the seqs the queue could take kept: every dead record at
    // once (millions, after days of a destination down) held gigabytes.
    const PAGE: usize = 1_000;
    let (first, last) = (
        filter.from_seq.unwrap_or(0),
        filter.to_seq.unwrap_or(u64::MAX),
    );
    let most = usize::try_from(crate::forward::max_queued_replays()).unwrap_or(usize::MAX);
    // Without a filter, what stays dead is the destination's count of dead events: the walk
    // stops once the queue could take no more.
    let every = filter.provider.is_none() && filter.from_seq.is_none() && filter.to_seq.is_none();
    let mut replayed = Replayed::default();
    for destination in selected(&state.live(), filter.destination.as_deref())? {
        let (mut seqs, mut beyond, mut from) = (Vec::new(), 0, first);
        'walk: while from <= last {
            let page = destination
                .dead_in(Seq(from)..=Seq(last), PAGE)
                .await
                .map_err(unavailable)?;
            let Some(end) = page.last().map(|(seq, _)| seq.0) else {
                break;
            };
            for (seq, _) in &page {
                let wanted = match &filter.provider {
                    Some(provider) => state
                        .store
                        .event(*seq)
                        .await
                        .map_err(unavailable)?
                        .is_some_and(|e| &e.provider == provider),
                    None => true,
                };
                match wanted {
                    true if seqs.len() < most => seqs.push(*seq),
                    true if every => break 'walk,
                    true => beyond += 1,
                    false => {}
                }
            }
            if page.len() < PAGE || end == u64::MAX {
                break;
            }
            from = end + 1;
        }
        // Queued through the generation that runs after a reload under way (the walk above,
        // store reads only, holds no reload off: it may take minutes).
        let (_settled, live) = state.settled().await;
        let Some(destination) = live.destination(&destination.config.name) else {
            // Removed by that reload: not an error of a replay of every destination's.
            if filter.destination.is_some() {
                return Err(ApiError::NotFound);
            }
            continue;
        };
        let mut this = destination.replay(&seqs).await.map_err(|err| {
            tracing::error!(error = %err, "Cannot queue replays.");
            ApiError::Unavailable
        })?;
        this.left = if every {
            let dead = destination.dead_count().await.map_err(unavailable)?;
            usize::try_from(dead).unwrap_or(usize::MAX)
        } else {
            this.left + beyond
        };
        replayed += this;
    }
    tracing::info!(
        replayed = replayed.queued,
        left_dead = replayed.left,
        "Dead events queued for replay."
    );
    Ok(replayed)
}

/// One named destination (404 if unknown), or all of them.
fn selected(
    live: &Live,
    name: Option<&str>,
) -> Result<Vec<std::sync::Arc<crate::forward::Destination>>, ApiError> {
    match name {
        Some(name) => Ok(vec![live
            .destination(name)
            .ok_or(ApiError::NotFound)?
            .clone()]),
        None => Ok(live.destinations.clone()),
    }
}
