//! The one place where errors become HTTP answers. Client errors carry a short code in a JSON
//! body; internal errors are logged where they happen and answered with a bare code.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// Seconds a sender is asked to wait after a 503.
pub const RETRY_AFTER_S: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized")]
    Unauthorized,
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
    #[error("bad_request")]
    BadRequest,
    #[error("unavailable")]
    Unavailable,
}

impl ApiError {
    /// After these the connection is closed: the rest of the body was never read.
    fn closes_connection(self) -> bool {
        matches!(
            self,
            ApiError::BodyTimeout | ApiError::PayloadTooLarge | ApiError::BadRequest
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::UnknownProvider | ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest => StatusCode::BAD_REQUEST,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if *self == ApiError::Unavailable {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S)));
        }
        if self.closes_connection() {
            response.force_close();
        }
        response.json(serde_json::json!({ "error": self.to_string() }))
    }
}
