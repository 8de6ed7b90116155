//! Which address a request comes from: the TCP peer, unless the peer is a trusted reverse proxy
//! (`[server] trusted_proxies`), in which case the forwarding header it appends
//! (`[server] proxy_header`) is read from the right, skipping the trusted hops. A forwarding
//! header from any other peer is ignored, and so is the header the proxies do not write (a
//! proxy passes a client's own copy on), so a client cannot choose its own address for
//! `allow_ips` or the per-address limits.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use actix_web::HttpRequest;
use ipnet::IpNet;

use crate::config::{ProxyHeader, ServerConfig};

/// Who sent a request, as the limits and `allow_ips` see it.
pub struct Client {
    /// [`client_address`].
    pub address: Option<IpAddr>,
    /// The address its rate limits count under: the client's, else (unnamed behind a trusted
    /// proxy) the TCP peer's.
    pub bucket: Option<IpAddr>,
}

impl Client {
    pub fn of(request: &HttpRequest, server: &ServerConfig) -> Client {
        let peer = request.peer_addr();
        let address = client_address(
            peer,
            request.headers(),
            &server.trusted_proxies,
            server.proxy_header,
        );
        Client {
            address,
            bucket: address.or_else(|| peer.map(|peer| peer.ip())),
        }
    }
}

/// The client's address; `None` when a trusted proxy forwarded a hop it could not name
/// (`Forwarded: for=unknown`, a garbled entry): such a request matches no `allow_ips`.
pub fn client_address(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ProxyHeader,
) -> Option<IpAddr> {
    let peer = peer?.ip().to_canonical();
    if !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let hops = forwarded_hops(headers, header);
    if hops.is_empty() {
        return Some(peer);
    }
    let mut nearest = Some(peer);
    for hop in hops.iter().rev() {
        nearest = *hop;
        match hop {
            Some(address) if is_trusted(*address, trusted) => continue,
            _ => break,
        }
    }
    nearest
}

fn is_trusted(address: IpAddr, trusted: &[IpNet]) -> bool {
    let address = address.to_canonical();
    trusted.iter().any(|network| network.contains(&address))
}

/// The hops the proxies recorded in `header`, client first: `Forwarded`'s `for=` (RFC 7239)
/// or `X-Forwarded-For`'s entries. Every header line counts, in order; an entry that is not
/// text is a hop without an address, and leaves the others of its line (the one the proxy
/// appended to what the client sent) readable.
fn forwarded_hops(headers: &HeaderMap, header: ProxyHeader) -> Vec<Option<IpAddr>> {
    let lines = |name| {
        headers
            .get_all(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect::<Vec<_>>()
    };
    if header == ProxyHeader::Forwarded {
        return lines("forwarded")
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                let node = element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .map(|(_, value)| value.trim().trim_matches('"'));
                node.and_then(parse_node)
            })
            .collect();
    }
    lines("x-forwarded-for")
        .iter()
        .flat_map(|line| line.split(','))
        .map(|entry| parse_node(entry.trim()))
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711` or `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address.to_canonical());
    }
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Some(address.ip().to_canonical());
    }
    let bracketed = text.strip_prefix('[')?.split(']').next()?;
    bracketed
        .parse::<IpAddr>()
        .ok()
        .map(|address| address.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    fn client_by(
        header: ProxyHeader,
        peer: &str,
        pairs: &[(&'static str, &'static str)],
    ) -> Option<IpAddr> {
        let trusted = ["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        client_address(
            Some(peer.parse().unwrap()),
            &headers(pairs),
            &trusted,
            header,
        )
    }

    fn client(peer: &str, pairs: &[(&'static str, &'static str)]) -> Option<IpAddr> {
        client_by(ProxyHeader::XForwardedFor, peer, pairs)
    }

    fn client_fwd(peer: &str, pairs: &[(&'static str, &'static str)]) -> Option<IpAddr> {
        client_by(ProxyHeader::Forwarded, peer, pairs)
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn untrusted_peers_cannot_claim_an_address() {
        let xff = [("x-forwarded-for", "1.2.3.4")];
        assert_eq!(client("203.0.113.9:5000", &xff), ip("203.0.113.9"));
        let fwd = [("forwarded", "for=1.2.3.4")];
        assert_eq!(client_fwd("203.0.113.9:5000", &fwd), ip("203.0.113.9"));
    }

    /// A byte that is not text in what the client sent made the whole line unreadable, the
    /// address the proxy appended to it with it.
    #[test]
    fn a_client_entry_that_is_not_text_leaves_the_proxys_readable() {
        let mut map = HeaderMap::new();
        map.append(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_bytes(b"\x80, 198.51.100.7").unwrap(),
        );
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let peer = Some("10.0.0.5:1".parse().unwrap());
        assert_eq!(
            client_address(peer, &map, &trusted, ProxyHeader::XForwardedFor),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn trusted_proxies_name_the_nearest_untrusted_hop() {
        let xff = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")];
        assert_eq!(client("10.0.0.5:1", &xff), ip("198.51.100.7"));
        let two_lines = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7"),
        ];
        assert_eq!(client("10.0.0.5:1", &two_lines), ip("198.51.100.7"));
        assert_eq!(client("10.0.0.5:1", &[]), ip("10.0.0.5"));
        let all_inside = [("x-forwarded-for", "10.9.9.9, 10.1.1.1")];
        assert_eq!(client("10.0.0.5:1", &all_inside), ip("10.9.9.9"));
    }

    #[test]
    fn only_the_configured_header_counts() {
        let both = [
            (
                "forwarded",
                r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#,
            ),
            ("x-forwarded-for", "5.5.5.5"),
        ];
        assert_eq!(client_fwd("[::1]:1", &both), ip("2001:db8::1"));
        // A proxy that writes X-Forwarded-For passes the client's own `Forwarded` on: ignored.
        assert_eq!(client("[::1]:1", &both), ip("5.5.5.5"));
        let forged = [("forwarded", "for=192.0.2.7")];
        assert_eq!(client("10.0.0.5:1", &forged), ip("10.0.0.5"));
        let port = [("forwarded", r#"for="192.0.2.60:8080""#)];
        assert_eq!(client_fwd("10.0.0.5:1", &port), ip("192.0.2.60"));
        let mapped = [("x-forwarded-for", "::ffff:192.0.2.1")];
        assert_eq!(client("10.0.0.5:1", &mapped), ip("192.0.2.1"));
    }

    #[test]
    fn unnamed_hops_are_unknown() {
        assert_eq!(
            client_fwd("10.0.0.5:1", &[("forwarded", "for=unknown")]),
            None
        );
        assert_eq!(
            client("10.0.0.5:1", &[("x-forwarded-for", "garbage")]),
            None
        );
        let hidden_behind = [("x-forwarded-for", "1.1.1.1, _hidden, 10.0.0.7")];
        assert_eq!(client("10.0.0.5:1", &hidden_behind), None);
    }
}
