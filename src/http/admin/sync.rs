//! The sync API's poller per provider: `GET /v1/providers/{name}/sync` (cursor, last success,
//! last error), `POST /v1/providers/{name}/sync` (poll now, and answer once that round ends),
//! `PUT /v1/providers/{name}/sync/cursor` (set the cursor) and `GET /v1/pollers` (every poller's
//! state).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::{rfc3339, Authorized};
use crate::http::{ApiError, AppState, Live};
use crate::poll::Poller;

/// How long `POST .../sync` waits for its round before answering 202.
const POLL_NOW_WAIT: Duration = Duration::from_secs(30);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/pollers", web::get().to(list))
        .route("/v1/providers/{name}/sync", web::get().to(show))
        .route("/v1/providers/{name}/sync", web::post().to(poll_now))
        .route(
            "/v1/providers/{name}/sync/cursor",
            web::put().to(set_cursor),
        );
}

fn poller(state: &AppState, name: &str) -> Result<Arc<Poller>, ApiError> {
    find(&state.live(), name)
}

fn find(live: &Live, name: &str) -> Result<Arc<Poller>, ApiError> {
    live.pollers
        .iter()
        .find(|p| p.provider.as_str() == name)
        .cloned()
        .ok_or(ApiError::NotFound)
}

async fn list(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let pollers: Vec<Value> = state
        .live()
        .pollers
        .iter()
        .map(|poller| view(poller))
        .collect();
    HttpResponse::Ok().json(json!({ "pollers": pollers }))
}

async fn show(
    _: Authorized,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let poller = poller(&state, &name)?;
    Ok(HttpResponse::Ok().json(view(&poller)))
}

async fn poll_now(
    _: Authorized,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The generation that runs after a reload under way (not held while the round runs).
    let poller = find(&state.settled().await.1, &name)?;
    tracing::info!(provider = %poller.provider, "Poll requested by an operator.");
    let finished = poller.poll_now(POLL_NOW_WAIT).await;
    let mut body = view(&poller);
    body["finished"] = json!(finished);
    Ok(if finished {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::Accepted().json(body)
    })
}

/// `{"cursor": "..."}`, a number, or `null` (from the beginning): the key is required (`{}`
/// read as `null` sent a poller back to the beginning of the vendor's history).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCursor {
    #[serde(deserialize_with = "present")]
    cursor: Option<Value>,
}

/// A field that must be there, `null` or not.
fn present<'de, D: serde::Deserializer<'de>>(to: D) -> Result<Option<Value>, D::Error> {
    serde::Deserialize::deserialize(to)
}

/// Sets the durable cursor, after the round under way (if any); the next round polls from it.
async fn set_cursor(
    _: Authorized,
    name: web::Path<String>,
    body: Result<web::Json<NewCursor>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (_settled, live) = state.settled().await;
    let poller = find(&live, &name)?;
    let cursor = match body.map_err(|_| ApiError::BadRequest)?.into_inner().cursor {
        None => None,
        Some(Value::String(text)) if !text.is_empty() => Some(text),
        Some(Value::Number(number)) if number.is_u64() => Some(number.to_string()),
        Some(_) => return Err(ApiError::BadRequest),
    };
    let set = tokio::time::timeout(POLL_NOW_WAIT, poller.set_cursor(cursor)).await;
    match set {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(view(&poller))),
        Ok(Err(err)) => {
            tracing::warn!(provider = %poller.provider, error = %err, "Cannot set the sync cursor.");
            Err(ApiError::Unavailable)
        }
        Err(_) => Err(ApiError::Unavailable),
    }
}

fn view(poller: &Poller) -> Value {
    let status = poller.status();
    json!({
        "provider": poller.provider.as_str(),
        "url": crate::shown_url::shown(&poller.config.url),
        "interval_ms": poller.config.interval.as_millis() as u64,
        "cursor_set": status.cursor_set,
        "cursor": status.cursor.as_deref().map(|cursor| poller.shown_cursor(cursor)),
        "running": status.running,
        "polling_here": status.polling_here,
        "rounds": status.rounds,
        "last_success_at": status.last_success_ms.and_then(rfc3339),
        "last_success_ms": status.last_success_ms,
        "last_error": status.last_error.as_ref().map(|message| json!({
            "at": status.last_error_ms.and_then(rfc3339),
            "at_ms": status.last_error_ms,
            "message": message,
        })),
    })
}
