//! The admin listener's bodies arrive within `body_timeout_ms`, as the public listener's do:
//! without it one client trickling a byte every few seconds into each of the listener's
//! [`ADMIN_MAX_CONNECTIONS`](crate::http::ADMIN_MAX_CONNECTIONS) connections held it (and the
//! console's sign-in form needs no token to be posted). A body not read in time is answered 408
//! and its connection closed, and the refusal is counted and logged as every refusal is.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::refused;
use crate::http::{ApiError, AppState};

/// Middleware of the admin listener (see the module's doc).
pub async fn bound_body_time(
    mut request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = request.app_data::<web::Data<AppState>>().cloned() else {
        return next.call(request).await;
    };
    let timeout = state.live().config.server.body_timeout;
    let expired = Rc::new(Cell::new(false));
    let payload = request.take_payload();
    request.set_payload(within(payload, timeout, expired.clone()));
    let response = next.call(request).await?;
    if !expired.get() {
        return Ok(response);
    }
    let why = format!(
        "admin request to {}: its body did not arrive within {} ms",
        response.request().path(),
        timeout.as_millis()
    );
    refused(&state, response.request(), "body_timeout", &why);
    Ok(response.into_response(ApiError::BodyTimeout.error_response()))
}

/// `payload`, ending in an error (and `expired` set) if it is not whole within `timeout`.
fn within(payload: Payload, timeout: Duration, expired: Rc<Cell<bool>>) -> Payload {
    let deadline = tokio::time::Instant::now() + timeout;
    let bounded = futures_util::stream::unfold(Some(payload), move |payload| {
        let expired = expired.clone();
        async move {
            let mut payload = payload?;
            match tokio::time::timeout_at(deadline, payload.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(payload))),
                Ok(None) => None,
                Err(_) => {
                    expired.set(true);
                    let late = std::io::Error::new(std::io::ErrorKind::TimedOut, "body_timeout");
                    Some((Err(PayloadError::Io(late)), None))
                }
            }
        }
    });
    let bounded: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
        Box::pin(bounded);
    Payload::from(bounded)
}
