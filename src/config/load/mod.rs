//! Reading `config.toml`: parse, deserialize each section, validate, and report every problem at
//! once, each with the line and column of the key (or section) it concerns.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::Spanned;

use super::raw::{RawAdmin, RawConsumer, RawDestination, RawLimits, RawServer, RawStore};
use super::scheme::RawProvider;
use super::{AdminConfig, Config, ProviderConfig, ServerConfig};
use crate::event::ProviderName;
use crate::event_id::EventIdRule;
use crate::secret::{self, Secret};

/// The most `[server] workers` takes (each is a thread with its own connections).
const MAX_WORKERS: usize = 1024;
/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A table with the position of each key, as the TOML parser saw it.
pub(super) type Section = Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>;

/// The document's top level: any other top-level key is an error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    server: Option<Section>,
    limits: Option<Section>,
    store: Option<Section>,
    admin: Option<Section>,
    #[serde(default)]
    provider: Vec<Section>,
    #[serde(default)]
    destination: Vec<Section>,
    #[serde(default)]
    consumer: Vec<Section>,
}

/// Loads and validates the file at `path`.
pub fn load_file(path: &Path) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
    let text = read(path)?;
    load_str(&text, path.parent().unwrap_or(Path::new(".")))
}

/// Loads and validates a config text. Relative `data_dir`s are kept relative (to the working
/// directory, as systemd's `WorkingDirectory=` sets it). Returns the config and warnings.
pub fn load_str(text: &str, _base: &Path) -> Result<(Config, Vec<String>), Vec<ConfigError>> {
    let (mut loader, document) = Loader::parse(text)?;
    let config = loader.validate(document);
    match config {
        Some(config) if loader.errors.is_empty() => Ok((config, loader.warnings)),
        _ => Err(loader.errors),
    }
}

/// How the operator subcommands reach the admin API, from `[admin]` alone.
#[derive(Debug)]
pub struct AdminAccess {
    pub listen: SocketAddr,
    /// `[admin] token`, resolved; `None` when it was not asked for.
    pub token: Option<Secret>,
}

/// `[admin]` of the file at `path`: the listener's address, and the token resolved only when
/// `resolve_token` (an operator given the token in `HOOKGATE_ADMIN_TOKEN` may not be allowed to
/// read the gateway's secrets). The other sections are neither validated nor resolved, so an
/// operator's shell needs none of the providers' secrets.
pub fn load_admin_file(path: &Path, resolve_token: bool) -> Result<AdminAccess, Vec<ConfigError>> {
    let text = read(path)?;
    let (mut loader, document) = Loader::parse(&text)?;
    let access = match &document.admin {
        Some(section) => loader
            .section::<RawAdmin>(Some(section), "[admin]")
            .and_then(|raw| loader.admin_access(raw, section, resolve_token)),
        None => {
            loader.error(None, "[admin] is missing".to_string());
            None
        }
    };
    match access {
        Some(access) if loader.errors.is_empty() => Ok(access),
        _ => Err(loader.errors),
    }
}

fn read(path: &Path) -> Result<String, Vec<ConfigError>> {
    std::fs::read_to_string(path).map_err(|err| {
        vec![ConfigError {
            position: None,
            message: format!("cannot read {}: {err}", path.display()),
        }]
    })
}

pub(crate) struct Loader<'a> {
    text: &'a str,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

impl<'a> Loader<'a> {
    /// Parses the TOML document; a syntax error is the only error then.
    fn parse(text: &'a str) -> Result<(Loader<'a>, Document), Vec<ConfigError>> {
        let loader = Loader {
            text,
            errors: Vec::new(),
            warnings: Vec::new(),
        };
        match toml::from_str(text) {
            Ok(document) => Ok((loader, document)),
            Err(err) => {
                let position = err.span().map(|span| loader.position(span.start));
                Err(vec![ConfigError {
                    position,
                    message: err.message().trim().to_string(),
                }])
            }
        }
    }

