//! The public routes: `POST /hooks/{provider}`, `/healthz`, `/readyz`.
//!
//! A webhook flows: the client's address (`client.rs`) -> its rate limit (429) -> draining
//! check -> provider lookup (404) -> bounded, timed body read within the shared body budget
//! (413/408/503) -> verification (401; off the I/O threads when costly) -> the provider's rate
//! limit (429) -> event id -> durable commit (200, or 503). Every refusal is counted and its log
//! line sampled (`rejections.rs`).

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::header::{HeaderMap, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::body::{drain, read_body};
use super::client::Client;
use super::error::ApiError;
use super::limits::RetryAfter;
use super::rejections::{Level, Refused};
use super::request_id::{RequestId, X_REQUEST_ID};
use super::{AppState, Live};
use crate::config::ProviderConfig;
use crate::event::EventId;
use crate::event_id::event_id;
use crate::metrics::{Stored, UNKNOWN_PROVIDER};
use crate::store::{Committed, NewEvent, StoreError};
use crate::verify::{Handshake, Headers, Rejection, Unverified, Verified};

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .default_service(web::to(not_found))
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

/// Answers a webhook, with its request id in `X-Request-Id`. A stored one (200) is logged on one
/// info line; refusals are logged, sampled, where they are decided (`accept`).
async fn webhook(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let arrived = Instant::now();
    let request_id = RequestId::of(request.headers());
    let provider_name = path.into_inner();
    // This request runs under the config it arrived with, whatever a reload does meanwhile.
    let live = state.live();
    let known = live.config.provider(&provider_name).is_some();
    let label = if known {
        provider_name.as_str()
    } else {
        UNKNOWN_PROVIDER
    };
    let result = accept(
        &request,
        &request_id,
        &provider_name,
        payload,
        &state,
        &live,
    )
    .await;
    let (status, stored) = match &result {
        Ok(Accepted::Stored(Committed::Accepted(_), ..)) => (200, Some(Stored::Accepted)),
        Ok(Accepted::Stored(Committed::Duplicate(_), ..)) => (200, Some(Stored::Duplicate)),
        Ok(Accepted::Handshake(_)) => (200, None),
        Err(err) => (actix_web::ResponseError::status_code(err).as_u16(), None),
    };
    state.metrics.request(label, status, stored);
    let mut response = match result {
        Ok(Accepted::Handshake(answer)) => HttpResponse::Ok()
            .content_type(answer.content_type)
            .body(answer.body),
        Ok(Accepted::Stored(committed, started, event_id)) => {
            state.metrics.acked(started.elapsed().as_secs_f64());
            let (status, seq) = match committed {
                Committed::Accepted(seq) => ("accepted", seq),
                Committed::Duplicate(seq) => ("duplicate", seq),
            };
            let latency_ms = (arrived.elapsed().as_secs_f64() * 1e6).round() / 1e3;
            tracing::info!(request_id = %request_id, provider = %provider_name, event_id = %event_id, seq = seq.0, status = %status, latency_ms, "Webhook stored.");
            HttpResponse::Ok().json(Answer { status, seq: seq.0 })
        }
        Err(err) => actix_web::ResponseError::error_response(&err),
    };
    if let Some(value) = request_id.header_value() {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response
}

/// The longest a request's verification may take (a token introspection's 5 s and a key set's
/// first load included; an RSA check waiting its turn on the blocking threads): past it, 503.
/// The drain at a stop allows for it (`public_listener.rs`). A blocking check that runs on past
/// it holds its body outside the body budget until it ends: at most one per worker.
pub const VERIFY_WITHIN: Duration = Duration::from_secs(8);

/// A stored webhook's answer: `{"status": "accepted" | "duplicate", "seq": N}`.
#[derive(serde::Serialize)]
struct Answer {
    status: &'static str,
    seq: u64,
}

/// How a verified request was taken: stored (with when its commit started, and the event's
/// id), or a vendor's handshake, answered without storing anything.
enum Accepted {
    Stored(Committed, Instant, EventId),
    Handshake(Handshake),
}

/// Everything between the request and the durable commit (or a handshake's answer).
async fn accept(
    request: &HttpRequest,
    request_id: &RequestId,
    provider_name: &str,
    payload: web::Payload,
    state: &AppState,
    live: &Live,
) -> Result<Accepted, ApiError> {
    let server = &live.config.server;
    let Client {
        address: client,
        bucket,
    } = Client::of(request, server);
    let refuse = |cause, level, error: ApiError, detail: &dyn std::fmt::Display| {
        let refused = Refused {
            cause,
            provider: Some(provider_name),
            client,
            level,
            request_id: Some(request_id.as_str()),
        };
        state.rejections.record(refused, detail);
        error
    };
    if let Some(Err(RetryAfter(retry_after))) = bucket.map(|address| live.limits.address(address)) {
        let drained = drain(request.headers(), payload, &mut state.bodies.lease()).await;
        let error = ApiError::RateLimited {
            retry_after,
            drained,
        };
        return Err(refuse(
            "rate_limited_address",
            Level::Info,
            error,
            &"over per_address_rps",
        ));
    }
    if state.is_draining() {
        return Err(refuse(
            "draining",
            Level::Info,
            ApiError::Unavailable,
            &"shutting down",
        ));
    }
    let Some(provider) = live.config.provider(provider_name) else {
        let error = ApiError::UnknownProvider;
        return Err(refuse(
            "unknown_provider",
            Level::Info,
            error,
            &"no such provider",
        ));
    };
    // A compressed body would be stored, deduplicated and forwarded as its compressed bytes,
    // labelled as what they decompress to (and a sender's retry, compressed again, is other
    // bytes): refused before it is read, the sender and the log told why.
    if let Some(encoding) = content_encoding(request.headers()) {
        return Err(refuse(
            "unsupported_encoding",
            Level::Warn,
            ApiError::UnsupportedEncoding,
            &format_args!("Content-Encoding {encoding:?}: bodies are taken as sent, uncompressed"),
        ));
    }
    let mut lease = state.bodies.lease();
    let body = read_body(
        request.headers(),
        payload,
        server.max_body_bytes,
        server.body_timeout,
        &mut lease,
    )
    .await
    .map_err(|error| refuse(body_cause(error), Level::Info, error, &error))?;

    let verified = tokio::time::timeout(
        VERIFY_WITHIN,
        verify(state, live, provider, request, client, body),
    )
    .await
    .unwrap_or(Err(Rejection::Failed))
    .map_err(|rejection| {
        let level = match rejection {
            Rejection::Failed => Level::Error,
            _ => Level::Warn,
        };
        refuse(
            rejection.cause(),
            level,
            ApiError::from(rejection),
            &rejection,
        )
    })?;
    if let Err(RetryAfter(retry_after)) = live.limits.provider(provider_name) {
        let error = ApiError::RateLimited {
            retry_after,
            drained: true,
        };
        return Err(refuse(
            "rate_limited_provider",
            Level::Info,
            error,
            &"over per_provider_rps",
        ));
    }

    if let Some(answer) = verified.handshake() {
        state.metrics.handshake(provider_name);
        tracing::info!(
            provider = provider_name,
            "Handshake answered; nothing stored."
        );
        return Ok(Accepted::Handshake(answer.clone()));
    }
    let headers = RequestHeaders(request.headers());
    let id = event_id(provider.event_id.as_ref(), &headers, &verified);
    let content_type = headers.get(CONTENT_TYPE.as_str()).map(str::to_string);
    let started = Instant::now();
    let event = NewEvent::webhook(provider.name.clone(), id.clone(), content_type, verified)
        .counted_in(lease);
    match state.store.commit(event, server.ack_deadline).await {
        Ok(committed) => {
            tracing::debug!(provider = provider_name, event_id = %id, ?committed, "Webhook stored.");
            Ok(Accepted::Stored(committed, started, id.id))
        }
        // Counted and logged (sampled, with the store's error and the event's id) as every
        // refusal: under a full disk or a store that is down, a line a request flooded the log.
        // A store failure at the error level; a body the store cannot take (raise the NATS
        // servers' `max_payload`) apart from one over `max_body_bytes`.
        Err(err @ StoreError::TooLarge { .. }) => Err(refuse(
            "store_too_large",
            Level::Warn,
            ApiError::PayloadTooLarge,
            &format_args!("event {id}: {err}"),
        )),
        Err(err) => Err(refuse(
            "store_unavailable",
            Level::Error,
            ApiError::Unavailable,
            &format_args!("event {id}: {err}"),
        )),
    }
}

/// The request's `Content-Encoding` when it names a compression (cut to 64 bytes). Other
/// tokens (`identity`, and the bogus `UTF-8` some senders put there on plain bodies) are no
/// compression: those bodies are taken.
fn content_encoding(headers: &actix_web::http::header::HeaderMap) -> Option<String> {
    const COMPRESSIONS: [&str; 7] = [
        "gzip",
        "x-gzip",
        "deflate",
        "br",
        "compress",
        "x-compress",
        "zstd",
    ];
    let values = headers.get_all(actix_web::http::header::CONTENT_ENCODING);
    let encoding: Vec<String> = values
        .map(|value| String::from_utf8_lossy(value.as_bytes()).to_string())
        .filter(|value| {
            value.split(',').any(|token| {
                let token = token.trim();
                COMPRESSIONS.iter().any(|c| token.eq_ignore_ascii_case(c))
            })
        })
        .collect();
    if encoding.is_empty() {
        return None;
    }
    Some(encoding.join(", ").chars().take(64).collect())
}

/// The `cause` label of a body that could not be read.
pub(super) fn body_cause(error: ApiError) -> &'static str {
    match error {
        ApiError::PayloadTooLarge => "payload_too_large",
        ApiError::BodyTimeout => "body_timeout",
        ApiError::Busy => "body_bytes_in_flight",
        _ => "bad_request",
    }
}

/// Runs the provider's scheme: on this I/O thread when it is cheap, else on a blocking thread
/// (at most one per worker at once), so that an RSA check or a large body does not hold up
/// every other connection of the worker.
async fn verify(
    state: &AppState,
    live: &Live,
    provider: &ProviderConfig,
    request: &HttpRequest,
    client: Option<IpAddr>,
    body: Bytes,
) -> Result<Verified, Rejection> {
    let now = SystemTime::now();
    if !provider.verifier.is_cpu_heavy(body.len()) {
        let unverified = Unverified {
            headers: &RequestHeaders(request.headers()),
            path: request.path(),
            query: request.query_string(),
            body,
            peer: client,
            now,
        };
        return provider.verifier.verify(unverified).await;
    }
    // Held by the blocking check itself: a check past `VERIFY_WITHIN` runs on, and its turn
    // with it (given back with the request, each such check let another start).
    let permit = state
        .heavy_verifications
        .clone()
        .acquire_owned()
        .await
        .map_err(|_| Rejection::Failed)?;
    let config = live.config.clone();
    let name = provider.name.to_string();
    let headers = request.headers().clone();
    let (path, query) = (
        request.path().to_string(),
        request.query_string().to_string(),
    );
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let provider = config.provider(&name).ok_or(Rejection::Failed)?;
        provider.verifier.verify_local(Unverified {
            headers: &RequestHeaders(&headers),
            path: &path,
            query: &query,
            body,
            peer: client,
            now,
        })
    })
    .await
    .unwrap_or(Err(Rejection::Failed))
}

