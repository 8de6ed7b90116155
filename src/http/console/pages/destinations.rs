//! Destinations: each one's state, queue, failures and dead events; pause and resume; replay
//! one dead event, those a filter selects, or all.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};
use serde::Deserialize;

use super::super::layout::{self, age, csrf_field, when, Section};
use super::super::session::Session;
use super::super::{ConsoleError, Operator, Posted};
use super::{badge, encode, notice};
use crate::event::Seq;
use crate::forward::DestinationView;
use crate::http::admin::destinations::{self, ReplayFilter};
use crate::http::admin::unavailable;
use crate::http::AppState;

/// Dead events listed per destination.
const DEAD_SHOWN: usize = 20;

#[derive(Debug, Default, Deserialize)]
pub struct Query {
    notice: Option<String>,
    count: Option<u64>,
    left: Option<u64>,
}

/// A destination's state in one word: `paused` (by an operator), `probing` (failing so often it
/// only probes), `failing` (its last attempts failed) or `running`.
pub fn state_of(view: &DestinationView) -> &'static str {
    if view.live.paused {
        "paused"
    } else if view.live.probing {
        "probing"
    } else if view.live.consecutive_failures > 0 {
        "failing"
    } else {
        "running"
    }
}

/// One dead event as listed: seq, event id (if still stored), when, attempts, last error.
struct Dead {
    seq: u64,
    event_id: Option<String>,
    at_ms: u64,
    attempts: u32,
    error: String,
}

pub async fn show(
    operator: Operator,
    query: Result<web::Query<Query>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    // A malformed query only loses its notice (or view), not the page.
    let query = query.map(web::Query::into_inner).unwrap_or_default();
    let views = destinations::views(&state).await?;
    let live = state.live();
    let mut sections = Vec::new();
    for view in &views {
        let Some(destination) = live.destination(&view.name) else {
            continue;
        };
        let mut dead = Vec::new();
        for (seq, record) in destination.dead(DEAD_SHOWN).await.map_err(unavailable)? {
            let event = state.store.event(seq).await.map_err(unavailable)?;
            dead.push(Dead {
                seq: seq.0,
                event_id: event.map(|e| e.event_id),
                at_ms: record.at_ms,
                attempts: record.attempts,
                error: record.error,
            });
        }
        sections.push(section(view, &dead, &operator.session));
    }
    let providers: Vec<String> = live
        .config
        .providers
        .iter()
        .map(|p| p.name.to_string())
        .collect();
    let markup = layout::page(
        "Destinations",
        Section::Destinations,
        Some(&operator.session),
        html! {
            (notice(query.notice.as_deref(), query.count, query.left))
            @if sections.is_empty() {
                p.muted { "No destination is configured." }
            }
            @for section in sections { (section) }
            @if !views.is_empty() {
                h2 { "Replay dead events" }
                form.filter method="post" action="/console/replay" {
                    (csrf_field(&operator.session))
                    label { "Destination"
                        select name="destination" {
                            option value="" { "all" }
                            @for view in &views { option value=(view.name) { (view.name) } }
                        }
                    }
                    label { "Provider"
                        select name="provider" {
                            option value="" { "any" }
                            @for name in &providers { option value=(name) { (name) } }
                        }
                    }
                    label { "From seq" input type="number" min="0" name="from_seq"; }
                    label { "To seq" input type="number" min="0" name="to_seq"; }
                    button type="submit" { "Replay the dead events that match" }
                }
            }
        },
    );
    Ok(layout::respond(markup))
}

