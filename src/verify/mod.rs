//! Verification: one scheme per provider, each in its own file behind the `Verifier` enum.
//!
//! Every scheme works on the raw body bytes, compares in constant time, accepts any of several
//! secrets (rotation) and fails closed: a missing or malformed header is a rejection. Only a
//! `Verified` request leaves this module, and only a `Verified` request can become a stored event.

mod acculynx;
mod alcmeon;
mod dialog_insight;
pub(crate) mod fields;
mod github;
mod hmac_generic;
pub mod mac;
mod none;
pub mod oauth;
mod shopify;
mod sign;
mod slack;
mod standard_webhooks;
mod stripe;
mod twilio;

use std::net::IpAddr;
use std::time::SystemTime;

use bytes::Bytes;

use crate::event::{EventId, Source};

pub use acculynx::AccuLynx;
pub use alcmeon::Alcmeon;
pub use dialog_insight::DialogInsight;
pub use github::Github;
pub use hmac_generic::GenericHmac;
pub use none::AllowIps;
pub use oauth::OAuth;
pub use shopify::Shopify;
pub use sign::{SignInput, SignedHeaders};
pub use slack::Slack;
pub use standard_webhooks::{decode_whsec, signature as standard_signature, StandardWebhooks};
pub use stripe::Stripe;
pub use twilio::Twilio;

/// Read access to a request's headers, by case-insensitive name. Values that are not visible
/// ASCII read as absent.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

/// A request as it arrived: nothing about it is trusted yet.
pub struct Unverified<'a> {
    pub headers: &'a dyn Headers,
    /// The request path as received (`/hooks/alcmeon`), without the query string.
    pub path: &'a str,
    /// The query string as received, without the `?` (empty when there is none).
    pub query: &'a str,
    pub body: Bytes,
    /// The client's address: the TCP peer's, or what a trusted proxy forwarded; `None` when a
    /// trusted proxy could not name it.
    pub peer: Option<IpAddr>,
    pub now: SystemTime,
}

/// A request whose signature (or source) checked out. Its fields can only be set here.
#[derive(Debug)]
pub struct Verified {
    body: Bytes,
    claims: Claims,
    covers: Covers,
}

/// What a scheme learned from a request it accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The event id the scheme itself carries, if any.
    pub event_id: Option<EventId>,
    /// Whether the signature covers `event_id`: it was read from the signed body (Stripe's
    /// `/id`) or from a header the signature includes (Standard Webhooks' `webhook-id`). An id
    /// from a header outside the signature (`X-GitHub-Delivery`) is not: a captured request can
    /// be replayed with any value there.
    pub id_signed: bool,
    /// The sender marked the event as a test (Dialog Insight's `isTest`).
    pub test: bool,
    /// The event's topic, where the scheme's envelope names one (AccuLynx's `TopicName`).
    pub topic: Option<String>,
    /// The request is a vendor's handshake, not an event: the answer it expects.
    pub handshake: Option<Handshake>,
    /// The signature covers what the body says but not its bytes (Twilio's form posts: the
    /// decoded parameters, sorted and joined), so other bytes can say the same to it: an id
    /// read from the body's bytes (a `json:` rule) is not vouched for.
    pub body_bytes_unsigned: bool,
}

/// What a vendor's handshake (Slack's `url_verification`) expects back with a 200, instead of an
/// acknowledgement. A handshake is verified like any request, then answered: it is no event, so
/// it is neither stored nor forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The answer's `Content-Type`.
    pub content_type: &'static str,
    /// The answer's body.
    pub body: String,
}

impl Claims {
    /// An id the signature covers.
    pub fn signed_id(event_id: Option<EventId>) -> Claims {
        Claims {
            id_signed: event_id.is_some(),
            event_id,
            ..Claims::default()
        }
    }

    /// An id read from a header the signature does not cover.
    pub fn unsigned_id(event_id: Option<EventId>) -> Claims {
        Claims {
            event_id,
            ..Claims::default()
        }
    }
}

/// What a scheme's check vouches for, beyond the id the scheme reads itself: whether an id a
/// configured `event_id` rule reads can be trusted for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covers {
    /// Nothing: `none` takes any request (from its allowed networks) as it comes.
    Nothing,
    /// The body, by a signature or a MAC over it (Twilio: its parameters, or its SHA-256 in the
    /// signed URL); headers are not covered, but for the scheme's own signed id.
    Body,
    /// The whole request: the sender authenticated itself (`oauth`'s bearer token), so a header
    /// is its word as much as the body is. A captured token can send anything while it is
    /// valid, so trusting its headers adds no risk.
    Sender,
}

