//! The operator's console: server-rendered HTML pages on the admin listener only, under
//! `/console`. An operator signs in with the admin token ([`session`]); every page then reads
//! what the admin API reads, through the same functions (`http/admin/`), and every action
//! (pause, resume, replay) is a form protected against cross-site requests ([`csrf`]), which
//! [`access`] checks.
//!
//! Pages ([`pages`]): the overview (the last hour per provider, ack latency, the store), event
//! search and one event, destinations (with their dead events and replays), consumers and
//! pollers.

mod access;
mod chart;
mod csrf;
mod error;
mod indent;
mod layout;
mod pages;
mod search;
mod session;

use actix_web::{web, HttpResponse};

pub use access::{Operator, Posted, SameOrigin};
pub use error::ConsoleError;
pub use session::Sessions;

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
