//! The admin routes: `/healthz` (open), and behind the bearer token `/metrics`, the events API
//! ([`events`]) and the destinations API ([`destinations`]). The console (`http/console/`) calls
//! the same functions behind its session instead of the bearer token.

pub(super) mod consumers;
pub(super) mod destinations;
pub(super) mod events;
mod sync;

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

use super::error::ApiError;
use super::rejections::Level;
use super::{AppState, Refused};
use crate::metrics::{ConsumerGauges, DestinationGauges};
use crate::verify::mac::constant_time_eq;

/// Page sizes of the listing routes.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// A `limit` query parameter, defaulted and bounded.
fn page_size(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// A store error as the admin API answers it: logged, and 503.
pub(super) fn unavailable(err: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %err, "Reading the store failed.");
    ApiError::Unavailable
}

/// Milliseconds since the Unix epoch as RFC 3339 (UTC).
pub(super) fn rfc3339(ms: u64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route(
            "/healthz",
            web::get().to(|| async { HttpResponse::Ok().body("ok") }),
        )
        .route("/metrics", web::get().to(metrics))
        .configure(events::routes)
        .configure(destinations::routes)
        .configure(consumers::routes)
        .configure(sync::routes);
}

/// Whether `token` is the admin token of the running config (in constant time).
pub(super) fn is_admin_token(state: &AppState, token: &str) -> bool {
    constant_time_eq(token.as_bytes(), state.live().config.admin.token.expose())
}

/// Counts a request refused for its token, and logs it as every refusal is (sampled: a line
/// each, a loop without the token wrote thousands a second, past journald's rate limit, which
/// then dropped hookgate's real errors too).
pub(super) fn refused(state: &AppState, request: &HttpRequest, cause: &'static str, why: &str) {
    let refused = Refused {
        cause,
        provider: None,
        client: request.peer_addr().map(|peer| peer.ip()),
        level: Level::Warn,
    };
    state.rejections.record(refused, &why);
}

/// Proof that the request carried the admin token. Taking it as an argument guards a handler.
pub(super) struct Authorized;

impl FromRequest for Authorized {
    type Error = ApiError;
    type Future = Ready<Result<Authorized, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = request
            .headers()
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let state = request.app_data::<web::Data<AppState>>();
        let valid =
            matches!((token, state), (Some(token), Some(state)) if is_admin_token(state, token));
        if let (false, Some(state)) = (valid, state) {
            let path = format!("admin request to {} without a valid token", request.path());
            refused(state, request, "admin_unauthorized", &path);
        }
        ready(if valid {
            Ok(Authorized)
        } else {
            Err(ApiError::Unauthorized)
        })
    }
}

async fn metrics(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let destinations = destination_gauges(&state).await;
    let consumers = consumer_gauges(&state).await;
    // Read after the cursors: a lag is never negative.
    let last_seq = state.store.last_seq().borrow().0;
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(
            state
                .metrics
                .render_with(last_seq, &destinations, &consumers),
        )
}

/// The destinations' gauges for one scrape, from the live destinations; a cursor the store
/// cannot read now is left out.
async fn destination_gauges(state: &AppState) -> Vec<DestinationGauges> {
    let mut gauges = Vec::new();
    for destination in &state.live().destinations {
        let name = &destination.config.name;
        let live = destination.status.snapshot();
        gauges.push(DestinationGauges {
            destination: name.clone(),
            paused: live.paused,
            probing: live.probing,
            cursor: state.store.output(name).await.ok().map(|o| o.cursor.0),
        });
    }
    gauges
}

/// The consumers' cursors for one scrape; one the store cannot read now is left out.
async fn consumer_gauges(state: &AppState) -> Vec<ConsumerGauges> {
    let mut gauges = Vec::new();
    for consumer in &state.live().config.consumers {
        gauges.push(ConsumerGauges {
            consumer: consumer.name.clone(),
            cursor: state
                .store
                .output(&consumer.name)
                .await
                .ok()
                .map(|o| o.cursor.0),
        });
    }
    gauges
}
