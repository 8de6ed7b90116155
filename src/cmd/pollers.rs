//! `hookgate pollers`: each provider's sync poller, its cursor, last success and last error
//! (`GET /v1/pollers`).

use serde_json::Value;

use super::admin_client::{Admin, AdminArgs, Failure};
use super::table::{listing, show, Cell};

pub fn run(args: &AdminArgs) -> Result<(), Failure> {
    Admin::connect(args)?.show(&["v1", "pollers"], &[], print_list)
}

fn print_list(list: &Value) {
    let columns = [
        ("PROVIDER", Cell::Field("provider")),
        ("CURSOR", Cell::Field("cursor")),
        ("RUNNING", Cell::Field("running")),
        ("ROUNDS", Cell::Field("rounds")),
        ("LAST SUCCESS", Cell::Field("last_success_at")),
        ("LAST ERROR", Cell::With(last_error)),
    ];
    listing(&list["pollers"], &columns).print();
}

/// `<when>: <message>` of the poller's last error; `-` for none.
fn last_error(poller: &Value) -> String {
    let error = &poller["last_error"];
    if error.is_null() {
        return "-".to_string();
    }
    format!("{}: {}", show(&error["at"]), show(&error["message"]))
}
