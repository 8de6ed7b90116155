//! Reaching a gateway from the machine it runs on, as `send-test` and the operator subcommands
//! do: the URL of a configured listener, and an HTTP client that goes straight to it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use url::Url;

/// `http://{listen}/`, a wildcard address replaced by loopback; `None` for port 0 (chosen at
/// start-up, so the caller must be told the URL).
pub fn listener_url(listen: SocketAddr) -> Option<Url> {
    if listen.port() == 0 {
        return None;
    }
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Url::parse(&format!("http://{}/", SocketAddr::new(ip, listen.port()))).ok()
}

/// A `--url` value: an absolute http(s) URL.
pub fn parse_url(text: &str) -> Result<Url, String> {
    match Url::parse(text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err(format!("--url {text:?} is not an http(s) URL")),
    }
}

/// Whether `url`'s host is this machine.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// A client that follows no redirect and goes straight to a loopback host, even when a proxy
/// is configured; `direct`: to any host (a client carrying the admin token, which a proxy on
/// the path of plain HTTP would read).
pub fn client_for(
    url: &Url,
    timeout: Duration,
    direct: bool,
) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    if direct || is_loopback(url) {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|err| format!("cannot build the HTTP client: {err}"))
}

/// The URL without a password, for printing.
pub fn printable(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_reached_on_loopback() {
        let url = |listen: &str| listener_url(listen.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(url("0.0.0.0:8080").unwrap(), "http://127.0.0.1:8080/");
        assert_eq!(url("[::]:9090").unwrap(), "http://[::1]:9090/");
        assert_eq!(
            url("10.0.0.5:80").unwrap(),
            "http://10.0.0.5/",
            "the default port is implied"
        );
        assert_eq!(url("127.0.0.1:0"), None);
    }

    #[test]
    fn only_http_urls() {
        assert!(parse_url("ftp://example.com/x").is_err());
        assert!(parse_url("example.com/x").is_err());
        assert!(parse_url("https://example.com/hooks/x").is_ok());
    }

    #[test]
    fn passwords_are_not_printed() {
        let url = Url::parse("https://u:secret@example.com/hooks/x").unwrap();
        assert_eq!(printable(&url).as_str(), "https://u@example.com/hooks/x");
    }
}