impl Verified {
    /// The exact bytes the sender signed.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The event id the scheme itself carries (`webhook-id`, `X-GitHub-Delivery`), if any, and
    /// whether the signature covers it.
    pub fn scheme_event_id(&self) -> Option<(&EventId, bool)> {
        let id = self.claims.event_id.as_ref()?;
        Some((id, self.claims.id_signed))
    }

    /// Whether an id read from the body (a `json:` rule) is vouched for: the body is signed, or
    /// its sender authenticated.
    pub fn vouches_for_body(&self) -> bool {
        matches!(self.covers, Covers::Body | Covers::Sender) && !self.claims.body_bytes_unsigned
    }

    /// Whether `id`, read from a header (a `header:` rule), is vouched for: its sender
    /// authenticated, or the signature covers this very id (the scheme's own signed id).
    pub fn vouches_for_header_id(&self, id: &EventId) -> bool {
        self.covers == Covers::Sender
            || (self.claims.id_signed && self.claims.event_id.as_ref() == Some(id))
    }

    /// How the event is recorded: a `test` when the sender said so.
    pub fn source(&self) -> Source {
        if self.claims.test {
            Source::Test
        } else {
            Source::Webhook
        }
    }

    pub fn topic(&self) -> Option<&str> {
        self.claims.topic.as_deref()
    }

    /// The answer the request expects when it is a vendor's handshake rather than an event.
    pub fn handshake(&self) -> Option<&Handshake> {
        self.claims.handshake.as_ref()
    }

    pub fn into_body(self) -> Bytes {
        self.body
    }
}

/// Why a request was refused. Logged, never shown to the sender: every cause answers the same 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("header {0} is missing")]
    MissingHeader(&'static str),
    #[error("header {0} is malformed")]
    MalformedHeader(&'static str),
    #[error("timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("no signature matches")]
    BadSignature,
    #[error("source address is not allowed")]
    AddressNotAllowed,
    #[error("no bearer token")]
    MissingToken,
    #[error("the bearer token is invalid or expired")]
    InvalidToken,
    #[error("the bearer token lacks the required scope")]
    InsufficientScope,
    #[error("the token could not be checked now")]
    Unavailable,
    /// The check itself failed: it panicked, or did not end within its bound (a 503, logged
    /// as an error: a sender's retries would meet the same).
    #[error("the request could not be verified (the check panicked or did not end in time)")]
    Failed,
    #[error("the form has more parameters than hookgate decodes")]
    TooManyParameters,
    #[error("signed with an algorithm the provider does not accept")]
    AlgorithmNotAllowed,
}

impl Rejection {
    /// The `cause` label of `hookgate_rejections_total`.
    pub fn cause(self) -> &'static str {
        match self {
            Rejection::MissingHeader(_) => "missing_header",
            Rejection::MalformedHeader(_) => "malformed_header",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadSignature => "bad_signature",
            Rejection::AddressNotAllowed => "address_not_allowed",
            Rejection::MissingToken => "missing_token",
            Rejection::InvalidToken => "invalid_token",
            Rejection::InsufficientScope => "insufficient_scope",
            Rejection::Unavailable => "token_check_unavailable",
            Rejection::Failed => "verify_failed",
            Rejection::TooManyParameters => "too_many_parameters",
            Rejection::AlgorithmNotAllowed => "algorithm_not_allowed",
        }
    }
}

/// A provider's verification scheme, with its secrets resolved. `config` builds it, one
/// constructor per scheme; nothing here reads the config file.
#[derive(Debug)]
pub enum Verifier {
    StandardWebhooks(StandardWebhooks),
    Github(Github),
    Hmac(GenericHmac),
    None(AllowIps),
    Stripe(Stripe),
    Shopify(Shopify),
    Slack(Slack),
    Twilio(Twilio),
    Alcmeon(Alcmeon),
    AccuLynx(AccuLynx),
    DialogInsight(DialogInsight),
    OAuth(OAuth),
}

/// The schemes' names, as `verify = "..."` gives them.
pub const SCHEMES: &[&str] = &[
    "standard-webhooks",
    "github",
    "hmac",
    "none",
    "stripe",
    "shopify",
    "slack",
    "twilio",
    "alcmeon",
    "acculynx",
    "dialog-insight",
    "oauth",
];

