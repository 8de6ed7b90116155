//! The one place where errors become HTTP answers. Client errors carry a short code in a JSON
//! body; internal errors are logged where they happen and answered with a bare code.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::verify::Rejection;

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_S: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized")]
    Unauthorized,
    /// 401 for a bearer-token provider when no token was presented (RFC 6750 §3.1).
    #[error("unauthorized")]
    BearerMissing,
    /// 401 for an expired or invalid bearer token: the sender fetches a new one.
    #[error("unauthorized")]
    BearerInvalid,
    /// 403: a valid token without the required scope.
    #[error("insufficient_scope")]
    InsufficientScope,
    #[error("unknown_provider")]
    UnknownProvider,
    #[error("not_found")]
    NotFound,
    #[error("method_not_allowed")]
    MethodNotAllowed,
    #[error("body_timeout")]
    BodyTimeout,
    #[error("payload_too_large")]
    PayloadTooLarge,
    /// 415: a body with a `Content-Encoding` (hookgate stores and forwards bodies as sent).
    #[error("unsupported_encoding")]
    UnsupportedEncoding,
    #[error("bad_request")]
    BadRequest,
    #[error("unavailable")]
    Unavailable,
    /// 409: the destination holds as many queued replays as it may; replay again later.
    #[error("replay_queue_full")]
    ReplayQueueFull,
    /// 429: over a rate limit; try again after this many seconds. The connection stays open if
    /// the request's body was read (drained), else it is closed.
    #[error("rate_limited")]
    RateLimited { retry_after: u32, drained: bool },
    /// 503: the body bytes all requests hold at once are at their ceiling.
    #[error("busy")]
    Busy,
}

impl ApiError {
    /// After these the connection is closed: the rest of the body was never read.
    fn closes_connection(self) -> bool {
        matches!(
            self,
            ApiError::BodyTimeout
                | ApiError::PayloadTooLarge
                | ApiError::UnsupportedEncoding
                | ApiError::BadRequest
                | ApiError::Busy
                | ApiError::RateLimited { drained: false, .. }
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized | ApiError::BearerMissing | ApiError::BearerInvalid => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::InsufficientScope => StatusCode::FORBIDDEN,
            ApiError::UnknownProvider | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ReplayQueueFull => StatusCode::CONFLICT,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BadRequest => StatusCode::BAD_REQUEST,
            ApiError::Unavailable | ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable | ApiError::Busy => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S)));
            }
            ApiError::RateLimited { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from(*retry_after)));
            }
            ApiError::BearerMissing => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::BearerInvalid => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#));
            }
            ApiError::InsufficientScope => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    r#"Bearer error="insufficient_scope""#,
                ));
            }
            // The one route that refuses methods takes only POST (`/hooks/{provider}`).
            ApiError::MethodNotAllowed => {
                response.insert_header((header::ALLOW, "POST"));
            }
            _ => {}
        }
        if self.closes_connection() {
            response.force_close();
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}

impl From<Rejection> for ApiError {
    fn from(rejection: Rejection) -> ApiError {
        match rejection {
            Rejection::MissingToken => ApiError::BearerMissing,
            Rejection::InvalidToken => ApiError::BearerInvalid,
            Rejection::InsufficientScope => ApiError::InsufficientScope,
            Rejection::Unavailable | Rejection::Failed => ApiError::Unavailable,
            _ => ApiError::Unauthorized,
        }
    }
}
