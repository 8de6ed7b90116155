//! Event search: by provider, event id, seq range and time; each match links to its page.

use actix_web::{web, HttpResponse};
use maud::html;
use serde::Deserialize;

use super::super::layout::{self, when, Section};
use super::super::search::{self, Filter, MAX_RESULTS, SCAN_LIMIT};
use super::super::{ConsoleError, Operator};
use super::badge;
use crate::http::admin::{events::deliveries, unavailable};
use crate::http::{ApiError, AppState};

/// The search form's fields, as the browser sends them (empty ones included).
#[derive(Debug, Default, Deserialize)]
pub struct Query {
    #[serde(default)]
    provider: String,
    #[serde(default)]
    event_id: String,
    #[serde(default)]
    from_seq: String,
    #[serde(default)]
    to_seq: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

impl Query {
    /// The filter, or a 400 for a seq or time that does not parse.
    fn filter(&self) -> Result<Filter, ApiError> {
        let text = |value: &str| Some(value.trim().to_string()).filter(|v| !v.is_empty());
        let number = |value: &str| {
            text(value)
                .map(|v| v.parse::<u64>().map_err(|_| ApiError::BadRequest))
                .transpose()
        };
        let time = |value: &str| {
            text(value)
                .map(|v| search::parse_time(&v).ok_or(ApiError::BadRequest))
                .transpose()
        };
        Ok(Filter {
            provider: text(&self.provider),
            event_id: text(&self.event_id),
            from_seq: number(&self.from_seq)?,
            to_seq: number(&self.to_seq)?,
            since_ms: time(&self.since)?,
            until_ms: time(&self.until)?,
        })
    }
}

pub async fn search(
    operator: Operator,
    query: Result<web::Query<Query>, actix_web::Error>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let query = query.map_err(|_| ApiError::BadRequest)?.into_inner();
    let filter = query.filter()?;
    let found = search::search(&state.store, &filter)
        .await
        .map_err(unavailable)?;
    let mut rows = Vec::with_capacity(found.events.len());
    for event in &found.events {
        rows.push((event, deliveries(event, &state).await?));
    }
    let live = state.live();
    let markup = layout::page(
        "Events",
        Section::Events,
        Some(&operator.session),
        html! {
            form.search method="get" action="/console/events" role="search" {
                label { "Provider"
                    select name="provider" {
                        option value="" { "any" }
                        @for provider in &live.config.providers {
                            @let name = provider.name.as_str();
                            option value=(name) selected[query.provider == name] { (name) }
                        }
                    }
                }
                label { "Event id contains" input type="search" name="event_id" value=(query.event_id); }
                label { "From seq" input type="number" min="0" name="from_seq" value=(query.from_seq); }
                label { "To seq" input type="number" min="0" name="to_seq" value=(query.to_seq); }
                label { "Received from (UTC)" input type="datetime-local" name="since" value=(query.since); }
                label { "until (UTC)" input type="datetime-local" name="until" value=(query.until); }
                button type="submit" { "Search" }
            }
            p.muted {
                @match found.scanned {
                    Some((first, last)) => { "Looked at seqs " (first) " to " (last) ". " }
                    None => { "No event to look at. " }
                }
                "A search reads at most " (SCAN_LIMIT) " events (from \u{201c}From seq\u{201d}, else the latest) and shows the newest " (MAX_RESULTS) " matches."
                @if found.truncated { strong { " More matched than are shown: narrow the search." } }
            }
            @if rows.is_empty() {
                p { "No event matches." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Seq" } th { "Received" } th { "Provider" } th { "Event id" } th { "Source" } th { "Deliveries" } } }
                        tbody {
                            @for (event, deliveries) in &rows {
                                tr {
                                    td.num { a href={ "/console/events/" (event.seq) } { (event.seq) } }
                                    td.num { (when(event.received_at_ms)) }
                                    td { (event.provider) }
                                    td { a href={ "/console/events/" (event.seq) } { code { (event.event_id) } } }
                                    td { (event.source.as_str()) }
                                    td {
                                        @for (destination, there) in deliveries {
                                            span.muted { (destination) " " } (badge(there)) " "
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(layout::respond(markup))
}
