//! The admin routes: `/healthz` (open), and behind the bearer token `/metrics`, the events API
//! ([`events`]) and the destinations API ([`destinations`]). The console (`http/console/`) calls
//! the same functions behind its session instead of the bearer token.

mod body_deadline;
pub(super) mod consumers;
pub(super) mod destinations;
pub(super) mod events;
mod sync;

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};

pub(super) use body_deadline::bound_body_time;

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
        request_id: None,
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

/// How long a scrape waits for the store's cursors (every output's at once): on JetStream each
/// is a request to the stream's leader, which waits up to 10 s while no server answers, and
/// read one after another they outlasted Prometheus's scrape timeout, losing every series just
/// when the 503s were worth seeing.
const CURSORS_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

async fn metrics(_: Authorized, state: web::Data<AppState>) -> HttpResponse {
    let live = state.live();
    let outputs = live
        .destinations
        .iter()
        .map(|destination| destination.config.name.as_str())
        .chain(live.config.consumers.iter().map(|c| c.name.as_str()));
    let read = futures_util::future::join_all(outputs.map(|name| state.store.output(name)));
    let read = tokio::time::timeout(CURSORS_WITHIN, read).await;
    let mut outputs = read.unwrap_or_default().into_iter().map(Result::ok);
    let destinations: Vec<DestinationGauges> = live
        .destinations
        .iter()
        .map(|destination| {
            let output = outputs.next().flatten();
            let here = destination.status.snapshot();
            DestinationGauges {
                destination: destination.config.name.clone(),
                // The store's flag: a gateway not delivering to it (JetStream) is not told.
                paused: output.as_ref().map_or(here.paused, |o| o.paused),
                probing: here.probing && here.delivering_here,
                cursor: output.map(|o| o.cursor.0),
            }
        })
        .collect();
    let consumers: Vec<ConsumerGauges> = live
        .config
        .consumers
        .iter()
        .map(|consumer| ConsumerGauges {
            consumer: consumer.name.clone(),
            cursor: outputs.next().flatten().map(|o| o.cursor.0),
        })
        .collect();
    // At least every cursor: a lag is never negative (on JetStream another gateway may have
    // moved a cursor past what this one has seen of the stream).
    let cursors = destinations.iter().filter_map(|d| d.cursor);
    let last_seq = cursors
        .chain(consumers.iter().filter_map(|c| c.cursor))
        .fold(state.store.last_seq().borrow().0, u64::max);
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(
            state
                .metrics
                .render_with(last_seq, &destinations, &consumers),
        )
}
