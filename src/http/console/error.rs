//! What a console page can fail with, and the HTML (or redirect) each failure is answered with.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use maud::html;

use super::csrf;
use super::layout::{self, Section};
use crate::http::error::ApiError;

/// What a console page can fail with; each is answered with a small HTML page (or, for
/// [`ConsoleError::SignIn`], a redirect to the sign-in form).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("sign in first")]
    SignIn,
    #[error("refused: {0}")]
    Refused(#[from] csrf::Refusal),
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl ResponseError for ConsoleError {
    fn status_code(&self) -> StatusCode {
        match self {
            ConsoleError::SignIn => StatusCode::SEE_OTHER,
            ConsoleError::Refused(_) => StatusCode::FORBIDDEN,
            ConsoleError::Api(err) => err.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ConsoleError::SignIn = self {
            return layout::see_other("/console/sign-in");
        }
        let status = self.status_code();
        let message = match self {
            ConsoleError::Refused(refusal) => format!("Refused: {refusal}."),
            ConsoleError::Api(ApiError::NotFound) => "Nothing here by that name.".to_string(),
            ConsoleError::Api(ApiError::BadRequest) => "That request is not valid.".to_string(),
            ConsoleError::Api(ApiError::Unavailable) => {
                "The store cannot answer now; try again shortly.".to_string()
            }
            ConsoleError::Api(ApiError::ReplayQueueFull) => {
                "The destination holds as many queued replays as it may; replay this event once \
                 they are delivered."
                    .to_string()
            }
            _ => format!("{}.", status.canonical_reason().unwrap_or("Error")),
        };
        let markup = layout::page(
            status.canonical_reason().unwrap_or("Error"),
            Section::None,
            None,
            html! {
                p.notice.error { (message) }
                p { a href="/console" { "Back to the console" } }
            },
        );
        let mut response = HttpResponse::build(status);
        layout::secure(&mut response);
        response
            .content_type("text/html; charset=utf-8")
            .body(markup.into_string())
    }
}
