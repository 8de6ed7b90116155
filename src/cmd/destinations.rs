//! `hookgate destinations [list]` and `hookgate destinations pause|resume NAME`: each
//! destination's queue and state (`GET /v1/destinations`), and the operator's pause.

use clap::Subcommand;
use serde_json::{json, Value};

use super::admin_client::{Admin, AdminArgs, Failure};
use super::table::{listing, show, Cell};

#[derive(Debug, clap::Args)]
pub struct DestinationsArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: Option<DestinationsCommand>,
}

#[derive(Debug, Subcommand)]
enum DestinationsCommand {
    /// Each destination: state, queue depth, oldest pending event, dead events, last error (the
    /// default).
    List,
    /// Stop sending to a destination (durable across restarts); events keep queueing.
    Pause {
        /// The destination's name.
        name: String,
    },
    /// Start sending to a paused destination again.
    Resume {
        /// The destination's name.
        name: String,
    },
}

pub fn run(args: &DestinationsArgs) -> Result<(), Failure> {
    let admin = Admin::connect(&args.admin)?;
    let (name, action) = match &args.command {
        None | Some(DestinationsCommand::List) => {
            return admin.show(&["v1", "destinations"], &[], print_list);
        }
        Some(DestinationsCommand::Pause { name }) => (name, "pause"),
        Some(DestinationsCommand::Resume { name }) => (name, "resume"),
    };
    let answer = admin.post(&["v1", "destinations", name, action], &json!({}))?;
    admin.print(&answer, |answer| {
        let done = if answer["paused"] == json!(true) {
            "paused"
        } else {
            "resumed"
        };
        println!("{name} {done}.");
    });
    Ok(())
}

fn print_list(list: &Value) {
    let columns = [
        ("NAME", Cell::Field("name")),
        ("STATE", Cell::With(state)),
        ("CURSOR", Cell::Field("cursor")),
        ("QUEUE", Cell::Field("queue_depth")),
        ("OLDEST", Cell::Age("oldest_pending_age_s")),
        ("DEAD", Cell::Field("dead")),
        ("REPLAYING", Cell::Field("replay_queued")),
        ("DELIVERED", Cell::Field("delivered")),
        ("FAILURES", Cell::Field("consecutive_failures")),
        ("LAST ERROR", Cell::With(last_error)),
    ];
    listing(&list["destinations"], &columns).print();
}

/// `paused` by an operator, `probing` after too many failures, else `active`.
fn state(destination: &Value) -> String {
    let state = if destination["paused"] == json!(true) {
        "paused"
    } else if destination["probing"] == json!(true) {
        "probing"
    } else {
        "active"
    };
    state.to_string()
}

/// `seq N: <status or kind>` of the last failed attempt; `-` for none.
fn last_error(destination: &Value) -> String {
    let error = &destination["last_error"];
    if error.is_null() {
        return "-".to_string();
    }
    let what = match error["status"].as_u64() {
        Some(status) => status.to_string(),
        None => show(&error["kind"]),
    };
    format!("seq {}: {what}", show(&error["seq"]))
}
