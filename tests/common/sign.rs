//! Signing helpers: what a sender does, written independently of the gateway's code.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Digest as _;

/// A hash function the generic hmac scheme can use.
#[derive(Debug, Clone, Copy)]
pub enum Alg {
    Sha1,
    Sha256,
    Sha512,
}

/// HMAC of `data` keyed with `key`.
pub fn mac(alg: Alg, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("any key length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Alg::Sha1 => run::<Hmac<sha1::Sha1>>(key, data),
        Alg::Sha256 => run::<Hmac<sha2::Sha256>>(key, data),
        Alg::Sha512 => run::<Hmac<sha2::Sha512>>(key, data),
    }
}

pub fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Seconds since the Unix epoch.
pub fn now_ts() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("timestamp fits i64")
}

/// A `whsec_` secret made from `seed` (so each test can have its own).
pub fn whsec(seed: &str) -> String {
    format!(
        "whsec_{}",
        b64(&sha2::Sha256::digest(seed.as_bytes())[..24])
    )
}

/// Standard Webhooks signature `v1,<base64>` over `{id}.{ts}.{body}`, keyed with the
/// base64-decoded part of the `whsec_` secret.
pub fn standard_signature(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = B64.decode(encoded).expect("whsec secret is base64");
    let mut signed = format!("{id}.{ts}.").into_bytes();
    signed.extend_from_slice(body);
    format!("v1,{}", b64(&mac(Alg::Sha256, &key, &signed)))
}

/// `webhook-id`, `webhook-timestamp` (now) and `webhook-signature` headers.
pub fn standard_headers(secret: &str, id: &str, body: &[u8]) -> Vec<(String, String)> {
    standard_headers_at(secret, id, now_ts(), body)
}

/// As [`standard_headers`] with an explicit timestamp.
pub fn standard_headers_at(secret: &str, id: &str, ts: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            standard_signature(secret, id, ts, body),
        ),
        ("content-type".into(), "application/json".into()),
    ]
}

/// GitHub's `X-Hub-Signature-256` value: `sha256=<hex>` keyed with the raw secret.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(Alg::Sha256, secret.as_bytes(), body))
    )
}

/// `X-Hub-Signature-256` and `X-GitHub-Delivery` headers.
pub fn github_headers(secret: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("X-Hub-Signature-256".into(), github_signature(secret, body)),
        ("X-GitHub-Delivery".into(), delivery.into()),
        ("Content-Type".into(), "application/json".into()),
    ]
}

/// Owned header list from string pairs.
pub fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}
