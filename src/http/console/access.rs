//! Who may see a page or post a form: [`Operator`] (a live session), [`SameOrigin`] (a form from
//! the console's own origin: the sign-in form) and [`Posted`] (both, with the session's CSRF
//! token: every action). Handlers take them as arguments, so a page cannot forget the check.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;

use super::error::ConsoleError;
use super::{csrf, session};
use crate::http::error::ApiError;
use crate::http::AppState;

/// The largest form body the console reads.
const MAX_FORM_BYTES: usize = 16 * 1024;

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
    pub(super) id: String,
}

impl Operator {
    pub(super) fn of(request: &HttpRequest) -> Result<Operator, ConsoleError> {
        let state = app_state(request)?;
        let token = state.live().config.admin.token.clone();
        let now = Instant::now();
        // The first value naming a live session: another page on this host may have set a
        // cookie of the same name.
        let (id, session) = request
            .headers()
            .get_all(header::COOKIE)
            .flat_map(|cookies| session::cookie_values(cookies.as_bytes(), session::COOKIE))
            .find_map(|id| Some((id, state.sessions.find(id, token.expose(), now)?)))
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

/// Counts and logs a refused form through the sampled rejection log: anyone who can reach the
/// admin listener, or any page open in an operator's browser, can send them in a loop.
fn refused(request: &HttpRequest, refusal: &csrf::Refusal) {
    if let Ok(state) = app_state(request) {
        let why = format!("console form to {}: {refusal}", request.path());
        crate::http::admin::refused(state, request, refusal.cause(), &why);
    }
}
