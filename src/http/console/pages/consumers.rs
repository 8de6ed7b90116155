//! Pull consumers' cursors and lag, and the pollers' cursors and last results.

use actix_web::{web, HttpResponse};
use maud::html;

use super::super::layout::{self, age, when, Section};
use super::super::{ConsoleError, Operator};
use super::badge;
use crate::http::admin::consumers::lags;
use crate::http::AppState;

pub async fn show(
    operator: Operator,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ConsoleError> {
    let consumers = lags(&state).await?;
    let live = state.live();
    let now_ms = crate::store::now_ms();
    let ago = |ms: u64| age(now_ms.saturating_sub(ms) as f64 / 1000.0);
    let markup = layout::page(
        "Consumers & pollers",
        Section::Consumers,
        Some(&operator.session),
        html! {
            h2 { "Pull consumers" }
            @if consumers.is_empty() {
                p.muted { "No " code { "[[consumer]]" } " is configured." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Consumer" } th { "Providers" } th { "Cursor" } th { "Last seq" } th { "Lag" } th { "Oldest pending" } } }
                    tbody { @for consumer in &consumers {
                        tr {
                            th scope="row" { (consumer.name) }
                            td { (consumer.providers.as_ref().map_or_else(|| "all".to_string(), |p| p.join(", "))) }
                            td.num { (consumer.cursor) }
                            td.num { (consumer.last_seq) }
                            td.num { (consumer.lag) }
                            td.num { (consumer.oldest_pending_age_s.map_or_else(|| "-".to_string(), age)) }
                        }
                    } }
                } }
                p.muted { "Lag counts every event after the cursor, of any provider: a cursor moves only when its consumer acks." }
            }
            h2 { "Pollers" }
            @if live.pollers.is_empty() {
                p.muted { "No provider has a " code { "[provider.sync]" } " section." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "Provider" } th { "State" } th { "Cursor" } th { "Rounds" } th { "Every" } th { "Last success" } th { "Last error" } } }
                    tbody { @for poller in &live.pollers {
                        @let status = poller.status();
                        tr {
                            th scope="row" { (poller.provider) }
                            td { (badge(if status.running { "running" } else if status.last_error_ms > status.last_success_ms { "failing" } else { "waiting" })) }
                            td { code { (if status.cursor_set { status.cursor.as_deref().map_or_else(|| "(from the start)".to_string(), |cursor| poller.shown_cursor(cursor)) } else { "(not set yet)".to_string() }) } }
                            td.num { (status.rounds) }
                            td.num { (humantime::format_duration(poller.config.interval)) }
                            td.num { (status.last_success_ms.map_or_else(|| "never".to_string(), |ms| format!("{} ({} ago)", when(ms), ago(ms)))) }
                            td {
                                @if let (Some(at), Some(message)) = (status.last_error_ms, &status.last_error) {
                                    (when(at)) ": " code { (message) }
                                } @else { "-" }
                            }
                        }
                    } }
                } }
            }
        },
    );
    Ok(layout::respond(markup))
}