/// Another method on `/hooks/{provider}`: 405, counted and rate limited per address as any
/// refusal of a webhook route.
async fn method_not_allowed(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Err(refuse_route(
        &request,
        &state,
        "method_not_allowed",
        ApiError::MethodNotAllowed,
    ))
}

/// A path no route serves (the App's default service): 404, counted and rate limited per
/// address.
pub async fn not_found(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Err(refuse_route(
        &request,
        &state,
        "not_found",
        ApiError::NotFound,
    ))
}

/// `error` for a request refused before any provider was looked at, or 429 if its address is
/// over `per_address_rps`; counted, and logged sampled, either way.
fn refuse_route(
    request: &HttpRequest,
    state: &AppState,
    cause: &'static str,
    error: ApiError,
) -> ApiError {
    let live = state.live();
    let Client {
        address: client,
        bucket,
    } = Client::of(request, &live.config.server);
    let (cause, error) = match bucket.map(|address| live.limits.address(address)) {
        Some(Err(RetryAfter(retry_after))) => (
            "rate_limited_address",
            ApiError::RateLimited {
                retry_after,
                drained: false,
            },
        ),
        _ => (cause, error),
    };
    let refused = Refused {
        cause,
        provider: None,
        client,
        level: Level::Info,
        request_id: None,
    };
    state.rejections.record(refused, &error);
    error
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// Ready to take webhooks: not draining, and the store can store events now (a sled committer
/// wedged in an fsync, a full disk, or JetStream out of reach answered "ready" while every
/// webhook got 503).
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    const READY_WITHIN: Duration = Duration::from_secs(1);
    if state.is_draining() {
        HttpResponse::ServiceUnavailable().body("draining")
    } else if !state.store.is_open() {
        HttpResponse::ServiceUnavailable().body("store closed")
    } else if !state.store.ready(READY_WITHIN).await {
        HttpResponse::ServiceUnavailable().body("store not ready")
    } else {
        HttpResponse::Ok().body("ready")
    }
}