impl Verifier {
    /// Checks the request; on success it becomes `Verified`. Only bearer-token schemes may
    /// wait on the network (introspection, a JWKS refresh).
    pub async fn verify(&self, request: Unverified<'_>) -> Result<Verified, Rejection> {
        let claims = match self {
            Verifier::OAuth(scheme) => scheme.verify(&request).await?,
            _ => return self.verify_local(request),
        };
        Ok(Verified {
            body: request.body,
            claims,
            covers: self.covers(),
        })
    }

    /// Whether checking a body of `len` bytes costs enough CPU to run off the I/O threads: an RSA
    /// signature, or a large body to hash or decode. Never a scheme that waits on the network.
    pub fn is_cpu_heavy(&self, len: usize) -> bool {
        const LARGE_BODY: usize = 64 * 1024;
        match self {
            Verifier::OAuth(_) | Verifier::None(_) => false,
            Verifier::DialogInsight(_) => true,
            _ => len > LARGE_BODY,
        }
    }

    /// [`Verifier::verify`] for every scheme that needs no network: pure CPU, callable from a
    /// blocking thread. A bearer-token scheme answers `Unavailable` here.
    pub fn verify_local(&self, request: Unverified<'_>) -> Result<Verified, Rejection> {
        let claims = match self {
            Verifier::StandardWebhooks(scheme) => Claims::signed_id(scheme.verify(&request)?),
            Verifier::Github(scheme) => scheme.verify(&request)?,
            Verifier::Hmac(scheme) => Claims::unsigned_id(scheme.verify(&request)?),
            Verifier::None(scheme) => Claims::unsigned_id(scheme.verify(&request)?),
            Verifier::Stripe(scheme) => scheme.verify(&request)?,
            Verifier::Shopify(scheme) => scheme.verify(&request)?,
            Verifier::Slack(scheme) => scheme.verify(&request)?,
            Verifier::Twilio(scheme) => scheme.verify(&request)?,
            Verifier::Alcmeon(scheme) => scheme.verify(&request)?,
            Verifier::AccuLynx(scheme) => scheme.verify(&request)?,
            Verifier::DialogInsight(scheme) => scheme.verify(&request)?,
            Verifier::OAuth(_) => return Err(Rejection::Unavailable),
        };
        Ok(Verified {
            body: request.body,
            claims,
            covers: self.covers(),
        })
    }

    /// What this scheme's check vouches for.
    pub fn covers(&self) -> Covers {
        match self {
            Verifier::None(_) => Covers::Nothing,
            Verifier::OAuth(_) => Covers::Sender,
            Verifier::StandardWebhooks(_)
            | Verifier::Github(_)
            | Verifier::Hmac(_)
            | Verifier::Stripe(_)
            | Verifier::Shopify(_)
            | Verifier::Slack(_)
            | Verifier::Twilio(_)
            | Verifier::Alcmeon(_)
            | Verifier::AccuLynx(_)
            | Verifier::DialogInsight(_) => Covers::Body,
        }
    }

    /// Loads or creates what the scheme keeps in the data directory (the builtin OAuth key).
    pub fn prepare(&self, data_dir: &std::path::Path) -> std::io::Result<()> {
        match self {
            Verifier::OAuth(scheme) => scheme.prepare(data_dir),
            _ => Ok(()),
        }
    }

    /// The builtin OAuth token issuer, for providers that are their own authorization server.
    pub fn oauth_builtin(&self) -> Option<&oauth::Builtin> {
        match self {
            Verifier::OAuth(scheme) => scheme.builtin(),
            _ => None,
        }
    }

    /// Whether events this provider marks as tests are forwarded downstream.
    pub fn forwards_tests(&self) -> bool {
        match self {
            Verifier::DialogInsight(scheme) => scheme.forward_tests(),
            _ => false,
        }
    }
}

/// A header that must be present, as `&str`.
fn required<'a>(request: &'a Unverified<'_>, name: &'static str) -> Result<&'a str, Rejection> {
    request
        .headers
        .get(name)
        .ok_or(Rejection::MissingHeader(name))
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;

    /// Headers for unit tests: a list of (name, value), looked up case-insensitively.
    pub struct TestHeaders(pub Vec<(&'static str, String)>);

    impl Headers for TestHeaders {
        fn get(&self, name: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }
    }

    /// A request for unit tests, at `now`, posted to `/hooks/p` without a query string.
    pub fn request<'a>(
        headers: &'a TestHeaders,
        body: &'static str,
        now: SystemTime,
    ) -> Unverified<'a> {
        Unverified {
            headers,
            path: "/hooks/p",
            query: "",
            body: Bytes::from_static(body.as_bytes()),
            peer: None,
            now,
        }
    }
}
