//! `GET /v1/events`, `GET /v1/events/{seq}` and `POST /v1/events/{seq}/replay`.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, page_size, Authorized};
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
    let limit = page_size(query.limit);
    let store = state.store.clone();
    let events =
        blocking(move || store.events_after(Seq(query.after), limit, query.provider.as_deref()))
            .await?;
    let next_after = if events.len() == limit {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    let events: Vec<Value> = events.iter().map(|e| event_json(e, &state)).collect();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next_after": next_after })))
}

async fn get_event(
    _: Authorized,
    seq: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let seq = seq.parse::<u64>().map_err(|_| ApiError::NotFound)?;
    let store = state.store.clone();
    match blocking(move || store.event(Seq(seq))).await? {
        Some(event) => Ok(HttpResponse::Ok().json(event_json(&event, &state))),
        None => Err(ApiError::NotFound),
    }
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
    let destination = state
        .destination(&query.destination)
        .ok_or(ApiError::NotFound)?
        .clone();
    let store = state.store.clone();
    let event = blocking(move || store.event(Seq(seq)))
        .await?
        .ok_or(ApiError::NotFound)?;
    if destination.delivery_state(&event).is_none() {
        return Err(ApiError::BadRequest);
    }
    destination.replay(&[Seq(seq)]).await.map_err(|err| {
        tracing::error!(error = %err, "Cannot queue a replay.");
        ApiError::Unavailable
    })?;
    tracing::info!(destination = %query.destination, seq, "Replay queued.");
    Ok(HttpResponse::Accepted().json(json!({ "replayed": 1 })))
}

/// An event as the admin API shows it (see the interface contract).
pub(super) fn event_json(event: &StoredEvent, state: &AppState) -> Value {
    let received_at = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(event.received_at_ms) * 1_000_000,
    )
    .ok()
    .and_then(|at| {
        at.format(&time::format_description::well_known::Rfc3339)
            .ok()
    });
    let mut object = json!({
        "seq": event.seq,
        "provider": event.provider,
        "event_id": event.event_id,
        "received_at": received_at,
        "source": event.source.as_str(),
        "content_type": event.content_type,
        "body_base64": BASE64.encode(&event.body),
        "deliveries": deliveries(event, state),
    });
    if let Some(topic) = &event.topic {
        object["topic"] = json!(topic);
    }
    if let Ok(parsed) = serde_json::from_slice::<Value>(&event.body) {
        object["json"] = parsed;
    }
    object
}

/// Where the event stands for each destination that takes its provider.
fn deliveries(event: &StoredEvent, state: &AppState) -> Value {
    let states: serde_json::Map<String, Value> = state
        .destinations
        .iter()
        .filter_map(|d| Some((d.config.name.clone(), json!(d.delivery_state(event)?))))
        .collect();
    Value::Object(states)
}
