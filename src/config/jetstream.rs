//! `[store] backend = "jetstream"`: the NATS servers, the stream, how hookgate authenticates
//! to the servers and how it checks them (TLS). Files named here are read and checked at load,
//! so `hookgate check-config` reports a missing or unreadable one.

use std::path::PathBuf;
use std::time::Duration;

use super::load::{Loader, Section};
use super::outputs::parse_duration;
use super::raw::RawStore;
use super::{JetStreamConfig, NatsAuth, NatsTls, Secret};

/// The shortest lease: a node renews it every third of it, over the network.
const MIN_LEASE_TIME: Duration = Duration::from_secs(1);

/// The `[store]` keys only the JetStream backend takes that `raw` sets.
pub(super) fn keys_given(raw: &RawStore) -> Vec<&'static str> {
    [
        ("servers", raw.servers.is_some()),
        ("stream", raw.stream.is_some()),
        ("replicas", raw.replicas.is_some()),
        ("token", raw.token.is_some()),
        ("user", raw.user.is_some()),
        ("password", raw.password.is_some()),
        ("nkey_seed", raw.nkey_seed.is_some()),
        ("credentials", raw.credentials.is_some()),
        ("tls_ca", raw.tls_ca.is_some()),
        ("tls_cert", raw.tls_cert.is_some()),
        ("tls_key", raw.tls_key.is_some()),
        ("lease_time", raw.lease_time.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, given)| given.then_some(key))
    .collect()
}

