//! The operator's console: server-rendered HTML pages on the admin listener only, under
//! `/console`. An operator signs in with the admin token ([`session`]); every page then reads
//! what the admin API reads, through the same functions (`http/admin/`), and every action
//! (pause, resume, replay) is a form protected against cross-site requests ([`csrf`]).
//!
//! Pages ([`pages`]): the overview (the last hour per provider, ack latency, the store), event
//! search and one event, destinations (with their dead events and replays), consumers and
//! pollers.

mod chart;
mod csrf;
mod layout;
mod pages;
mod search;
mod session;

use std::collections::HashMap;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use maud::html;

use super::error::ApiError;
use super::AppState;
use layout::Section;

pub use session::Sessions;

/// The largest form body the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/console/style.css", web::get().to(style))
        .route("/console/sign-in", web::get().to(pages::sign_in::form))
        .route("/console/sign-in", web::post().to(pages::sign_in::submit))
        .route(
            "/console/sign-out",
            web::post().to(pages::sign_in::sign_out),
        )
        .route("/console", web::get().to(pages::overview::show))
        .route("/console/events", web::get().to(pages::events::search))
        .route("/console/events/{seq}", web::get().to(pages::event::show))
        .route(
            "/console/events/{seq}/replay",
            web::post().to(pages::event::replay),
        )
        .route(
            "/console/destinations",
            web::get().to(pages::destinations::show),
        )
        .route(
            "/console/destinations/{name}/pause",
            web::post().to(pages::destinations::pause),
        )
        .route(
            "/console/destinations/{name}/resume",
            web::post().to(pages::destinations::resume),
        )
        .route(
            "/console/replay",
            web::post().to(pages::destinations::replay),
        )
        .route("/console/consumers", web::get().to(pages::consumers::show));
}

async fn style() -> HttpResponse {
    let mut response = HttpResponse::Ok();
    layout::secure(&mut response);
    response
        .content_type("text/css; charset=utf-8")
        .body(layout::STYLE)
}

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
        let message = match self {
            ConsoleError::Api(ApiError::NotFound) => "Nothing here by that name.".to_string(),
            ConsoleError::Api(ApiError::BadRequest) => "That request is not valid.".to_string(),
            ConsoleError::Api(ApiError::Unavailable) => {
                "The store cannot answer now; try again shortly.".to_string()
            }
            other => format!("{}.", capitalized(&other.to_string())),
        };
        let status = self.status_code();
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

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

fn app_state(request: &HttpRequest) -> Result<&web::Data<AppState>, ConsoleError> {
    request
        .app_data::<web::Data<AppState>>()
        .ok_or(ConsoleError::Api(ApiError::Unavailable))
}

/// A signed-in operator: the request carried the cookie of a live session. Taking it as an
/// argument guards a page.
pub struct Operator {
    pub session: session::Session,
    /// The session's id, from the cookie (to sign out).
    id: String,
}

impl Operator {
    fn of(request: &HttpRequest) -> Result<Operator, ConsoleError> {
        let state = app_state(request)?;
        let id = request
            .headers()
            .get_all(header::COOKIE)
            .filter_map(|value| value.to_str().ok())
            .find_map(|cookies| session::cookie_value(cookies, session::COOKIE))
            .ok_or(ConsoleError::SignIn)?;
        let token = state.live().config.admin.token.clone();
        let session = state
            .sessions
            .find(id, token.expose(), Instant::now())
            .ok_or(ConsoleError::SignIn)?;
        Ok(Operator {
            session,
            id: id.to_string(),
        })
    }
}

impl FromRequest for Operator {
    type Error = ConsoleError;
    type Future = std::future::Ready<Result<Operator, ConsoleError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Operator::of(request))
    }
}

/// Checks where a request comes from ([`csrf::check_origin`]).
fn check_origin(headers: &HeaderMap) -> Result<(), csrf::Refusal> {
    let get = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    csrf::check_origin(
        get("origin"),
        get("sec-fetch-site"),
        get(header::HOST.as_str()),
    )
}

/// A form's fields; empty ones read as absent.
pub struct Fields(HashMap<String, String>);

impl Fields {
    fn parse(body: &[u8]) -> Fields {
        Fields(
            form_urlencoded::parse(body)
                .filter(|(_, value)| !value.trim().is_empty())
                .map(|(key, value)| (key.into_owned(), value.trim().to_string()))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// A number field: absent is `None`, anything but a number is a 400.
    pub fn number(&self, name: &str) -> Result<Option<u64>, ConsoleError> {
        self.get(name)
            .map(|value| value.parse().map_err(|_| ApiError::BadRequest.into()))
            .transpose()
    }
}

/// A form posted from the console's own origin ([`csrf::check_origin`], checked before the body
/// is read), not tied to a session: the sign-in form.
pub struct SameOrigin {
    pub fields: Fields,
}

impl FromRequest for SameOrigin {
    type Error = ConsoleError;
    type Future = LocalBoxFuture<'static, Result<SameOrigin, ConsoleError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let checked =
            check_origin(request.headers()).inspect_err(|refusal| refused(request, refusal));
        let body = read_form(payload.take());
        Box::pin(async move {
            checked?;
            Ok(SameOrigin {
                fields: body.await?,
            })
        })
    }
}

/// A state-changing form from a signed-in operator, checked against cross-site requests: from
/// the console's own origin, with the session's CSRF token. Taking it as an argument guards an
/// action.
pub struct Posted {
    pub operator: Operator,
    pub fields: Fields,
}

impl FromRequest for Posted {
    type Error = ConsoleError;
    type Future = LocalBoxFuture<'static, Result<Posted, ConsoleError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let request = request.clone();
        let form = SameOrigin::from_request(&request, payload);
        Box::pin(async move {
            let fields = form.await?.fields;
            let operator = Operator::of(&request)?;
            csrf::check_token(&operator.session.csrf, fields.get("csrf"))
                .inspect_err(|refusal| refused(&request, refusal))?;
            Ok(Posted { operator, fields })
        })
    }
}

/// Reads a form body (at most [`MAX_FORM_BYTES`]) into its fields.
async fn read_form(mut payload: Payload) -> Result<Fields, ConsoleError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| ApiError::BadRequest)?;
        if body.len() + chunk.len() > MAX_FORM_BYTES {
            return Err(ApiError::PayloadTooLarge.into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Fields::parse(&body))
}

fn refused(request: &HttpRequest, refusal: &csrf::Refusal) {
    tracing::warn!(peer = ?request.peer_addr(), path = request.path(), reason = %refusal, "Console form refused.");
}
