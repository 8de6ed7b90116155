//! `hookgate events list` and `hookgate events show SEQ`: the stored events, from
//! `GET /v1/events` and `GET /v1/events/{seq}`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use clap::Subcommand;
use serde_json::Value;

use super::admin_client::{Admin, AdminArgs, Failure};
use super::table::{clean, listing, show, Cell, Table};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Stored events in seq order, with their delivery state per destination.
    List {
        /// Only this provider's events.
        #[arg(long)]
        provider: Option<String>,
        /// Only events after this seq (a previous page's last).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many at most (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// One event: what was received, its delivery state, and its body (pretty-printed when
    /// it is JSON).
    Show {
        /// The event's seq.
        seq: u64,
    },
}

pub fn run(args: &EventsArgs) -> Result<(), Failure> {
    let admin = Admin::connect(&args.admin)?;
    match &args.command {
        EventsCommand::List {
            provider,
            after,
            limit,
        } => {
            let mut query = vec![("after", after.to_string())];
            query.extend(provider.iter().map(|p| ("provider", p.clone())));
            query.extend(limit.iter().map(|l| ("limit", l.to_string())));
            admin.show(&["v1", "events"], &query, print_list)
        }
        EventsCommand::Show { seq } => {
            admin.show(&["v1", "events", &seq.to_string()], &[], print_event)
        }
    }
}

fn print_list(page: &Value) {
    let columns = [
        ("SEQ", Cell::Field("seq")),
        ("RECEIVED", Cell::Field("received_at")),
        ("PROVIDER", Cell::Field("provider")),
        ("SOURCE", Cell::Field("source")),
        ("EVENT ID", Cell::Field("event_id")),
        ("BYTES", Cell::With(size)),
        ("DELIVERIES", Cell::With(deliveries)),
    ];
    listing(&page["events"], &columns).print();
    if let Some(next) = page["next_after"].as_u64() {
        println!("(more: --after {next})");
    }
}

fn print_event(event: &Value) {
    let body = body(event).unwrap_or_default();
    let mut fields = Table::fields();
    for (name, key) in [
        ("seq", "seq"),
        ("provider", "provider"),
        ("event id", "event_id"),
        ("received at", "received_at"),
        ("source", "source"),
        ("content type", "content_type"),
        ("topic", "topic"),
    ] {
        if !event[key].is_null() {
            fields.row([name.to_string(), show(&event[key])]);
        }
    }
    fields.row(["bytes".to_string(), body.len().to_string()]);
    fields.row(["deliveries".to_string(), deliveries(event)]);
    fields.print();
    println!();
    match (&event["json"], std::str::from_utf8(&body)) {
        (Value::Null, Ok(text)) => println!("{}", clean(text, true)),
        (Value::Null, Err(_)) => println!("(not UTF-8: --json shows body_base64)"),
        (json, _) => println!(
            "{}",
            clean(
                &serde_json::to_string_pretty(json).unwrap_or_default(),
                true
            )
        ),
    }
}

/// How many bytes were received.
fn size(event: &Value) -> String {
    body(event).map_or_else(|| "-".to_string(), |body| body.len().to_string())
}

/// The exact bytes received.
fn body(event: &Value) -> Option<Vec<u8>> {
    BASE64.decode(event["body_base64"].as_str()?).ok()
}

/// `destination=state` for each destination that takes the event; `-` for none.
fn deliveries(event: &Value) -> String {
    let states: Vec<String> = event["deliveries"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(destination, state)| format!("{destination}={}", show(state)))
        .collect();
    if states.is_empty() {
        "-".to_string()
    } else {
        states.join(" ")
    }
}
