//! URLs as hookgate shows them (log lines, the admin API, the console): a destination's or a
//! sync API's URL may carry a credential (`https://user:pass@host/`, `?api_key=...`), which
//! must not reach a screen, a screenshot or a log collector.

use url::Url;

/// `url` without its user, password and fragment, each query value replaced by `***` (the
/// names stay: they say which parameters are set).
pub fn shown(url: &Url) -> String {
    let mut shown = url.clone();
    // Only URLs that cannot have a user or password (`data:`, `mailto:`) refuse these.
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_fragment(None);
    if url.query().is_some() {
        let names: Vec<String> = url
            .query_pairs()
            .map(|(name, _)| name.into_owned())
            .collect();
        shown.set_query(None);
        if !names.is_empty() {
            let mut query = shown.query_pairs_mut();
            for name in &names {
                query.append_pair(name, "***");
            }
        }
    }
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
    }
}
