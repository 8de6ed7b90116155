//! Protection of the console's state-changing forms against cross-site requests. Two checks,
//! both needed:
//! - where the request comes from: a browser says it in `Sec-Fetch-Site` and `Origin`; anything
//!   but the console's own origin is refused (this also covers the sign-in form, before there is
//!   a session);
//! - the session's CSRF token, which every form carries in a hidden field and another site
//!   cannot read.
//!
//! The session cookie is SameSite=Strict besides, so a browser does not even send it with
//! another site's request.

use crate::verify::mac::constant_time_eq;

/// Why a form was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request comes from another site")]
    CrossSite,
    #[error("the request's Origin is not this console's")]
    ForeignOrigin,
    #[error("the form's CSRF token is missing or wrong")]
    BadToken,
}

impl Refusal {
    /// The cause counted in `hookgate_rejections_total`.
    pub fn cause(self) -> &'static str {
        match self {
            Refusal::CrossSite => "console_cross_site",
            Refusal::ForeignOrigin => "console_foreign_origin",
            Refusal::BadToken => "console_bad_csrf",
        }
    }
}

/// Checks where a request comes from, from its `Origin`, `Sec-Fetch-Site` and `Host` headers.
/// A request with neither of the first two (not from a browser) passes: the token still guards
/// it.
pub fn check_origin(
    origin: Option<&str>,
    fetch_site: Option<&str>,
    host: Option<&str>,
) -> Result<(), Refusal> {
    if let Some(site) = fetch_site {
        if !site.eq_ignore_ascii_case("same-origin") {
            return Err(Refusal::CrossSite);
        }
    }
    if let Some(origin) = origin {
        let own = host.is_some_and(|host| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
        });
        if !own {
            return Err(Refusal::ForeignOrigin);
        }
    }
    Ok(())
}

/// Checks the form's token against the session's, in constant time.
pub fn check_token(expected: &str, given: Option<&str>) -> Result<(), Refusal> {
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(Refusal::BadToken),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: Option<&str> = Some("127.0.0.1:9090");

    #[test]
    fn the_consoles_own_forms_pass() {
        let origin = Some("http://127.0.0.1:9090");
        assert_eq!(check_origin(origin, Some("same-origin"), HOST), Ok(()));
        assert_eq!(check_origin(origin, None, HOST), Ok(()));
        assert_eq!(check_origin(None, None, HOST), Ok(()), "not a browser");
    }

    #[test]
    fn other_origins_are_refused() {
        let evil = Some("http://evil.example");
        assert_eq!(check_origin(evil, None, HOST), Err(Refusal::ForeignOrigin));
        assert_eq!(
            check_origin(Some("null"), None, HOST),
            Err(Refusal::ForeignOrigin)
        );
        // Same host, other port: another origin.
        assert_eq!(
            check_origin(Some("http://127.0.0.1:8080"), None, HOST),
            Err(Refusal::ForeignOrigin)
        );
        assert_eq!(
            check_origin(Some("http://127.0.0.1:9090"), None, None),
            Err(Refusal::ForeignOrigin),
            "no Host to compare with"
        );
        for site in ["cross-site", "same-site", "none"] {
            assert_eq!(
                check_origin(Some("http://127.0.0.1:9090"), Some(site), HOST),
                Err(Refusal::CrossSite),
                "{site}"
            );
        }
    }

    #[test]
    fn the_token_must_match() {
        assert_eq!(check_token("abc", Some("abc")), Ok(()));
        assert_eq!(check_token("abc", Some("abd")), Err(Refusal::BadToken));
        assert_eq!(check_token("abc", Some("")), Err(Refusal::BadToken));
        assert_eq!(check_token("abc", None), Err(Refusal::BadToken));
    }
}
