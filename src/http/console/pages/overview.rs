//! The overview: per provider, the last hour minute by minute (requests, accepted, duplicates,
//! 401s); the ack latency; the store's size, last seq and oldest event; the destinations at a
//! glance.

use actix_web::{web, HttpResponse};
use maud::{html, Markup};

use super::super::chart::chart;
use super::super::layout::{self, age, bytes, Section};
use super::super::{ConsoleError, Operator};
use crate::event::Seq;
use crate::http::admin::{destinations, unavailable};
use crate::http::AppState;
use crate::metrics::recent::{minute_now, Minute, MINUTES};
use crate::metrics::UNKNOWN_PROVIDER;

pub async fn show(
    operator: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let live = state.live();
    let minute = minute_now();
    let recent = state.metrics.recent.providers(minute);
    // Every configured provider, with or without traffic; then unknown ones (404s).
    let mut rows: Vec<(String, Vec<Minute>)> = live
        .config
        .providers
        .iter()
        .map(|p| {
            let name = p.name.to_string();
            let minutes = recent
                .iter()
                .find(|(seen, _)| *seen == name)
                .map_or_else(|| vec![Minute::default(); MINUTES], |(_, m)| m.clone());
            (name, minutes)
        })
        .collect();
    rows.extend(
        recent
            .iter()
            .filter(|(name, _)| name == UNKNOWN_PROVIDER)
            .cloned(),
    );
    let p50 = state.metrics.recent.latency_quantile(0.5, minute);
    let p99 = state.metrics.recent.latency_quantile(0.99, minute);
    let last_seq = *state.store.last_seq().borrow();
    let oldest = state
        .store
        .events_after(Seq(0), 1, None)
        .await
        .map_err(unavailable)?
        .first()
        .map(|e| crate::store::now_ms().saturating_sub(e.received_at_ms) as f64 / 1000.0);
    let size = state.store.size_on_disk().await.map_err(unavailable)?;
    let views = destinations::views(&state).await?;
    let markup = layout::page(
        "Overview",
        Section::Overview,
        Some(&operator.session),
        html! {
            div.cards {
                (card("Ack latency p50 (last hour)", &latency(p50), "time from a verified request to its durable 200"))
                (card("Ack latency p99 (last hour)", &latency(p99), "bucket upper bound"))
                (card("Store size", &bytes(size), "on disk"))
                (card("Last seq", &last_seq.0.to_string(), "events stored since the store was created"))
                (card("Oldest event kept", &oldest.map_or_else(|| "none".to_string(), |s| format!("{} old", age(s))), "retention removes what every output is done with"))
                @if state.is_draining() {
                    (card("Draining", "yes", "new webhooks are refused"))
                }
            }
            h2 { "Webhooks, last hour" }
            p.muted { "Bars are minutes, oldest on the left; each chart is scaled to its own peak. Rate: the last complete minute." }
            div.scroll {
                table {
                    thead { tr {
                        th { "Provider" } th { "Requests/s" } th { "Requests" }
                        th { "Accepted" } th { "Duplicates" } th { "401s" }
                    } }
                    tbody {
                        @for (name, minutes) in &rows {
                            (provider_row(name, minutes))
                        }
                    }
                }
            }
            h2 { "Destinations" }
            @if views.is_empty() {
                p.muted { "No destination is configured." }
            } @else {
                div.scroll {
                    table {
                        thead { tr { th { "Destination" } th { "State" } th { "Queue" } th { "Oldest pending" } th { "Failures (1 h)" } th { "Dead" } } }
                        tbody {
                            @for view in &views {
                                tr {
                                    td { a href={ "/console/destinations#" (view.name) } { (view.name) } }
                                    td { (super::badge(super::destinations::state_of(view))) }
                                    td.num { (view.queue_depth) }
                                    td.num { (view.oldest_pending_age_s.map_or_else(|| "-".to_string(), age)) }
                                    td.num { (format!("{:.0}%", view.live.failure_ratio_1h * 100.0)) }
                                    td.num { (view.dead) }
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

fn card(label: &str, figure: &str, note: &str) -> Markup {
    html! {
        div.card {
            div.label { (label) }
            div.figure { (figure) }
            div.muted { (note) }
        }
    }
}

fn latency(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1.0 => format!("≤ {} ms", trim(s * 1000.0)),
        Some(s) => format!("≤ {} s", trim(s)),
        None => "no acks".to_string(),
    }
}

/// A figure with at most one decimal, and none when it is whole.
fn trim(value: f64) -> String {
    let text = format!("{value:.1}");
    text.strip_suffix(".0").map_or(text.clone(), str::to_string)
}

fn provider_row(name: &str, minutes: &[Minute]) -> Markup {
    let series = |f: fn(&Minute) -> u64| minutes.iter().map(f).collect::<Vec<u64>>();
    let requests = series(|m| m.requests);
    let accepted = series(|m| m.accepted);
    let duplicates = series(|m| m.duplicates);
    let unauthorized = series(|m| m.unauthorized);
    let last_complete = minutes
        .len()
        .checked_sub(2)
        .map_or(0, |i| minutes[i].requests);
    let cell = |values: &[u64], what: &str, class: &str| {
        html! {
            td {
                div.num { (values.iter().sum::<u64>()) }
                (chart(values, &format!("{what} of {name}"), class))
            }
        }
    };
    html! {
        tr {
            th scope="row" { (name) }
            td.num { (trim(last_complete as f64 / 60.0)) }
            (cell(&requests, "requests", ""))
            (cell(&accepted, "accepted", ""))
            (cell(&duplicates, "duplicates", "muted"))
            (cell(&unauthorized, "401s", "bad"))
        }
    }
}
