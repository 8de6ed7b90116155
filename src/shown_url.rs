//! URLs as hookgate shows them (log lines, the admin API, the console): a destination's or a
//! sync API's URL may carry a credential (`https://user:pass@host/`, `?api_key=...`), which
//! must not reach a screen, a screenshot or a log collector.

use url::Url;

/// A URL in debug output, as [`shown`] shows it (a config's `Debug`: a URL may carry a
/// credential).
pub struct Shown<'a>(pub &'a Url);

impl std::fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", shown(self.0))
    }
}

/// `url` without its user, password and fragment, each query value replaced by `***` (the
/// names stay: they say which parameters are set; a part without a value is replaced whole).
/// A token in the path (a chat service's webhook URL) stays: such a URL belongs in a secret
/// reference (`alert_url` takes one).
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    // Only URLs that cannot have a user or password (`data:`, `mailto:`) refuse these.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    // Each `name=value` as `name=***`; a part without `=` may be a bare token: `***` whole.
    let query = url.query().map(|query| {
        query
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| match part.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None => "***".to_string(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    shown.set_query(query.as_deref().filter(|query| !query.is_empty()));
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(url: &str) -> String {
        shown(&Url::parse(url).unwrap())
    }

    #[test]
    fn credentials_are_left_out() {
        assert_eq!(
            show("https://svc:hunter2@crm.example:8443/hook?api_key=K&v=2#frag"),
            "https://crm.example:8443/hook?api_key=***&v=***"
        );
        assert_eq!(show("http://user@host/"), "http://host/");
        assert_eq!(show("http://host/a/b"), "http://host/a/b");
        assert_eq!(show("http://host/a?"), "http://host/a");
        assert_eq!(show("https://h/hook?S3CR3T"), "https://h/hook?***");
        assert_eq!(show("https://h/hook?a=1&T0K3N"), "https://h/hook?a=***&***");
    }
}
