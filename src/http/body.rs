//! Reading a request body: raw bytes, at most `limit` of them whatever `Content-Length` says (or
//! without one), and all of it within `timeout`.

use std::time::Duration;

use actix_web::http::header::{HeaderMap, CONTENT_LENGTH};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::error::ApiError;

pub async fn read_body(
    headers: &HeaderMap,
    mut payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge);
    }
    let capacity = declared.map_or(8 * 1024, |length| length as usize);
    let read = async {
        let mut body = BytesMut::with_capacity(capacity);
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| ApiError::BadRequest)?;
            if body.len() + chunk.len() > limit {
                return Err(ApiError::PayloadTooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(ApiError::BodyTimeout))
}
