//! `hookgate dead list DEST` and `hookgate dead replay DEST [SEQ...|--all]`: a destination's
//! dead events (`GET /v1/dead`) and their replay (`POST /v1/dead/replay`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::admin_client::{Admin, AdminArgs, Failure};
use super::table::{listing, Cell};

#[derive(Debug, clap::Args)]
pub struct DeadArgs {
    #[command(flatten)]
    admin: AdminArgs,
    #[command(subcommand)]
    command: DeadCommand,
}

#[derive(Debug, Subcommand)]
enum DeadCommand {
    /// A destination's dead events, oldest first: when each died, after how many attempts, and
    /// the last error.
    List {
        /// The destination's name.
        destination: String,
        /// Only events after this seq (a previous page's last).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// How many at most (default 100, at most 1000).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Queue dead events for delivery again: the given seqs, or every dead one with --all.
    Replay {
        /// The destination's name.
        destination: String,
        /// Seqs of dead events to replay.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        seqs: Vec<u64>,
        /// Replay every dead event of the destination.
        #[arg(long)]
        all: bool,
    },
}

pub fn run(args: &DeadArgs) -> Result<(), Failure> {
    let admin = Admin::connect(&args.admin)?;
    match &args.command {
        DeadCommand::List {
            destination,
            after,
            limit,
        } => {
            let mut query = vec![
                ("destination", destination.clone()),
                ("after", after.to_string()),
            ];
            query.extend(limit.iter().map(|l| ("limit", l.to_string())));
            admin.show(&["v1", "dead"], &query, print_dead)
        }
        DeadCommand::Replay {
            destination,
            seqs,
            all: _,
        } => replay(&admin, destination, seqs),
    }
}

fn print_dead(dead: &Value) {
    let columns = [
        ("SEQ", Cell::Field("seq")),
        ("DEAD SINCE", Cell::Time("at_ms")),
        ("ATTEMPTS", Cell::Field("attempts")),
        ("LAST ERROR", Cell::Field("error")),
    ];
    listing(&dead["dead"], &columns).print();
    if let Some(next) = dead["next_after"].as_u64() {
        println!("(more: --after {next})");
    }
}

/// Replays `seqs` (every dead event when empty), one request a seq so that each one not dead
/// is named; answers `{"replayed": N, "left_dead": M}` in all (those the destination's queue of
/// replays had no room for stay dead).
fn replay(admin: &Admin, destination: &str, seqs: &[u64]) -> Result<(), Failure> {
    let route = ["v1", "dead", "replay"];
    let mut replayed = 0;
    let mut left_dead = 0;
    let (mut not_dead, mut not_queued) = (Vec::new(), Vec::new());
    if seqs.is_empty() {
        let answer = admin.post(&route, &json!({ "destination": destination }))?;
        replayed = answer["replayed"].as_u64().unwrap_or(0);
        left_dead = answer["left_dead"].as_u64().unwrap_or(0);
    }
    for seq in seqs {
        let filter = json!({ "destination": destination, "from_seq": seq, "to_seq": seq });
        let answer = admin.post(&route, &filter)?;
        match (answer["replayed"].as_u64(), answer["left_dead"].as_u64()) {
            (Some(n), _) if n > 0 => replayed += n,
            (_, Some(n)) if n > 0 => {
                left_dead += n;
                not_queued.push(seq.to_string());
            }
            _ => not_dead.push(seq.to_string()),
        }
    }
    admin.print(
        &json!({ "replayed": replayed, "left_dead": left_dead }),
        |_| {
            println!("{replayed} dead event(s) of {destination} queued for delivery again.");
            if left_dead > 0 {
                println!(
                    "{left_dead} stay dead: a destination holds at most {} replays at once; \
                     replay them once these are delivered.",
                    crate::forward::MAX_QUEUED_REPLAYS
                );
            }
        },
    );
    // Seqs named and not replayed fail the command (with `--all`, a queue that took only part
    // of the dead events is said above, and the rest wait for the next run).
    let mut problems = Vec::new();
    if !not_dead.is_empty() {
        problems.push(format!(
            "not dead at {destination}, not replayed: {}",
            not_dead.join(", ")
        ));
    }
    if !not_queued.is_empty() {
        problems.push(format!(
            "the queue of replays of {destination} is full, not replayed: {}",
            not_queued.join(", ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::Api(problems.join("; ")))
    }
}