    fn validate(&mut self, mut document: Document) -> Option<Config> {
        let server: RawServer = self
            .section(document.server.as_ref(), "[server]")
            .unwrap_or_default();
        let limits: RawLimits = self
            .section(document.limits.as_ref(), "[limits]")
            .unwrap_or_default();
        let store: RawStore = self
            .section(document.store.as_ref(), "[store]")
            .unwrap_or_default();
        let admin: Option<RawAdmin> = match &document.admin {
            Some(section) => self.section(Some(section), "[admin]"),
            None => {
                self.error(
                    None,
                    "[admin] is missing: it needs at least `token`".to_string(),
                );
                None
            }
        };

        let server = self.server(server, document.server.as_ref());
        let limits = self.limits(limits, document.limits.as_ref());
        if let Some(server) = &server {
            // A body holds up to max_body_bytes of the budget: one larger than the budget was
            // answered 503 for ever, on an idle gateway too, never 413.
            if server.max_body_bytes > limits.max_body_bytes_in_flight {
                let at = document
                    .limits
                    .as_ref()
                    .and_then(|section| self.key_position(section, "max_body_bytes_in_flight"));
                self.error(
                    at,
                    format!(
                        "[limits] max_body_bytes_in_flight ({}) must be at least [server] max_body_bytes ({})",
                        limits.max_body_bytes_in_flight, server.max_body_bytes
                    ),
                );
            }
        }
        let store = self.store(store, document.store.as_ref());
        let admin = admin
            .and_then(|admin| self.admin(admin, document.admin.as_ref().expect("checked above")));
        if let (Some(server), Some(admin)) = (&server, &admin) {
            if listens_clash(server.listen, admin.listen) {
                let at = document
                    .admin
                    .as_ref()
                    .and_then(|section| self.key_position(section, "listen"));
                self.error(
                    at,
                    format!(
                        "[admin] listen {} takes the port of [server] listen {}: the two listeners need a port each",
                        admin.listen, server.listen
                    ),
                );
            }
        }

        let mut providers: Vec<ProviderConfig> = Vec::new();
        let mut names_seen: Vec<String> = Vec::new();
        if document.provider.is_empty() {
            self.error(None, "no [[provider]] is configured".to_string());
        }
        for section in &mut document.provider {
            let sync_at = self.key_position(section, "sync");
            let sync = section.get_mut().remove("sync");
            let section = &*section;
            let Some(raw) = self.section::<RawProvider>(Some(section), "[[provider]]") else {
                continue;
            };
            let sync = sync.and_then(|value| self.sync(sync_at, value, &raw.name));
            if names_seen.contains(&raw.name) {
                let at = self.key_position(section, "name");
                self.error(at, format!("provider {:?} is defined twice", raw.name));
                continue;
            }
            names_seen.push(raw.name.clone());
            let verify = raw.verify.clone();
            if let Some(mut provider) = self.provider(raw, section) {
                provider.sync = sync;
                self.audit_both_ways(&provider, &verify);
                providers.push(provider);
            }
        }

        let mut client_ids: Vec<&str> = Vec::new();
        for provider in &providers {
            for id in provider
                .verifier
                .oauth_builtin()
                .into_iter()
                .flat_map(|b| b.client_ids())
            {
                if client_ids.contains(&id) {
                    self.error(None, format!("oauth client id {id:?} is used by two providers; client ids must be unique"));
                }
                client_ids.push(id);
            }
        }

        let mut output_names: Vec<String> = Vec::new();
        let mut destinations = Vec::new();
        for section in &document.destination {
            let Some(raw) = self.section::<RawDestination>(Some(section), "[[destination]]") else {
                continue;
            };
            if self.claim_output_name(&mut output_names, &raw.name, section) {
                destinations.extend(self.destination(raw, section, &providers));
            }
        }
        let mut consumers = Vec::new();
        for section in &document.consumer {
            let Some(raw) = self.section::<RawConsumer>(Some(section), "[[consumer]]") else {
                continue;
            };
            if self.claim_output_name(&mut output_names, &raw.name, section) {
                consumers.extend(self.consumer(raw, section, &providers));
            }
        }

        Some(Config {
            server: server?,
            limits,
            store,
            admin: admin?,
            providers,
            destinations,
            consumers,
        })
    }

