//! `GET /v1/events`, `GET /v1/events/{seq}` and `POST /v1/events/{seq}/replay`.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use serde_json::value::RawValue;

use super::{page_size, rfc3339, unavailable, Authorized};
use crate::event::Seq;
use crate::http::{ApiError, AppState};
use crate::store::StoredEvent;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/events", web::get().to(list_events))
        .route("/v1/events/{seq}", web::get().to(get_event))
        .route("/v1/events/{seq}/replay", web::post().to(replay_event));
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    provider: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn list_events(
    _: Authorized,
    query: Result<web::Query<EventsQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    if let Some(provider) = &query.provider {
        crate::event::ProviderName::parse(provider).map_err(|_| ApiError::BadRequest)?;
    }
    let limit = page_size(query.limit);
    let after = Seq(query.after);
    // With a provider: JetStream reads that provider's subjects only; sled scans, a step at a
    // time (`SledStore::events_after`), so that commits never wait for it.
    let (events, cut) = state
        .store
        .events_page(after, limit, query.provider)
        .await
        .map_err(unavailable)?;
    let next_after = events.last().map(|e| e.seq).filter(|_| cut);
    let events = events_json(&events, &state).await?;
    Ok(HttpResponse::Ok().json(EventsPage { events, next_after }))
}

async fn get_event(
    _: Authorized,
    seq: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let seq = seq.parse::<u64>().map_err(|_| ApiError::NotFound)?;
    let event = stored(Seq(seq), &state).await?;
    Ok(HttpResponse::Ok().json(event_json(&event, &state).await?))
}

/// The stored event `seq`, or 404.
pub(in crate::http) async fn stored(seq: Seq, state: &AppState) -> Result<StoredEvent, ApiError> {
    state
        .store
        .event(seq)
        .await
        .map_err(unavailable)?
        .ok_or(ApiError::NotFound)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayQuery {
    destination: String,
}

/// Queues one event for delivery to one destination again, whatever its state there.
async fn replay_event(
    _: Authorized,
    seq: web::Path<String>,
    query: Result<web::Query<ReplayQuery>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let seq = seq.parse::<u64>().map_err(|_| ApiError::NotFound)?;
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    replay_one(Seq(seq), &query.destination, &state).await?;
    Ok(HttpResponse::Accepted().json(json!({ "replayed": 1 })))
}

/// Queues event `seq` for delivery to `destination` again: 404 if either is unknown, 400 if the
/// destination does not take the event.
pub(in crate::http) async fn replay_one(
    seq: Seq,
    destination: &str,
    state: &AppState,
) -> Result<(), ApiError> {
    let (_settled, live) = state.settled().await;
    let output = live
        .destination(destination)
        .ok_or(ApiError::NotFound)?
        .clone();
    let event = stored(seq, state).await?;
    if output
        .delivery_state(&event)
        .await
        .map_err(unavailable)?
        .is_none()
    {
        return Err(ApiError::BadRequest);
    }
    let replayed = output.replay(&[seq]).await.map_err(|err| {
        tracing::error!(error = %err, "Cannot queue a replay.");
        ApiError::Unavailable
    })?;
    if replayed.queued == 0 {
        tracing::warn!(destination, seq = seq.0, "Replay not queued: the destination's queue of replays is full; try again once they are delivered.");
        return Err(ApiError::ReplayQueueFull);
    }
    tracing::info!(destination, seq = seq.0, "Replay queued.");
    Ok(())
}

/// An event as the admin API shows it (see the interface contract).
#[derive(Serialize)]
pub(super) struct EventJson<'a> {
    seq: u64,
    provider: &'a str,
    event_id: &'a str,
    received_at: Option<String>,
    source: &'static str,
    content_type: Option<&'a str>,
    body_base64: String,
    deliveries: BTreeMap<String, &'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topic: Option<&'a str>,
    /// The body as it came, when it is JSON: checked, never built into a tree (a body of many
    /// small objects takes ~95 times its size as a `serde_json::Value`, and a page holds
    /// 16 MiB of bodies).
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<&'a RawValue>,
}

/// A page of events as the admin API shows them.
#[derive(Serialize)]
struct EventsPage<'a> {
    events: Vec<EventJson<'a>>,
    next_after: Option<u64>,
}

/// Events as the admin API shows them.
pub(super) async fn events_json<'a>(
    events: &'a [StoredEvent],
    state: &AppState,
) -> Result<Vec<EventJson<'a>>, ApiError> {
    let mut all = Vec::with_capacity(events.len());
    for event in events {
        all.push(event_json(event, state).await?);
    }
    Ok(all)
}

/// An event as the admin API shows it.
pub(super) async fn event_json<'a>(
    event: &'a StoredEvent,
    state: &AppState,
) -> Result<EventJson<'a>, ApiError> {
    Ok(EventJson {
        seq: event.seq,
        provider: &event.provider,
        event_id: &event.event_id,
        received_at: rfc3339(event.received_at_ms),
        source: event.source.as_str(),
        content_type: event.content_type.as_deref(),
        body_base64: BASE64.encode(&event.body),
        deliveries: deliveries(event, state).await?.into_iter().collect(),
        topic: event.topic.as_deref(),
        json: serde_json::from_slice::<&RawValue>(&event.body).ok(),
    })
}

/// Where the event stands (`delivered`, `pending`, `dead`, `skipped`) for each destination that
/// takes its provider, in the config's order.
pub(in crate::http) async fn deliveries(
    event: &StoredEvent,
    state: &AppState,
) -> Result<Vec<(String, &'static str)>, ApiError> {
    let mut states = Vec::new();
    for destination in &state.live().destinations {
        if let Some(there) = destination
            .delivery_state(event)
            .await
            .map_err(unavailable)?
        {
            states.push((destination.config.name.clone(), there));
        }
    }
    Ok(states)
}
