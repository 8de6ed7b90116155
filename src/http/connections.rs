//! Caps on the public listener's open connections: in all, and per client address (the TCP
//! peer; trusted proxies count only toward the total). A connection over a cap is shut down as
//! soon as it is accepted, before a byte of it is read, and counted in
//! `hookgate_rejections_total{cause="connections"|"connections_per_address"}`.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::rt::net::TcpStream;
use arc_swap::ArcSwap;
use ipnet::IpNet;

use super::limits::bucket_of;
use super::rejections::{Level, Refused, Rejections};
use crate::metrics::Metrics;

pub struct Connections {
    max: AtomicUsize,
    /// The most the open files limit leaves room for (`open_files.rs`).
    room: usize,
    max_per_address: AtomicUsize,
    trusted_proxies: ArcSwap<Vec<IpNet>>,
    open: Mutex<Open>,
    metrics: Arc<Metrics>,
    rejections: Arc<Rejections>,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Held with a connection's stream while it is open; gives its place back when dropped.
pub struct Place {
    connections: Arc<Connections>,
    address: Option<IpAddr>,
}

impl Connections {
    pub fn new(
        max: usize,
        max_per_address: usize,
        trusted_proxies: Vec<IpNet>,
        metrics: Arc<Metrics>,
        rejections: Arc<Rejections>,
    ) -> Connections {
        let room = super::open_files::connection_room();
        Connections {
            max: AtomicUsize::new(super::open_files::cap(max, room)),
            room,
            max_per_address: AtomicUsize::new(max_per_address),
            trusted_proxies: ArcSwap::from_pointee(trusted_proxies),
            open: Mutex::new(Open::default()),
            metrics,
            rejections,
        }
    }

    /// New caps and proxies (a reload); connections already open stay open.
    pub fn configure(&self, max: usize, max_per_address: usize, trusted_proxies: Vec<IpNet>) {
        let max = super::open_files::cap(max, self.room);
        self.max.store(max, Ordering::Relaxed);
        self.max_per_address
            .store(max_per_address, Ordering::Relaxed);
        self.trusted_proxies.store(Arc::new(trusted_proxies));
    }

    /// Takes a place for a newly accepted connection, or shuts it down (before a byte of it is
    /// read, also before a TLS handshake).
    pub fn admit(self: &Arc<Self>, stream: &TcpStream) -> Option<Place> {
        let peer = stream.peer_addr().ok()?;
        match self.take(peer.ip()) {
            Ok(place) => Some(place),
            Err(cause) => {
                self.rejections.record(
                    Refused {
                        cause,
                        provider: None,
                        client: Some(peer.ip()),
                        level: Level::Info,
                        request_id: None,
                    },
                    &"too many open connections",
                );
                // Nothing was read yet: the client sees a reset or EOF and may retry later.
                let _ = socket2::SockRef::from(stream).shutdown(Shutdown::Both);
                None
            }
        }
    }

    fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Place, &'static str> {
        // Trust is the peer's own address (a proxy at `::1/128` is not in its /64's bucket).
        let peer = peer.to_canonical();
        let counted = !self
            .trusted_proxies
            .load()
            .iter()
            .any(|network| network.contains(&peer));
        let address = bucket_of(peer);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max.load(Ordering::Relaxed) {
            return Err("connections");
        }
        if counted {
            let from_address = open.per_address.entry(address).or_default();
            if *from_address >= self.max_per_address.load(Ordering::Relaxed) {
                return Err("connections_per_address");
            }
            *from_address += 1;
        }
        open.total += 1;
        self.metrics.connections_open.set(open.total as i64);
        Ok(Place {
            connections: self.clone(),
            address: counted.then_some(address),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(address) = self.address {
            if let Some(count) = open.per_address.get_mut(&address) {
                *count -= 1;
                if *count == 0 {
                    open.per_address.remove(&address);
                }
            }
        }
        self.connections
            .metrics
            .connections_open
            .set(open.total as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(trusted: &[&str]) -> Arc<Connections> {
        let metrics = Arc::new(Metrics::new());
        Arc::new(Connections::new(
            3,
            2,
            trusted.iter().map(|t| t.parse().unwrap()).collect(),
            metrics.clone(),
            Arc::new(Rejections::new(metrics, 0)),
        ))
    }

    #[test]
    fn caps_per_address_and_in_all() {
        let connections = connections(&[]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = connections.take(a).unwrap();
        let _second = connections.take(a).unwrap();
        assert_eq!(connections.take(a).err(), Some("connections_per_address"));
        let _third = connections.take(b).unwrap();
        assert_eq!(connections.take(b).err(), Some("connections"));
        drop(first);
        assert!(
            connections.take(a).is_ok(),
            "a closed connection frees its place"
        );
    }

    #[test]
    fn trusted_proxies_count_only_toward_the_total() {
        let connections = connections(&["10.0.0.0/8"]);
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let places: Vec<Place> = (0..3).map(|_| connections.take(proxy).unwrap()).collect();
        assert_eq!(connections.take(proxy).err(), Some("connections"));
        drop(places);
        assert_eq!(connections.open.lock().unwrap().total, 0);
    }

    #[test]
    fn a_trusted_ipv6_proxy_is_its_own_address_not_its_bucket() {
        for proxy in ["::1", "2001:db8::7", "::ffff:192.0.2.1"] {
            let each = connections(&["::1/128", "2001:db8::7/128"]);
            let proxy: IpAddr = proxy.parse().unwrap();
            let trusted = proxy != "::ffff:192.0.2.1".parse::<IpAddr>().unwrap();
            let places: Vec<Result<Place, _>> = (0..3).map(|_| each.take(proxy)).collect();
            let refused = places.iter().filter(|p| p.is_err()).count();
            assert_eq!(refused, usize::from(!trusted), "{proxy}");
        }
        let mapped = connections(&["192.0.2.0/24"]);
        let proxy: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _places: Vec<Place> = (0..3).map(|_| mapped.take(proxy).unwrap()).collect();
    }
}