    /// Destination and consumer names share one namespace (they name durable cursors).
    fn claim_output_name(
        &mut self,
        names: &mut Vec<String>,
        name: &str,
        section: &Section,
    ) -> bool {
        if names.iter().any(|n| n == name) {
            let at = self.key_position(section, "name");
            self.error(at, format!("{name:?} names two destinations or consumers"));
            return false;
        }
        names.push(name.to_string());
        true
    }

    fn server(&mut self, raw: RawServer, section: Option<&Section>) -> Option<ServerConfig> {
        let at = |key| section.and_then(|s| self.key_position(s, key));
        let (listen_at, max_at, deadline_at, timeout_at, proxies_at, tls_at) = (
            at("listen"),
            at("max_body_bytes"),
            at("ack_deadline_ms"),
            at("body_timeout_ms"),
            at("trusted_proxies"),
            at("tls_cert"),
        );
        let listen = self.address(&raw.listen, listen_at);
        let trusted_proxies = self.trusted_proxies(&raw.trusted_proxies, proxies_at);
        let tls = self.tls(raw.tls_cert.as_deref(), raw.tls_key.as_deref(), tls_at);
        if raw.max_body_bytes == 0 || raw.max_body_bytes > 64 * 1024 * 1024 {
            self.error(
                max_at,
                "max_body_bytes must be between 1 and 67108864 (64 MiB)".into(),
            );
        }
        // At most an hour each: a stop waits for both, and Instant arithmetic must not overflow.
        if !(10..=3_600_000).contains(&raw.ack_deadline_ms) {
            self.error(
                deadline_at,
                "ack_deadline_ms must be between 10 and 3600000".into(),
            );
        }
        if !(10..=3_600_000).contains(&raw.body_timeout_ms) {
            self.error(
                timeout_at,
                "body_timeout_ms must be between 10 and 3600000".into(),
            );
        }
        // The CPU count by default, within the bound (a host of more CPUs is not refused).
        let workers = raw.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, |n| n.get().min(MAX_WORKERS))
        });
        if workers > MAX_WORKERS {
            let at = section.and_then(|s| self.key_position(s, "workers"));
            self.error(at, format!("workers must be at most {MAX_WORKERS}"));
        }
        Some(ServerConfig {
            listen: listen?,
            data_dir: PathBuf::from(raw.data_dir),
            max_body_bytes: usize::try_from(raw.max_body_bytes).ok()?,
            ack_deadline: Duration::from_millis(raw.ack_deadline_ms),
            body_timeout: Duration::from_millis(raw.body_timeout_ms),
            workers: workers.max(1),
            trusted_proxies,
            proxy_header: raw.proxy_header,
            tls,
        })
    }

    fn tls(
        &mut self,
        cert: Option<&str>,
        key: Option<&str>,
        at: Option<(usize, usize)>,
    ) -> Option<super::TlsFiles> {
        let (cert, key) = match (cert, key) {
            (None, None) => return None,
            (Some(cert), Some(key)) => (PathBuf::from(cert), PathBuf::from(key)),
            _ => {
                self.error(at, "[server] tls_cert and tls_key go together".into());
                return None;
            }
        };
        self.warn_if_world_readable(&key, "[server] tls_key");
        match crate::http::tls::load(&cert, &key) {
            Ok(certified) => Some(super::TlsFiles {
                cert,
                key,
                certified,
            }),
            Err(message) => {
                self.error(at, format!("[server] TLS: {message}"));
                None
            }
        }
    }

    fn admin(&mut self, raw: RawAdmin, section: &Section) -> Option<AdminConfig> {
        let access = self.admin_access(raw, section, true)?;
        Some(AdminConfig {
            listen: access.listen,
            token: access.token?,
        })
    }

    /// `[admin]`'s address, and its token when `resolve_token`.
    fn admin_access(
        &mut self,
        raw: RawAdmin,
        section: &Section,
        resolve_token: bool,
    ) -> Option<AdminAccess> {
        let listen = self.address(&raw.listen, self.key_position(section, "listen"));
        if !resolve_token {
            return Some(AdminAccess {
                listen: listen?,
                token: None,
            });
        }
        let token = match &raw.token {
            Some(reference) => self.secret(
                reference,
                "[admin] token",
                self.key_position(section, "token"),
            ),
            None => {
                self.error(
                    self.position_of(section.span().start),
                    "[admin] needs `token`".into(),
                );
                None
            }
        };
        if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            self.error(
                self.key_position(section, "token"),
                "[admin] token must be at least 16 bytes".into(),
            );
        }
        Some(AdminAccess {
            listen: listen?,
            token: Some(token?),
        })
    }

    fn provider(&mut self, raw: RawProvider, section: &Section) -> Option<ProviderConfig> {
        let name = match ProviderName::parse(&raw.name) {
            // The label of the requests to no provider in the metrics and the console: a
            // provider of that name would share them.
            Ok(name) if name.as_str() == crate::metrics::UNKNOWN_PROVIDER => {
                let message = format!(
                    "the provider name {:?} is reserved (it labels requests to no provider)",
                    raw.name
                );
                self.error(self.key_position(section, "name"), message);
                None
            }
            Ok(name) => Some(name),
            Err(message) => {
                self.error(self.key_position(section, "name"), message);
                None
            }
        };
        let label = format!("provider {:?}", raw.name);
        let event_id = match raw.event_id.as_deref().map(EventIdRule::parse) {
            Some(Ok(rule)) => Some(rule),
            Some(Err(message)) => {
                self.error(
                    self.key_position(section, "event_id"),
                    format!("{label}: {message}"),
                );
                None
            }
            None => None,
        };
        let verifier = self.verifier(&raw, section);
        Some(ProviderConfig {
            name: name?,
            verifier: verifier?,
            event_id,
            sync: None,
        })
    }

    /// Deserializes one section, reporting each error at the key it names (else the section).
    fn section<T: DeserializeOwned>(
        &mut self,
        section: Option<&Section>,
        label: &str,
    ) -> Option<T> {
        self.section_without(section?, label, &[])
    }

    /// [`Loader::section`] without the keys in `skip` (read apart). An unknown key is reported
    /// and left out, and the rest read again, so that every unknown key is reported at once (a
    /// key of another verification scheme, say) along with what is wrong besides.
    pub(super) fn section_without<T: DeserializeOwned>(
        &mut self,
        section: &Section,
        label: &str,
        skip: &[&str],
    ) -> Option<T> {
        let mut table: toml::Table = section
            .get_ref()
            .iter()
            .filter(|(key, _)| !skip.contains(&key.get_ref().as_str()))
            .map(|(key, value)| (key.get_ref().clone(), value.get_ref().clone()))
            .collect();
        loop {
            let message = match T::deserialize(toml::Value::Table(table.clone())) {
                Ok(value) => return Some(value),
                Err(err) => without_values(err.message().trim()),
            };
            // serde names the offending key first, in backticks.
            let named = message.split('`').nth(1).unwrap_or_default();
            let (key, within) = locate(&table, named);
            let offset = key
                .and_then(|key| section.get_ref().keys().find(|k| k.get_ref() == key))
                .map_or(section.span().start, |key| key.span().start);
            let within = within.map_or(String::new(), |table| format!(" [{table}]"));
            self.error(
                Some(self.position(offset)),
                format!("in {label}{within}: {message}"),
            );
            let unknown = message.starts_with("unknown field");
            if !(unknown && remove(&mut table, named)) {
                return None;
            }
        }
    }

    /// The one place a reference in the config file (`env:NAME`, `file:/path` or the value
    /// itself) is read. A secret written literally earns a warning naming it (`warn_as`); a
    /// public key (`warn_as` is `None`) may be written inline. The error names the reference,
    /// never a value.
    pub(super) fn resolve(
        &mut self,
        reference: &str,
        warn_as: Option<&str>,
    ) -> Result<Secret, String> {
        let (value, _) = secret::resolve(reference)?;
        if let Some(what) = warn_as {
            self.warn_if_literal(reference, what);
        }
        Ok(value)
    }

    /// A secret resolved (see [`Loader::resolve`]), or an error about `what` at `at`.
    pub(super) fn secret(
        &mut self,
        reference: &str,
        what: &str,
        at: Option<(usize, usize)>,
    ) -> Option<Secret> {
        match self.resolve(reference, Some(what)) {
            Ok(secret) => Some(secret),
            Err(message) => {
                self.error(at, format!("{what}: {message}"));
                None
            }
        }
    }

    fn address(&mut self, text: &str, at: Option<(usize, usize)>) -> Option<SocketAddr> {
        match text.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.error(at, format!("{text:?} is not an IP:port address"));
                None
            }
        }
    }

    pub(super) fn key_position(&self, section: &Section, key: &str) -> Option<(usize, usize)> {
        let offset = section
            .get_ref()
            .keys()
            .find(|k| k.get_ref() == key)
            .map_or(section.span().start, |k| k.span().start);
        Some(self.position(offset))
    }

    fn position_of(&self, offset: usize) -> Option<(usize, usize)> {
        Some(self.position(offset))
    }

    /// 1-based line and column of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    pub(super) fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    pub(super) fn error(&mut self, position: Option<(usize, usize)>, message: String) {
        self.errors.push(ConfigError { position, message });
    }
}