impl Loader<'_> {
    pub(super) fn jetstream(
        &mut self,
        raw: &RawStore,
        section: Option<&Section>,
    ) -> JetStreamConfig {
        let at = |loader: &Self, key: &str| section.and_then(|s| loader.key_position(s, key));
        let servers = raw.servers.clone().unwrap_or_default();
        if servers.is_empty() {
            self.error(
                at(self, "servers"),
                "[store] servers: backend = \"jetstream\" needs at least one NATS \
                 server, e.g. servers = [\"nats://127.0.0.1:4222\"]"
                    .to_string(),
            );
        }
        for (n, server) in servers.iter().enumerate() {
            let ok = url::Url::parse(server)
                .is_ok_and(|url| matches!(url.scheme(), "nats" | "tls") && url.has_host());
            if !ok {
                // Not quoted: a server URL may carry `user:password@`.
                self.error(
                    at(self, "servers"),
                    format!(
                        "[store] servers: entry {} is not a nats:// or tls:// URL",
                        n + 1
                    ),
                );
            }
        }
        let stream = raw.stream.clone().unwrap_or_else(|| "HOOKGATE".to_string());
        let valid_name = !stream.is_empty()
            && stream.len() <= 32
            && stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_name {
            self.error(
                at(self, "stream"),
                format!("[store] stream: {stream:?} must be 1 to 32 letters, digits, '-' or '_'"),
            );
        }
        let replicas = raw.replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            self.error(
                at(self, "replicas"),
                format!("[store] replicas: {replicas} is not between 1 and 5"),
            );
        }
        let lease_time = raw.lease_time.as_deref().unwrap_or("10s");
        let lease_time = match parse_duration(lease_time) {
            Ok(time) if time >= MIN_LEASE_TIME => time,
            Ok(_) => {
                self.error(
                    at(self, "lease_time"),
                    format!("[store] lease_time: {lease_time:?} is under 1s"),
                );
                MIN_LEASE_TIME
            }
            Err(message) => {
                self.error(
                    at(self, "lease_time"),
                    format!("[store] lease_time: {message}"),
                );
                MIN_LEASE_TIME
            }
        };
        JetStreamConfig {
            servers,
            stream,
            replicas,
            auth: self.nats_auth(raw, section),
            tls: self.nats_tls(raw, section),
            lease_time,
        }
    }

    /// At most one of `token`, `user` + `password`, `nkey_seed` and `credentials`.
    fn nats_auth(&mut self, raw: &RawStore, section: Option<&Section>) -> NatsAuth {
        let at = |loader: &Self, key: &str| section.and_then(|s| loader.key_position(s, key));
        let given: Vec<&str> = [
            ("token", raw.token.is_some()),
            ("user", raw.user.is_some() || raw.password.is_some()),
            ("nkey_seed", raw.nkey_seed.is_some()),
            ("credentials", raw.credentials.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, given)| given.then_some(key))
        .collect();
        if given.len() > 1 {
            self.error(
                at(self, given[1]),
                format!(
                    "[store] {}: choose one way to authenticate to NATS, not {}",
                    given.join(", "),
                    given.len()
                ),
            );
            return NatsAuth::None;
        }
        // Through the loader as every secret: a literal one, or a world-readable file, is warned
        // about (these were not).
        let secret = |loader: &mut Self, key: &str, reference: &str| -> Option<Secret> {
            let position = at(loader, key);
            loader.secret(reference, &format!("[store] {key}"), position)
        };
        if let Some(token) = &raw.token {
            return secret(self, "token", token).map_or(NatsAuth::None, NatsAuth::Token);
        }
        if let Some(seed) = &raw.nkey_seed {
            let Some(seed) = secret(self, "nkey_seed", seed) else {
                return NatsAuth::None;
            };
            // A user seed is base32 and starts with "SU"; nkeys checks its checksum at connect.
            if !seed.expose().starts_with(b"SU") {
                self.error(
                    at(self, "nkey_seed"),
                    "[store] nkey_seed: not a NATS user NKey seed (one starts with \"SU\")"
                        .to_string(),
                );
                return NatsAuth::None;
            }
            return NatsAuth::NKey(seed);
        }
        if let Some(path) = &raw.credentials {
            let path = PathBuf::from(path);
            self.warn_if_world_readable(&path, "[store] credentials");
            return match std::fs::read_to_string(&path) {
                Ok(text) if text.contains("BEGIN NATS USER JWT") => NatsAuth::Credentials(path),
                Ok(_) => {
                    self.error(
                        at(self, "credentials"),
                        format!(
                            "[store] credentials: {} is not a NATS .creds file (no user JWT)",
                            path.display()
                        ),
                    );
                    NatsAuth::None
                }
                Err(err) => {
                    self.error(
                        at(self, "credentials"),
                        format!("[store] credentials: cannot read {}: {err}", path.display()),
                    );
                    NatsAuth::None
                }
            };
        }
        match (&raw.user, &raw.password) {
            (None, None) => NatsAuth::None,
            (Some(user), Some(password)) => {
                secret(self, "password", password).map_or(NatsAuth::None, |password| {
                    NatsAuth::UserPassword {
                        user: user.clone(),
                        password,
                    }
                })
            }
            _ => {
                self.error(
                    at(self, "user"),
                    "[store] user and password go together".to_string(),
                );
                NatsAuth::None
            }
        }
    }

    /// `tls_ca`, and `tls_cert` with `tls_key`: each file read and checked now.
    fn nats_tls(&mut self, raw: &RawStore, section: Option<&Section>) -> Option<NatsTls> {
        let at = |loader: &Self, key: &str| section.and_then(|s| loader.key_position(s, key));
        if raw.tls_ca.is_none() && raw.tls_cert.is_none() && raw.tls_key.is_none() {
            return None;
        }
        let ca = raw.tls_ca.as_deref().map(PathBuf::from);
        if let Some(Err(message)) = ca.as_deref().map(crate::http::tls::read_certificates) {
            self.error(at(self, "tls_ca"), format!("[store] tls_ca: {message}"));
        }
        let client = match (raw.tls_cert.as_deref(), raw.tls_key.as_deref()) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let (cert, key) = (PathBuf::from(cert), PathBuf::from(key));
                self.warn_if_world_readable(&key, "[store] tls_key");
                if let Err(message) = crate::http::tls::load(&cert, &key) {
                    self.error(at(self, "tls_cert"), format!("[store] TLS: {message}"));
                }
                Some((cert, key))
            }
            _ => {
                self.error(
                    at(self, "tls_cert"),
                    "[store] tls_cert and tls_key go together".to_string(),
                );
                None
            }
        };
        Some(NatsTls { ca, client })
    }
}
