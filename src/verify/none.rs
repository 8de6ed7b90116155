//! No signature: the request is accepted as is, optionally only from listed networks
//! (`allow_ips`, CIDRs). The address checked is the client's: the TCP peer's, or the one a
//! trusted proxy forwarded (`[server] trusted_proxies`, see `http/client.rs`).

use ipnet::IpNet;

use super::{Rejection, Unverified};
use crate::config::RawProvider;
use crate::event::EventId;

#[derive(Debug)]
pub struct AllowIps {
    /// `None`: any address.
    networks: Option<Vec<IpNet>>,
}

impl AllowIps {
    pub fn build(raw: &RawProvider) -> Result<AllowIps, Vec<String>> {
        let Some(list) = &raw.allow_ips else {
            return Ok(AllowIps { networks: None });
        };
        let mut networks = Vec::new();
        let mut errors = Vec::new();
        for text in list {
            match crate::config::parse_network(text) {
                Some(network) => networks.push(network),
                None => errors.push(format!(
                    "allow_ips entry {text:?} is not an address or CIDR"
                )),
            }
        }
        if errors.is_empty() {
            Ok(AllowIps {
                networks: Some(networks),
            })
        } else {
            Err(errors)
        }
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
    use crate::verify::test_support::{raw, TestHeaders};
    use std::time::SystemTime;

    fn check(allow: Option<Vec<&str>>, peer: Option<&str>) -> Result<Option<EventId>, Rejection> {
        let mut provider = raw("none");
        provider.allow_ips = allow.map(|list| list.into_iter().map(str::to_string).collect());
        let scheme = AllowIps::build(&provider).unwrap();
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
        assert!(check(Some(vec!["192.0.2.7"]), Some("192.0.2.7")).is_ok());
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

    #[test]
    fn bad_cidr_is_a_config_error() {
        let mut provider = raw("none");
        provider.allow_ips = Some(vec!["10.0.0.0/33".into(), "nope".into()]);
        assert_eq!(AllowIps::build(&provider).unwrap_err().len(), 2);
    }
}
