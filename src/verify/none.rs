//! No signature: the request is accepted as is, optionally only from listed networks
//! (`allow_ips`, CIDRs). The address checked is the client's: the TCP peer's, or the one a
//! trusted proxy forwarded (`[server] trusted_proxies`, see `http/client.rs`).

use ipnet::IpNet;

use super::{Rejection, Unverified};
use crate::event::EventId;

#[derive(Debug)]
pub struct AllowIps {
    /// `None`: any address.
    networks: Option<Vec<IpNet>>,
}

impl AllowIps {
    /// `networks`: the only ones requests are taken from; `None`: any address.
    pub fn new(networks: Option<Vec<IpNet>>) -> AllowIps {
        AllowIps { networks }
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Option<EventId>, Rejection> {
        let Some(networks) = &self.networks else {
            return Ok(None);
        };
        let allowed = request
            .peer
            .map(|peer| peer.to_canonical())
            .is_some_and(|peer| networks.iter().any(|network| network.contains(&peer)));
        if allowed {
            Ok(None)
        } else {
            Err(Rejection::AddressNotAllowed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::TestHeaders;
    use std::time::SystemTime;

    fn check(allow: Option<Vec<&str>>, peer: Option<&str>) -> Result<Option<EventId>, Rejection> {
        let networks = allow.map(|list| list.iter().map(|n| n.parse().unwrap()).collect());
        let scheme = AllowIps::new(networks);
        let headers = TestHeaders(vec![]);
        scheme.verify(&Unverified {
            headers: &headers,
            path: "/hooks/p",
            query: "",
            body: "x".into(),
            peer: peer.map(|p| p.parse().unwrap()),
            now: SystemTime::now(),
        })
    }

    #[test]
    fn networks() {
        assert!(check(None, None).is_ok());
        assert!(check(Some(vec!["10.0.0.0/8"]), Some("10.1.2.3")).is_ok());
        assert!(check(Some(vec!["10.0.0.0/8"]), Some("::ffff:10.1.2.3")).is_ok());
        assert!(check(Some(vec!["192.0.2.7/32"]), Some("192.0.2.7")).is_ok());
        assert_eq!(
            check(Some(vec!["10.0.0.0/8"]), Some("127.0.0.1")),
            Err(Rejection::AddressNotAllowed)
        );
        assert_eq!(
            check(Some(vec![]), Some("127.0.0.1")),
            Err(Rejection::AddressNotAllowed)
        );
        assert_eq!(
            check(Some(vec!["10.0.0.0/8"]), None),
            Err(Rejection::AddressNotAllowed)
        );
    }
}
