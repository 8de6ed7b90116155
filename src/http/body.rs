//! Reading a request body: raw bytes, at most `limit` of them whatever `Content-Length` says (or
//! without one), and all of it within `timeout`. Memory is taken as bytes arrive, never from
//! `Content-Length` (2,000 connections each declaring 1 MiB once reserved 3 GB), and drawn from
//! the listener's shared [`BodyLease`]: past `max_body_bytes_in_flight`, 503.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, CONTENT_LENGTH};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;
use crate::body_budget::BodyLease;

pub async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
    lease: &mut BodyLease,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let read = async {
        let mut body = BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BadRequest)?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge);
            }
            let needed = body.len() + chunk.len();
            if needed > lease.held() {
                // Doubling, so a body arriving in many small chunks is copied O(log n) times.
                let target = needed.max(lease.held() * 2).min(limit);
                if !lease.grow(target - lease.held()) {
                    return Err(ApiError::Busy);
                }
                body.reserve(target - body.len());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout))
}

/// A refused request's body, read and dropped so that its connection can serve the next request
/// (closing it would cost the client, and us, a new connection per request): only when it is
/// small and arrives at once. `false`: the connection must be closed instead.
pub async fn drain(headers: &HeaderMap, payload: web::Payload, lease: &mut BodyLease) -> bool {
    const DRAIN_BYTES: usize = 16 * 1024;
    const DRAIN_TIME: Duration = Duration::from_millis(200);
    read_body(headers, payload, DRAIN_BYTES, DRAIN_TIME, lease)
        .await
        .is_ok()
}
