//! The admin routes: `/healthz` (open), and behind the bearer token `/metrics`, `/v1/events`
//! and `/v1/events/{seq}`.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::AppState;
use crate::event::Seq;
use crate::store::StoredEvent;
use crate::verify::mac::constant_time_eq;

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
        .route("/metrics", web::get().to(metrics))
        .route("/v1/events", web::get().to(list_events))
        .route("/v1/events/{seq}", web::get().to(get_event));
}

/// Proof that the request carried the admin token. Taking it as an argument guards a handler.
struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let expected = request
            .app_data::<web::Data<AppState>>()
            .map(|state| state.config.admin.token.expose());
        let valid = matches!((token, expected), (Some(token), Some(expected)) if constant_time_eq(token.as_bytes(), expected));
        if !valid {
            tracing::warn!(peer = ?request.peer_addr(), path = request.path(), "Admin request without a valid token.");
        }
        ready(if valid {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        })
    }
}

async fn metrics(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
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
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let store = state.store.clone();
    let events =
        web::block(move || store.events_after(Seq(query.after), limit, query.provider.as_deref()))
            .await
            .map_err(|_| ApiError::Unavailable)?
            .map_err(|err| {
                tracing::error!(error = %err, "Reading events failed.");
                ApiError::Unavailable
            })?;
    let next_after = if events.len() == limit {
        events.last().map(|e| e.seq)
    } else {
        None
    };
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next_after": next_after })))
}

async fn get_event(
    _: Authorized,
    seq: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let seq = seq.parse::<u64>().map_err(|_| ApiError::NotFound)?;
    let store = state.store.clone();
    let event = web::block(move || store.event(Seq(seq)))
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|err| {
            tracing::error!(error = %err, seq, "Reading an event failed.");
            ApiError::Unavailable
        })?;
    match event {
        Some(event) => Ok(HttpResponse::Ok().json(event_json(&event))),
        None => Err(ApiError::NotFound),
    }
}

/// An event as the admin API shows it (see the interface contract).
fn event_json(event: &StoredEvent) -> Value {
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
        "deliveries": {},
    });
    if let Some(topic) = &event.topic {
        object["topic"] = json!(topic);
    }
    if let Ok(parsed) = serde_json::from_slice::<Value>(&event.body) {
        object["json"] = parsed;
    }
    object
}
