//! The JetStream backend's layout: subjects, headers and KV keys. A public interface: readers
//! downstream of the stream rely on it (docs/store.md, "The JetStream backend").
//!
//! - An event is one message on `hookgate.events.<provider>.<dedup hash>`, its body the
//!   payload byte for byte, its fields in `Hookgate-*` headers (and `Content-Type`). When the
//!   dedup key of the copy there (seq S) has expired while the event is kept, the next copy of
//!   the same id goes to `hookgate.events.<provider>.<dedup hash>.<S>`, and so on.
//! - An output's state is one value under `output.<name>` in the bucket `<stream>_state`, a
//!   poller's sync cursor the value under `sync.<provider>`, and an expired dedup key of a kept
//!   event an empty value under `forgotten.<dedup hash>.<seq>`.

use async_nats::HeaderMap;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::event::Source;
use crate::store::{NewEvent, StoreError, StoredEvent};

/// The subjects the stream takes.
pub const EVENTS: &str = "hookgate.events.>";

pub const PROVIDER: &str = "Hookgate-Provider";
pub const EVENT_ID: &str = "Hookgate-Event-Id";
pub const RECEIVED_AT: &str = "Hookgate-Received-At";
pub const SOURCE: &str = "Hookgate-Source";
pub const TOPIC: &str = "Hookgate-Topic";
pub const CONTENT_TYPE: &str = "Content-Type";
/// JetStream's own short-window deduplication: the same value as the subject's hash.
pub const MSG_ID: &str = "Nats-Msg-Id";

