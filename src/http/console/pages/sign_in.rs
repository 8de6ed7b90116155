//! Signing in with the admin token, and out.

use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use maud::html;

use super::super::layout::{self, Section};
use super::super::session;
use super::super::{ConsoleError, Operator, Posted, SameOrigin};
use crate::http::admin::{is_admin_token, refused};
use crate::http::AppState;

/// How long a wrong token waits for its answer: guessing is slow.
const WRONG_TOKEN_DELAY: Duration = Duration::from_millis(500);

/// The sign-in form (or the overview, for an operator already signed in).
pub async fn form(request: HttpRequest) -> HttpResponse {
    if Operator::of(&request).is_ok() {
        return layout::see_other("/console");
    }
    page(None)
}

fn page(error: Option<&str>) -> HttpResponse {
    let markup = layout::page(
        "Sign in",
        Section::None,
        None,
        html! {
            form.signin method="post" action="/console/sign-in" {
                @if let Some(error) = error {
                    p.notice.error role="alert" { (error) }
                }
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button type="submit" { "Sign in" }
                p.muted { "The token of " code { "[admin] token" } " in the config. Signing in opens a session of at most 12 hours (30 minutes idle)." }
            }
        },
    );
    layout::respond(markup)
}

/// Exchanges the admin token for a session cookie.
pub async fn submit(
    form: SameOrigin,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> HttpResponse {
    let token = form.fields.get("token").unwrap_or_default();
    if !is_admin_token(&state, token) {
        refused(
            &state,
            &request,
            "console_wrong_token",
            "console sign-in with a wrong token",
        );
        tokio::time::sleep(WRONG_TOKEN_DELAY).await;
        let mut response = page(Some("That is not the admin token."));
        *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
        return response;
    }
    let id = state.sessions.open(token.as_bytes(), Instant::now());
    tracing::info!(peer = ?request.peer_addr(), "Operator signed in to the console.");
    let mut response = layout::see_other("/console");
    if let Ok(value) = header::HeaderValue::from_str(&session::set_cookie(&id)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Ends the session and removes its cookie.
pub async fn sign_out(
    posted: Posted,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    state.sessions.close(&posted.operator.id);
    let mut response = layout::see_other("/console/sign-in");
    if let Ok(value) = header::HeaderValue::from_str(&session::clear_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
