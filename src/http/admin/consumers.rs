//! `GET /v1/consumers` (each consumer's cursor and lag), `GET /v1/consumers/{name}/events` (a
//! long poll for the events after the consumer's cursor) and `POST /v1/consumers/{name}/ack`. What a page holds and how an ack moves the cursor is
//! [`crate::consume`]'s; this file waits and speaks HTTP.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use super::events::{events_json, EventJson};
use super::{page_size, unavailable, Authorized};
use crate::config::ConsumerConfig;
use crate::consume::{self, AckError, Page};
use crate::event::Seq;
use crate::http::{ApiError, AppState};

/// The longest a read may wait for new events.
const MAX_WAIT_MS: u64 = 60_000;
/// How often a waiting read checks whether hookgate is draining (so it does not hold up the
/// shutdown).
const DRAIN_CHECK: Duration = Duration::from_millis(100);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/consumers", web::get().to(list))
        .route("/v1/consumers/{name}/events", web::get().to(read_events))
        .route("/v1/consumers/{name}/ack", web::post().to(ack));
}

/// Each consumer's cursor, and how far behind the last durable seq it is.
async fn list(_: Authorized, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let consumers = lags(&state).await?;
    Ok(HttpResponse::Ok().json(json!({ "consumers": consumers })))
}

/// One consumer's cursor and lag, as `GET /v1/consumers` shows it.
#[derive(Debug, Serialize)]
pub(in crate::http) struct ConsumerLag {
    pub name: String,
    /// The providers it takes (`None`: all).
    pub providers: Option<Vec<String>>,
    pub cursor: u64,
    pub last_seq: u64,
    /// Every event after the cursor, of any provider: the cursor moves only when the consumer
    /// acks.
    pub lag: u64,
    /// The age of the first event after the cursor.
    pub oldest_pending_age_s: Option<f64>,
}

/// Each configured consumer's cursor and lag.
pub(in crate::http) async fn lags(state: &AppState) -> Result<Vec<ConsumerLag>, ApiError> {
    let last = *state.store.last_seq().borrow();
    let now_ms = crate::store::now_ms();
    let mut consumers = Vec::new();
    for consumer in &state.live().config.consumers {
        let cursor = state
            .store
            .output(&consumer.name)
            .await
            .map_err(unavailable)?
            .cursor;
        let next = state.store.events_after(cursor, 1, None).await;
        let oldest = next
            .map_err(unavailable)?
            .first()
            .map(|event| now_ms.saturating_sub(event.received_at_ms) as f64 / 1000.0);
        consumers.push(ConsumerLag {
            name: consumer.name.clone(),
            providers: consumer
                .providers
                .as_ref()
                .map(|names| names.iter().map(|n| n.to_string()).collect()),
            cursor: cursor.0,
            last_seq: last.0,
            lag: last.0.saturating_sub(cursor.0),
            oldest_pending_age_s: oldest,
        });
    }
    Ok(consumers)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    limit: Option<usize>,
    #[serde(default)]
    wait_ms: u64,
}

/// The events after the consumer's cursor; when there are none, waits (up to `wait_ms`) for some
/// to be committed.
async fn read_events(
    _: Authorized,
    name: web::Path<String>,
    query: Result<web::Query<ReadQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    let limit = page_size(query.limit);
    let deadline = Instant::now() + Duration::from_millis(query.wait_ms.min(MAX_WAIT_MS));
    let mut committed = state.store.last_seq();
    let (mut scanned, mut providers) = (Seq(0), None);
    let page = loop {
        // Seen before reading: a commit from here on wakes the wait below.
        committed.mark_unchanged();
        // The config as it is now: a reload during a long poll may have changed the providers
        // the consumer wants (an old filter moved the cursor past events the new one wants),
        // and what the old one looked past is looked at again.
        let consumer = consumer(&state, &name)?;
        if providers.as_ref() != Some(&consumer.providers) {
            scanned = Seq(0);
            providers = Some(consumer.providers.clone());
        }
        let page = read(&state, &consumer, scanned, limit).await?;
        if !page.found.events.is_empty() || Instant::now() >= deadline {
            break page;
        }
        scanned = page.found.scanned;
        if page.found.more {
            continue; // none wanted in as many events as a read looks at: look on
        }
        if !wait_for_commit(&state, &mut committed, deadline).await {
            break page;
        }
    };
    let events = events_json(&page.found.events, &state).await?;
    Ok(HttpResponse::Ok().json(ConsumerPage {
        events,
        cursor: page.cursor.0,
        scanned: page.found.scanned.0,
    }))
}

/// A consumer's page as the admin API shows it.
#[derive(Serialize)]
struct ConsumerPage<'a> {
    events: Vec<EventJson<'a>>,
    cursor: u64,
    scanned: u64,
}

/// Waits until events are committed (true), or until `deadline`, the store closes or hookgate
/// drains (false).
async fn wait_for_commit(
    state: &AppState,
    committed: &mut tokio::sync::watch::Receiver<Seq>,
    deadline: Instant,
) -> bool {
    let mut drain_check = tokio::time::interval(DRAIN_CHECK);
    loop {
        tokio::select! {
            changed = committed.changed() => return changed.is_ok(),
            () = tokio::time::sleep_until(deadline) => return false,
            _ = drain_check.tick() => {
                if state.is_draining() {
                    return false;
                }
            }
        }
    }
}

async fn read(
    state: &AppState,
    consumer: &ConsumerConfig,
    scanned: Seq,
    limit: usize,
) -> Result<Page, ApiError> {
    consume::read_page(&state.store, consumer, scanned, limit)
        .await
        .map_err(unavailable)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    seq: u64,
}

/// Moves the consumer's cursor forward to `seq` (never back); 400 past the last stored seq.
async fn ack(
    _: Authorized,
    name: web::Path<String>,
    body: Result<web::Json<AckBody>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let consumer = consumer(&state, &name)?;
    let body = body.map_err(|_| ApiError::BadRequest)?.into_inner();
    match consume::ack(&state.store, &consumer.name, Seq(body.seq)).await {
        Ok(cursor) => Ok(HttpResponse::Ok().json(json!({ "cursor": cursor.0 }))),
        Err(AckError::BeyondEnd { requested, last }) => {
            tracing::warn!(consumer = %consumer.name, seq = %requested, last = %last, "Ack beyond the last stored seq refused.");
            Err(ApiError::BadRequest)
        }
        Err(AckError::Store(err)) => {
            tracing::error!(consumer = %consumer.name, error = %err, "Cannot move a consumer's cursor.");
            Err(ApiError::Unavailable)
        }
    }
}

/// The configured consumer named in the route, or 404.
fn consumer(state: &AppState, name: &str) -> Result<ConsumerConfig, ApiError> {
    state
        .live()
        .config
        .consumer(name)
        .cloned()
        .ok_or(ApiError::NotFound)
}