/// The hash of (provider, dedup id) that names an event's subject: the first 16 bytes of
/// SHA-256 over `provider NUL dedup id`, in lowercase hex (a provider name never holds a NUL).
pub fn dedup_hash(provider: &str, dedup_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(provider.as_bytes());
    hasher.update([0]);
    hasher.update(dedup_id.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// `hookgate.events.<provider>.<hash>`: one subject per (provider, dedup id). Provider names
/// are letters, digits, `-` and `_`, so they are one subject token.
pub fn event_subject(provider: &str, hash: &str) -> String {
    format!("hookgate.events.{provider}.{hash}")
}

/// The subject of the next copy of an id after the copy at `seq`, whose dedup key expired.
pub fn next_subject(base: &str, seq: u64) -> String {
    format!("{base}.{seq}")
}

/// The dedup hash in an event's subject.
pub fn hash_of(subject: &str) -> Option<&str> {
    subject.split('.').nth(3)
}

/// The subjects of one provider's events, or of all.
pub fn events_filter(provider: Option<&str>) -> String {
    match provider {
        Some(provider) => format!("hookgate.events.{provider}.>"),
        None => EVENTS.to_string(),
    }
}

/// The headers an event is published with; `msg_id` is its dedup hash, or for a later copy of
/// an id whose dedup key expired, that copy's (see [`next_subject`]).
pub fn headers(event: &NewEvent, msg_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, msg_id);
    headers.insert(PROVIDER, event.provider.as_str());
    headers.insert(EVENT_ID, event.event_id.as_str());
    headers.insert(RECEIVED_AT, event.received_at_ms.to_string().as_str());
    headers.insert(SOURCE, event.source.as_str());
    if let Some(content_type) = &event.content_type {
        headers.insert(CONTENT_TYPE, escape(content_type).as_str());
    }
    if let Some(topic) = &event.topic {
        headers.insert(TOPIC, escape(topic).as_str());
    }
    headers
}

/// At most how many bytes an event's subject and headers add to its body in a message (the
/// fixed parts, the provider twice, the id, and the content type and topic as escaped).
pub fn envelope_len(event: &NewEvent) -> usize {
    let escaped = |text: &Option<String>| text.as_deref().map_or(0, |t| escape(t).len() + 32);
    512 + 2 * event.provider.as_str().len()
        + event.event_id.as_str().len()
        + escaped(&event.content_type)
        + escaped(&event.topic)
}

/// An event read back from its message.
pub fn stored_event(
    seq: u64,
    headers: &HeaderMap,
    payload: &[u8],
) -> Result<StoredEvent, StoreError> {
    let get = |name: &str| headers.get(name).map(|value| value.as_str().to_string());
    let required = |name: &str| {
        get(name).ok_or_else(|| StoreError::Corrupt(format!("message {seq} has no {name} header")))
    };
    let received_at_ms = required(RECEIVED_AT)?.parse().map_err(|_| {
        StoreError::Corrupt(format!("message {seq}: {RECEIVED_AT} is not a number"))
    })?;
    // A value this version does not know (a newer hookgate's, in a rolling upgrade) reads as a
    // webhook's: the event is delivered, rather than passed over as no event.
    let source = match required(SOURCE)?.as_str() {
        "poll" => Source::Poll,
        "test" => Source::Test,
        _ => Source::Webhook,
    };
    Ok(StoredEvent {
        seq,
        provider: required(PROVIDER)?,
        event_id: required(EVENT_ID)?,
        received_at_ms,
        source,
        content_type: get(CONTENT_TYPE).map(|v| unescape(&v)),
        body: payload.to_vec(),
        topic: get(TOPIC).map(|v| unescape(&v)),
    })
}

/// A header value from any text: `%`, controls and non-ASCII bytes as `%XX` (a header value
/// cannot hold a line break, and a topic comes from the sender's body).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte == b'%' || byte.is_ascii_control() || !byte.is_ascii() {
            out.push_str(&format!("%{byte:02X}"));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

fn unescape(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The KV bucket of outputs' state and sync cursors.
pub fn bucket(stream: &str) -> String {
    format!("{stream}_state")
}

/// The KV bucket of leases.
pub fn lease_bucket(stream: &str) -> String {
    format!("{stream}_leases")
}

/// A lease's key: its name as one token.
pub fn lease_key(name: &str) -> String {
    key_token(name)
}

/// `gateway.<holder>` in the leases bucket: a live gateway's config fingerprint.
pub fn gateway_key(holder: &str) -> String {
    format!("{GATEWAY_PREFIX}{}", key_token(holder))
}

pub const GATEWAY_PREFIX: &str = "gateway.";

/// `output.<name>`: one output's cursor, pause flag, replay and settled marks.
pub fn output_key(name: &str) -> String {
    format!("output.{}", key_token(name))
}

/// `dead.<name>.`: the prefix of an output's dead-record shards.
pub fn dead_prefix(name: &str) -> String {
    format!("dead.{}.", key_token(name))
}

/// `dead.<name>.<shard>`: one shard of an output's dead records.
pub fn dead_key(name: &str, shard: u64) -> String {
    format!("{}{shard}", dead_prefix(name))
}

/// `forgotten.<hash>.<seq>`: the dedup key of the event at `seq` has expired; the event stays.
pub fn forgotten_key(hash: &str, seq: u64) -> String {
    format!("forgotten.{hash}.{seq}")
}

/// `sync.<provider>`: a poller's sync cursor.
pub fn sync_key(provider: &str) -> String {
    format!("sync.{}", key_token(provider))
}

/// The name a key token stands for ([`key_token`] undone), for log lines.
pub fn name_of_token(token: &str) -> String {
    match token.strip_prefix('=') {
        Some(encoded) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_or_else(
                |_| token.to_string(),
                |name| String::from_utf8_lossy(&name).into_owned(),
            ),
        None => token.to_string(),
    }
}

/// A name as one KV key token: itself when it is letters, digits, `-` and `_`, else `=` and
/// its unpadded base64url (`=` never occurs in a plain token, so the two never meet).
fn key_token(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if plain {
        name.to_string()
    } else {
        format!(
            "={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_separate_provider_and_id() {
        assert_ne!(dedup_hash("ab", "c"), dedup_hash("a", "bc"));
        assert_eq!(dedup_hash("a", "id-1"), dedup_hash("a", "id-1"));
        assert_eq!(dedup_hash("a", "id-1").len(), 32);
        let hash = dedup_hash("github", "x");
        let subject = event_subject("github", &hash);
        assert_eq!(subject, format!("hookgate.events.github.{hash}"));
        assert_eq!(hash_of(&subject), Some(hash.as_str()));
        assert_eq!(hash_of(&next_subject(&subject, 7)), Some(hash.as_str()));
    }

    #[test]
    fn header_values_round_trip_any_text() {
        for text in [
            "application/json",
            "a%20b",
            "line\r\nbreak",
            "é ü",
            "%",
            "%4",
        ] {
            let escaped = escape(text);
            assert!(escaped
                .bytes()
                .all(|b| b.is_ascii() && !b.is_ascii_control()));
            assert_eq!(unescape(&escaped), text, "{escaped}");
        }
        assert_eq!(escape("application/json"), "application/json");
    }

    #[test]
    fn key_tokens_never_collide() {
        assert_eq!(output_key("crm"), "output.crm");
        assert_eq!(sync_key("gh"), "sync.gh");
        assert_ne!(output_key("a.b"), output_key("a_b"));
        assert!(output_key("a.b").starts_with("output.="));
        assert!(output_key("").starts_with("output.="));
    }
}
