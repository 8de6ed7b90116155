//! One event: what was received (the headers hookgate keeps, the body pretty-printed or raw,
//! the source), where it stands for each destination with its recent failed attempts, and a
//! replay per destination.

use actix_web::{web, HttpResponse};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use maud::{html, Markup};
use serde::Deserialize;

use super::super::indent;
use super::super::layout::{self, csrf_field, when, Section};
use super::super::{ConsoleError, Operator, Posted};
use super::{badge, encode, notice};
use crate::event::Seq;
use crate::http::admin::{events, unavailable};
use crate::http::{ApiError, AppState};
use crate::store::StoredEvent;

/// Failed attempts shown per destination.
const ATTEMPTS_SHOWN: usize = 10;

#[derive(Debug, Default, Deserialize)]
pub struct Query {
    /// `raw`: the body as received, even when it is JSON.
    view: Option<String>,
    notice: Option<String>,
    count: Option<u64>,
}

fn seq_of(path: &str) -> Result<Seq, ConsoleError> {
    path.parse().map(Seq).map_err(|_| ApiError::NotFound.into())
}

pub async fn show(
    operator: Operator,
    seq: web::Path<String>,
    query: Result<web::Query<Query>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    // A malformed query only loses its notice (or view), not the page.
    let query = query.map(web::Query::into_inner).unwrap_or_default();
    let seq = seq_of(&seq)?;
    let event = events::stored(seq, &state).await?;
    let raw = query.view.as_deref() == Some("raw");
    let mut delivery_rows = Vec::new();
    let live = state.live();
    for (name, there) in events::deliveries(&event, &state).await? {
        let Some(destination) = live.destination(&name) else {
            continue;
        };
        let marks = state.store.marks(&name, seq).await.map_err(unavailable)?;
        let attempts: Vec<_> = destination
            .status
            .errors(usize::MAX)
            .into_iter()
            .filter(|e| e.seq == seq.0)
            .take(ATTEMPTS_SHOWN)
            .collect();
        delivery_rows.push((name, there, marks.dead, attempts));
    }
    let session = &operator.session;
    let markup = layout::page(
        &format!("Event {}", seq.0),
        Section::Events,
        Some(session),
        html! {
            (notice(query.notice.as_deref(), query.count, None))
            div.scroll { table {
                tbody {
                    tr { th { "Seq" } td.num { (event.seq) } }
                    tr { th { "Provider" } td { (event.provider) } }
                    tr { th { "Event id" } td { code #event-id { (event.event_id) } } }
                    tr { th { "Received" } td { (when(event.received_at_ms)) } }
                    tr { th { "Source" } td { (event.source.as_str()) } }
                    tr { th { "Size" } td.num { (event.body.len()) " bytes" } }
                }
            } }
            h2 { "Headers" }
            (headers(&event))
            h2 { "Delivery" }
            @if delivery_rows.is_empty() {
                p.muted { "No destination takes events of " (event.provider) "." }
            }
            @for (name, there, dead, attempts) in &delivery_rows {
                section.destination {
                    h3 { (name) " " span.delivery #{ "delivery-" (name) } { (badge(there)) } }
                    @if let Some(dead) = dead {
                        p { "Dead since " (when(dead.at_ms)) " after " (dead.attempts) " attempts. Last error: " code { (dead.error) } }
                    }
                    @if !attempts.is_empty() {
                        div.scroll { table {
                            thead { tr { th { "Failed attempt" } th { "Status" } th { "Kind" } th { "Answer" } } }
                            tbody { @for attempt in attempts {
                                tr {
                                    td.num { (when(attempt.at_ms)) }
                                    td.num { (attempt.status.map_or_else(|| "-".to_string(), |s| s.to_string())) }
                                    td { (attempt.kind) }
                                    td { code { (attempt.body) } }
                                }
                            } }
                        } }
                        p.muted { "Failed attempts since hookgate started, newest first; a delivery leaves no trace here." }
                    }
                    @if *there != "skipped" {
                        form.inline method="post" action={ "/console/events/" (event.seq) "/replay" } {
                            (csrf_field(session))
                            input type="hidden" name="destination" value=(name);
                            button.secondary type="submit" { "Deliver to " (name) " again" }
                        }
                    }
                }
            }
            h2 { "Body" }
            (body(&event, raw))
        },
    );
    Ok(layout::respond(markup))
}

/// The headers hookgate keeps of the request, and those its deliveries carry.
fn headers(event: &StoredEvent) -> Markup {
    html! {
        div.scroll { table {
            tbody {
                tr { th { "Content-Type" } td { code { (event.content_type.as_deref().unwrap_or("(none)")) } } }
                @if let Some(topic) = &event.topic {
                    tr { th { "Topic" } td { code { (topic) } } }
                }
                tr { th { "webhook-id (downstream)" } td { code { (event.provider) ":" (event.event_id) } } }
                tr { th { "hookgate-provider" } td { code { (event.provider) } } }
                tr { th { "hookgate-seq" } td { code { (event.seq) } } }
                tr { th { "hookgate-source" } td { code { (event.source.as_str()) } } }
            }
        } }
        p.muted { "hookgate stores the body, its Content-Type and the event's topic; the sender's other headers (signatures included) are checked, then not kept." }
    }
}

/// The most of a body the page shows (after layout or escaping): a page is built whole in
/// memory, on the admin listener's one worker.
const SHOWN_BYTES: usize = 1 << 20;

/// The body: laid out when it is JSON (unless `raw`), else the text, else base64; at most
/// [`SHOWN_BYTES`] of it.
fn body(event: &StoredEvent, raw: bool) -> Markup {
    let json = (!raw)
        .then(|| serde_json::from_slice::<serde::de::IgnoredAny>(&event.body).ok())
        .flatten()
        .and_then(|_| std::str::from_utf8(&event.body).ok());
    let link = format!("/console/events/{}", event.seq);
    let (shown, cut) = match (json, std::str::from_utf8(&event.body)) {
        (Some(json), _) => indent::indent(json, SHOWN_BYTES),
        (None, Ok(text)) => {
            let (text, cut) = indent::cut_text(text, SHOWN_BYTES);
            (text.to_string(), cut)
        }
        (None, Err(_)) => {
            let bytes = &event.body[..event.body.len().min(SHOWN_BYTES / 4 * 3)];
            (BASE64.encode(bytes), bytes.len() < event.body.len())
        }
    };
    html! {
        @if json.is_some() {
            p.muted { "JSON, laid out (keys, numbers and escapes as received). " a href={ (link) "?view=" (encode("raw")) } { "Show the bytes as received" } }
        } @else if std::str::from_utf8(&event.body).is_ok() {
            @if raw { p.muted { "As received. " a href=(link) { "Lay out" } } }
        } @else {
            p.muted { "Not UTF-8: base64 of the bytes received." }
        }
        @if cut {
            p.muted { "Only the first " (SHOWN_BYTES >> 20) " MiB is shown; the whole body: "
                code { "hookgate events show " (event.seq) } " or " code { "GET /v1/events/" (event.seq) } "." }
        }
        pre #body { (shown) }
    }
}

/// Queues the event for delivery to one destination again.
pub async fn replay(
    posted: Posted,
    seq: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let seq = seq_of(&seq)?;
    let destination = posted
        .fields
        .get("destination")
        .ok_or(ApiError::BadRequest)?;
    events::replay_one(seq, destination, &state).await?;
    Ok(layout::see_other(&super::destinations::after_replay(
        posted.fields.get("back"),
        seq,
    )))
}
