//! One file per page of the console, each with the actions its forms post.

pub mod consumers;
pub mod destinations;
pub mod event;
pub mod events;
pub mod overview;
pub mod sign_in;

use maud::{html, Markup};

/// A delivery or destination state as a coloured badge (`delivered`, `pending`, `dead`,
/// `skipped`, `running`, `paused`, `probing`).
pub fn badge(state: &str) -> Markup {
    html! { span.state.(state) { (state) } }
}

/// The message a page shows after an action, named in its `notice` query parameter (a fixed
/// set, so no text from the URL reaches the page).
pub fn notice(code: Option<&str>, count: Option<u64>, left: Option<u64>) -> Markup {
    let text = match code {
        Some("paused") => "Destination paused: nothing is sent until it is resumed.".to_string(),
        Some("resumed") => "Destination resumed.".to_string(),
        Some("replayed") => {
            let queued = match count {
                Some(1) => "1 event queued for delivery again.".to_string(),
                Some(n) => format!("{n} events queued for delivery again."),
                None => "Events queued for delivery again.".to_string(),
            };
            match left {
                Some(left) if left > 0 => format!(
                    "{queued} {left} stay dead: a destination holds at most {} replays at once; \
                     replay them once these are delivered.",
                    crate::forward::MAX_QUEUED_REPLAYS
                ),
                _ => queued,
            }
        }
        _ => return html! {},
    };
    html! { p.notice role="status" { (text) } }
}

/// A percent-encoded query or path component.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