fn section(view: &DestinationView, dead: &[Dead], session: &Session) -> Markup {
    let name = &view.name;
    let (action, label) = if view.live.paused {
        ("resume", "Resume")
    } else {
        ("pause", "Pause")
    };
    html! {
        section.destination #(name) {
            h2 { (name) " " span #{ "state-" (name) } { (badge(state_of(view))) } }
            p.muted { code { (view.url) } }
            div.scroll { table {
                thead { tr {
                    th { "Queue" } th { "Oldest pending" } th { "Failure ratio (1 h)" }
                    th { "Consecutive failures" } th { "Delivered" } th { "Dead" } th { "Replays queued" } th { "Cursor" }
                } }
                tbody { tr {
                    td.num { (view.queue_depth) }
                    td.num { (view.oldest_pending_age_s.map_or_else(|| "-".to_string(), age)) }
                    td.num { (format!("{:.0}%", view.live.failure_ratio_1h * 100.0)) }
                    td.num { (view.live.consecutive_failures) }
                    td.num { (view.live.delivered) }
                    td.num { (view.dead) }
                    td.num { (view.replay_queued) }
                    td.num { (view.cursor) }
                } }
            } }
            p.muted { "Delivered and failure counts run since hookgate started; queue, dead and cursor are stored." }
            @if let Some(error) = &view.live.last_error {
                p { "Last failed attempt: " (when(error.at_ms)) ", seq "
                    a href={ "/console/events/" (error.seq) } { (error.seq) } ": "
                    code { (error.kind) (error.status.map(|s| format!(" {s}")).unwrap_or_default()) " " (error.body) } }
            }
            form.inline method="post" action={ "/console/destinations/" (encode(name)) "/" (action) } {
                (csrf_field(session))
                button type="submit" #{ (action) "-" (name) } { (label) " " (name) }
            }
            " "
            @if view.dead > 0 {
                form.inline method="post" action="/console/replay" {
                    (csrf_field(session))
                    input type="hidden" name="destination" value=(name);
                    button.secondary type="submit" #{ "replay-all-" (name) } { "Replay all " (view.dead) " dead" }
                }
                h3 { "Dead events" @if view.dead as usize > dead.len() { " (the oldest " (dead.len()) ")" } }
                div.scroll { table {
                    thead { tr { th { "Seq" } th { "Event id" } th { "Dead since" } th { "Attempts" } th { "Last error" } th {} } }
                    tbody { @for dead in dead {
                        tr {
                            td.num { a href={ "/console/events/" (dead.seq) } { (dead.seq) } }
                            td { code { (dead.event_id.as_deref().unwrap_or("(removed)")) } }
                            td.num { (when(dead.at_ms)) }
                            td.num { (dead.attempts) }
                            td { code { (dead.error) } }
                            td {
                                form.inline method="post" action={ "/console/events/" (dead.seq) "/replay" } {
                                    (csrf_field(session))
                                    input type="hidden" name="destination" value=(name);
                                    input type="hidden" name="back" value="destinations";
                                    button.secondary type="submit" #{ "replay-" (name) "-" (dead.seq) } { "Replay" }
                                }
                            }
                        }
                    } }
                } }
            }
        }
    }
}

pub async fn pause(
    posted: Posted,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    set_paused(posted, &name, true, &state).await
}

pub async fn resume(
    posted: Posted,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    set_paused(posted, &name, false, &state).await
}

async fn set_paused(
    _: Posted,
    name: &str,
    paused: bool,
    state: &AppState,
) -> Result<HttpResponse, ConsoleError> {
    destinations::set_paused(name, paused, state).await?;
    let notice = if paused { "paused" } else { "resumed" };
    Ok(layout::see_other(&format!(
        "/console/destinations?notice={notice}#{}",
        encode(name)
    )))
}

/// Replays the dead events the form selects (destination, provider, seq range; all if empty).
pub async fn replay(
    posted: Posted,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let fields = &posted.fields;
    let filter = ReplayFilter {
        destination: fields.get("destination").map(str::to_string),
        provider: fields.get("provider").map(str::to_string),
        from_seq: fields.number("from_seq")?,
        to_seq: fields.number("to_seq")?,
    };
    let replayed = destinations::replay_dead_events(&filter, &state).await?;
    Ok(layout::see_other(&format!(
        "/console/destinations?notice=replayed&count={}&left={}",
        replayed.queued, replayed.left
    )))
}

/// The page a replay of one seq returns to: the destinations page when it was posted from
/// there, else the event's.
pub fn after_replay(back: Option<&str>, seq: Seq) -> String {
    match back {
        Some("destinations") => "/console/destinations?notice=replayed&count=1".to_string(),
        _ => format!("/console/events/{}?notice=replayed&count=1", seq.0),
    }
}
