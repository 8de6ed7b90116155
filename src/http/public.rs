//! The public routes: `POST /hooks/{provider}`, `/healthz`, `/readyz`.
//!
//! A webhook flows: draining check -> provider lookup (404) -> bounded, timed body read
//! (413/408) -> verification (401) -> event id -> durable commit (200, or 503).

use std::time::{Instant, SystemTime};

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::body::read_body;
use super::error::ApiError;
use super::AppState;
use crate::event_id::event_id;
use crate::metrics::UNKNOWN_PROVIDER;
use crate::store::{Committed, NewEvent};
use crate::verify::{Headers, Unverified};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/hooks/{provider}")
                .route(web::post().to(webhook))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/oauth/token", web::post().to(super::oauth_token::token))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

/// Header lookups for the verifiers; values that are not visible ASCII read as absent.
struct RequestHeaders<'a>(&'a HeaderMap);

impl Headers for RequestHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|value| value.to_str().ok())
    }
}

async fn webhook(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let provider_name = path.into_inner();
    let known = state.config.provider(&provider_name).is_some();
    let label = if known {
        provider_name.as_str()
    } else {
        UNKNOWN_PROVIDER
    };
    let result = accept(&request, &provider_name, payload, &state).await;
    let status = match &result {
        Ok(_) => 200,
        Err(err) => actix_web::ResponseError::status_code(err).as_u16(),
    };
    state.metrics.request(label, status);
    let (committed, started) = result?;
    state
        .metrics
        .ack_latency
        .observe(started.elapsed().as_secs_f64());
    let (status, seq) = match committed {
        Committed::Accepted(seq) => ("accepted", seq),
        Committed::Duplicate(seq) => ("duplicate", seq),
    };
    Ok(HttpResponse::Ok().json(json!({ "status": status, "seq": seq.0 })))
}

/// Everything between the request and the durable commit. Returns when the commit started.
async fn accept(
    request: &HttpRequest,
    provider_name: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<(Committed, Instant), ApiError> {
    if state.is_draining() {
        return Err(ApiError::Unavailable);
    }
    let provider = state.config.provider(provider_name).ok_or_else(|| {
        tracing::info!(provider = provider_name, "Webhook for an unknown provider.");
        ApiError::UnknownProvider
    })?;
    let server = &state.config.server;
    let body = read_body(
        request.headers(),
        payload,
        server.max_body_bytes,
        server.body_timeout,
    )
    .await
    .inspect_err(
        |err| tracing::info!(provider = provider_name, error = %err, "Webhook body refused."),
    )?;

    let headers = RequestHeaders(request.headers());
    let unverified = Unverified {
        headers: &headers,
        path: request.path(),
        query: request.query_string(),
        body,
        peer: request.peer_addr().map(|addr| addr.ip()),
        now: SystemTime::now(),
    };
    let verified = provider.verifier.verify(unverified).await.map_err(|rejection| {
        tracing::warn!(provider = provider_name, reason = %rejection, peer = ?request.peer_addr(), "Webhook failed verification.");
        ApiError::from(rejection)
    })?;

    let id = event_id(provider.event_id.as_ref(), &headers, &verified);
    let content_type = headers.get(CONTENT_TYPE.as_str()).map(str::to_string);
    let started = Instant::now();
    let event = NewEvent::webhook(provider.name.clone(), id.clone(), content_type, verified);
    match state.store.commit(event, server.ack_deadline).await {
        Ok(committed) => {
            tracing::debug!(provider = provider_name, event_id = %id, ?committed, "Webhook stored.");
            Ok((committed, started))
        }
        Err(err) => {
            tracing::error!(provider = provider_name, event_id = %id, error = %err, "Webhook not stored; answering 503.");
            Err(ApiError::Unavailable)
        }
    }
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.is_draining() {
        HttpResponse::ServiceUnavailable().body("draining")
    } else if !state.store.is_open() {
        HttpResponse::ServiceUnavailable().body("store closed")
    } else {
        HttpResponse::Ok().body("ready")
    }
}