/// Whether two listeners cannot both bind: one port (not 0, which picks a free one), on the same
/// address, or where one is the unspecified address of the other's family (`0.0.0.0`), or `::`
/// (which takes IPv4 too, as Linux binds it by default).
fn listens_clash(a: SocketAddr, b: SocketAddr) -> bool {
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || wide.is_ipv4() == other.is_ipv4())
    };
    a.port() != 0 && a.port() == b.port() && (a.ip() == b.ip() || covers(a, b) || covers(b, a))
}

/// A serde message without the values it quotes (`invalid type: string "...", expected a
/// sequence`, `invalid type: integer `...`, expected a string`): the value may be a secret
/// written literally, or unquoted, where something else was expected.
pub(in crate::config) fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    loop {
        let found = [
            ("string \"", '"', "a string"),
            ("integer `", '`', "an integer"),
            ("floating point `", '`', "a number"),
        ]
        .into_iter()
        .filter_map(|(opening, closing, shown)| {
            rest.find(opening).map(|at| (at, opening, closing, shown))
        })
        .min_by_key(|&(at, ..)| at);
        let Some((at, opening, closing, shown)) = found else {
            break;
        };
        out.push_str(&rest[..at]);
        out.push_str(shown);
        let quoted = &rest[at + opening.len()..];
        let mut escaped = false;
        let end = quoted.char_indices().find(|&(_, c)| {
            let closes = c == closing && !escaped;
            escaped = c == '\\' && !escaped;
            closes
        });
        rest = end.map_or("", |(i, _)| &quoted[i + 1..]);
    }
    out.push_str(rest);
    out
}

/// Where a key serde names sits in a section: the section's own key, or the key of the table
/// inside it (`[provider.oauth]`) that holds it, named second.
fn locate<'a>(table: &'a toml::Table, key: &str) -> (Option<&'a str>, Option<&'a str>) {
    if let Some((own, _)) = table.get_key_value(key) {
        return (Some(own.as_str()), None);
    }
    let inner = table
        .iter()
        .find(|(_, value)| value.as_table().is_some_and(|t| t.contains_key(key)));
    match inner {
        Some((name, _)) => (Some(name.as_str()), Some(name.as_str())),
        None => (None, None),
    }
}

/// Removes `key` from the section, or from the table inside it that holds it; whether it was
/// there.
fn remove(table: &mut toml::Table, key: &str) -> bool {
    if table.remove(key).is_some() {
        return true;
    }
    table
        .iter_mut()
        .filter_map(|(_, value)| value.as_table_mut())
        .any(|inner| inner.remove(key).is_some())
}

#[cfg(test)]
mod tests;
