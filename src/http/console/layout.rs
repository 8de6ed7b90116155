//! The console's page shell (head, navigation, sign-out form), its style sheet, and the helpers
//! every page formats with. Plain HTML and CSS that read without script and reflow on a phone.

use actix_web::http::header;
use actix_web::HttpResponse;
use maud::{html, Markup, DOCTYPE};

use super::session::Session;

/// Which page the navigation marks as current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Events,
    Destinations,
    Consumers,
    None,
}

/// A whole page; with a session, the navigation and the sign-out form.
pub fn page(title: &str, section: Section, session: Option<&Session>, body: Markup) -> Markup {
    let link = |href: &str, label: &str, this: Section| {
        html! { a href=(href) aria-current=[(this == section).then_some("page")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · hookgate" }
                link rel="stylesheet" href="/console/style.css";
            }
            body {
                header {
                    strong.brand { "hookgate" }
                    @if let Some(session) = session {
                        nav {
                            (link("/console", "Overview", Section::Overview))
                            (link("/console/events", "Events", Section::Events))
                            (link("/console/destinations", "Destinations", Section::Destinations))
                            (link("/console/consumers", "Consumers & pollers", Section::Consumers))
                        }
                        form.signout method="post" action="/console/sign-out" {
                            (csrf_field(session))
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// The hidden field that carries the session's CSRF token in a form.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A 200 HTML answer, with the headers every console page carries: no caching, no framing, no
/// referrer sent to other sites, and a policy that allows no script at all.
pub fn respond(markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    secure(&mut response);
    response
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

/// Adds the console's security headers to an answer being built. The referrer policy is
/// `same-origin`, not `no-referrer`: under `no-referrer` a browser sends `Origin: null` with the
/// console's own forms, which the origin check ([`super::csrf`]) must refuse.
pub fn secure(response: &mut actix_web::HttpResponseBuilder) {
    response
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
}

/// A 303 to `location` (after a form, so a reload does not post it again).
pub fn see_other(location: &str) -> HttpResponse {
    let mut response = HttpResponse::SeeOther();
    secure(&mut response);
    response
        .insert_header((header::LOCATION, location))
        .finish()
}

/// Milliseconds since the Unix epoch as `2026-12-02 21:06:07 UTC`.
pub fn when(ms: u64) -> String {
    let format = time::format_description::parse_borrowed::<1>(
        "[year]-[month]-[day] [hour]:[minute]:[second]",
    );
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000);
    match (format, at) {
        (Ok(format), Ok(at)) => at
            .format(&format)
            .map_or_else(|_| ms.to_string(), |at| format!("{at} UTC")),
        _ => ms.to_string(),
    }
}

/// A duration in seconds, short: `42 s`, `3 min`, `5 h 12 min`, `2 d 3 h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A byte count, short: `512 B`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The style sheet, served at `/console/style.css`.
pub const STYLE: &str = include_str!("style.css");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_short() {
        assert_eq!(age(42.4), "42 s");
        assert_eq!(age(600.0), "10 min");
        assert_eq!(age(3.0 * 3600.0 + 720.0), "3 h 12 min");
        assert_eq!(age(3.0 * 86_400.0 + 7200.0), "3 d 2 h");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }

    #[test]
    fn pages_escape_what_they_show() {
        let markup = page("<script>", Section::None, None, html! { p { "a & b" } }).into_string();
        assert!(markup.contains("&lt;script&gt; · hookgate"), "{markup}");
        assert!(!markup.contains("<script>"), "{markup}");
        assert!(markup.contains("a &amp; b"));
    }
}
