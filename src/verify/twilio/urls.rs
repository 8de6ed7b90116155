//! The URL Twilio signed: the body hash a JSON post carries in it, and its spellings with and
//! without the default port.

pub(super) const BODY_HASH: &str = "bodySHA256";

/// The `bodySHA256` value in the URL's query, if there is one.
pub(super) fn body_hash_in(url: &str) -> Option<String> {
    let (_, query) = url.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == BODY_HASH)
        .map(|(_, value)| value.into_owned())
}

/// The URL without its port and with the scheme's default port, as Twilio's validators try
/// (`remove_port` and `add_port` in twilio-python). Written on the text, since a URL parser would
/// normalize the default port away.
pub(super) fn port_variants(url: &str) -> [String; 2] {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return [url.to_string(), url.to_string()];
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| scheme_end + i);
    let host_start = url[scheme_end..authority_end]
        .rfind('@')
        .map_or(scheme_end, |i| scheme_end + i + 1);
    let host = &url[host_start..authority_end];
    // The port's colon: after the closing bracket of an IPv6 literal, else the last one.
    let after_brackets = host.rfind(']').map_or(0, |i| i + 1);
    let port_colon = host[after_brackets..]
        .rfind(':')
        .map(|i| host_start + after_brackets + i);
    match port_colon {
        Some(colon) => {
            let without = format!("{}{}", &url[..colon], &url[authority_end..]);
            [without, url.to_string()]
        }
        None => {
            let port = if url.starts_with("https:") { 443 } else { 80 };
            let with = format!("{}:{port}{}", &url[..authority_end], &url[authority_end..]);
            [url.to_string(), with]
        }
    }
}
