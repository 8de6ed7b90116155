//! `hookgate consumers`: each pull consumer's cursor and lag (`GET /v1/consumers`).

use serde_json::Value;

use super::admin_client::{Admin, AdminArgs, Failure};
use super::table::{listing, show, Cell};

pub fn run(args: &AdminArgs) -> Result<(), Failure> {
    Admin::connect(args)?.show(&["v1", "consumers"], &[], print_list)
}

fn print_list(list: &Value) {
    let columns = [
        ("NAME", Cell::Field("name")),
        ("PROVIDERS", Cell::With(providers)),
        ("CURSOR", Cell::Field("cursor")),
        ("LAST SEQ", Cell::Field("last_seq")),
        ("LAG", Cell::Field("lag")),
        ("OLDEST", Cell::Age("oldest_pending_age_s")),
    ];
    listing(&list["consumers"], &columns).print();
}

/// `a,b`, or `all` when the consumer takes every provider.
fn providers(consumer: &Value) -> String {
    match consumer["providers"].as_array() {
        Some(names) => names.iter().map(show).collect::<Vec<_>>().join(","),
        None => "all".to_string(),
    }
}
