//! Shared by the fuzz targets: a fixed config's verifiers, and the split of one fuzz input into
//! header values, a query string and a body, as an HTTP request would deliver them.
//!
//! The property every target checks is that hookgate never panics on what a sender controls.

use std::path::Path;
use std::sync::OnceLock;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::FutureExt;
use hookgate::config::{load_str, Config};
use hookgate::verify::{Headers, Unverified, Verified, Verifier};

/// The fuzz binary's config, made by `init` on first use (each target has one config).
pub fn gateway(init: impl FnOnce() -> Config) -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(init)
}

/// Loads `providers` (TOML `[[provider]]` tables) under a minimal `[admin]`; panics if the
/// config is invalid (a bug in the target, not a finding).
pub fn config(providers: &str) -> Config {
    let text = format!("[admin]\ntoken = \"fuzz-admin-token-0123456789\"\n{providers}");
    match load_str(&text, Path::new(".")) {
        Ok((config, _warnings)) => config,
        Err(errors) => panic!("fuzz config is invalid: {errors:?}"),
    }
}

/// The verifier of the provider named `name`.
pub fn verifier<'a>(config: &'a Config, name: &str) -> &'a Verifier {
    &config
        .provider(name)
        .unwrap_or_else(|| panic!("no provider {name} in the fuzz config"))
        .verifier
}

/// `fixtures/<relative>` as an absolute path, for `file:` references in a fuzz config.
pub fn fixture(relative: &str) -> String {
    format!("{}/../fixtures/{relative}", env!("CARGO_MANIFEST_DIR"))
}

/// One fuzz input split at its first `n` newlines: `n` header-like fields, then the body
/// (everything after, any bytes).
pub struct Split<'a> {
    pub fields: Vec<&'a [u8]>,
    pub body: &'a [u8],
}

pub fn split(data: &[u8], n: usize) -> Split<'_> {
    let mut fields = Vec::with_capacity(n);
    let mut rest = data;
    for _ in 0..n {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                fields.push(&rest[..i]);
                rest = &rest[i + 1..];
            }
            None => {
                fields.push(rest);
                rest = &[];
            }
        }
    }
    Split { fields, body: rest }
}

/// Headers as actix hands them to hookgate: a value that is not visible ASCII (or tab) reads as
/// absent, like `HeaderValue::to_str`. An empty field is an absent header.
pub struct FuzzHeaders<'a>(pub Vec<(&'a str, &'a [u8])>);

impl Headers for FuzzHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        let (_, value) = self
            .0
            .iter()
            .find(|(key, value)| key.eq_ignore_ascii_case(name) && !value.is_empty())?;
        let visible = value
            .iter()
            .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
        if visible {
            std::str::from_utf8(value).ok()
        } else {
            None
        }
    }
}

/// A query string as a URI can carry it (visible ASCII, no space, no `#`), else empty.
pub fn query(bytes: &[u8]) -> &str {
    let ok = bytes
        .iter()
        .all(|&b| (0x21..0x7f).contains(&b) && b != b'#');
    if ok {
        std::str::from_utf8(bytes).unwrap_or("")
    } else {
        ""
    }
}

/// Runs `verifier.verify` on the request to completion (every scheme in a fuzz config answers
/// without waiting: no network), returning its outcome.
pub fn verify(
    verifier: &Verifier,
    headers: &dyn Headers,
    path: &str,
    query: &str,
    body: &[u8],
) -> Option<Result<Verified, hookgate::verify::Rejection>> {
    let request = Unverified {
        headers,
        path,
        query,
        body: Bytes::copy_from_slice(body),
        peer: Some([127, 0, 0, 1].into()),
        now: SystemTime::now(),
    };
    verifier.verify(request).now_or_never()
}
