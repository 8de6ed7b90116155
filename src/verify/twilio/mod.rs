//! Twilio: `X-Twilio-Signature` holds the base64 HMAC-SHA1, keyed with the account's auth token,
//! of the full URL Twilio called followed, for form posts, by every POST parameter as key then
//! value, sorted by key (and by value for a repeated key, as twilio-python does). For JSON
//! bodies Twilio adds `bodySHA256=<hex sha256 of the body>` to the URL's query and signs the URL
//! alone; the body must then hash to that value. There is no timestamp.
//!
//! A Webhook Setting can sign the same string with HMAC-SHA256 (or HMAC-SHA1) under a SharedKey
//! instead, naming the algorithm in `X-Twilio-Webhooks-Signature-Settings`; the provider's
//! `algorithm` says which it accepts ([`settings`]). Every key in `secrets` (auth tokens and
//! SharedKey secrets alike) is tried under the algorithm the request is checked with.
//!
//! The URL Twilio calls is the provider's `public_url` (the gateway may sit behind a proxy or
//! TLS terminator); when it has no query of its own, the query we received is appended. Like
//! Twilio's validators, both the URL with the scheme's default port (`:443`, `:80`) and without
//! any port are tried. The event id is `I-Twilio-Idempotency-Token` when Twilio sends one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};

mod settings;
mod urls;

use super::fields::first_secret;
use super::mac;
use super::{required, Claims, Rejection, SignInput, SignedHeaders, Unverified};
use crate::event::EventId;
use crate::secret::Secret;
use settings::{Policy, SETTINGS};
use urls::{body_hash_in, port_variants, BODY_HASH};

const SIGNATURE: &str = "X-Twilio-Signature";
const IDEMPOTENCY: &str = "I-Twilio-Idempotency-Token";
const CONTENT_TYPE: &str = "Content-Type";
const FORM: &str = "application/x-www-form-urlencoded";

#[derive(Debug)]
pub struct Twilio {
    /// Auth tokens and SharedKey secrets.
    secrets: Vec<Secret>,
    /// `public_url` as written (Twilio signs the text it was configured with).
    public_url: String,
    /// Whether `public_url` carries a query of its own (then the received one is not appended).
    has_query: bool,
    /// `algorithm`: the HMACs accepted.
    policy: Policy,
}

impl Twilio {
    /// The keys as written: `public_url` (required) and `algorithm` (default `either`). Every
    /// problem is reported at once.
    pub fn new(
        secrets: Vec<Secret>,
        public_url: Option<&str>,
        algorithm: Option<&str>,
    ) -> Result<Twilio, Vec<String>> {
        let public_url = match public_url {
            None => Err("verify = \"twilio\" needs `public_url`, the URL Twilio calls".to_string()),
            Some(text) => match url::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Ok((text.to_string(), url.query().is_some()))
                }
                _ => Err(format!("public_url {text:?} is not an http(s) URL")),
            },
        };
        match (public_url, Policy::parse(algorithm)) {
            (Ok((public_url, has_query)), Ok(policy)) => Ok(Twilio {
                secrets,
                public_url,
                has_query,
                policy,
            }),
            (url, policy) => Err(url.err().into_iter().chain(policy.err()).collect()),
        }
    }

    pub fn sign(&self, input: &SignInput<'_>) -> Result<SignedHeaders, String> {
        let secret = first_secret(&self.secrets)?;
        let url = input.url.as_str();
        let (content_type, params) = match body_hash_in(url) {
            Some(hash) if hash == hex::encode(Sha256::digest(input.body)) => {
                ("application/json", Vec::new())
            }
            Some(_) => return Err(format!("{BODY_HASH} in the URL does not match the body")),
            None => (
                FORM,
                sorted_params(input.body).ok_or("the form has too many parameters")?,
            ),
        };
        let (algorithm, settings) = self.policy.signing();
        let tag = mac::sign(algorithm, secret.expose(), &signed_parts(url, &params));
        let mut headers = vec![
            (SIGNATURE.to_string(), BASE64.encode(tag)),
            (CONTENT_TYPE.to_string(), content_type.to_string()),
            (IDEMPOTENCY.to_string(), input.event_id.to_string()),
        ];
        headers.extend(settings.map(|value| (SETTINGS.to_string(), value.to_string())));
        Ok(headers)
    }

    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let tag = BASE64
            .decode(required(request, SIGNATURE)?.trim())
            .map_err(|_| Rejection::MalformedHeader(SIGNATURE))?;
        let algorithm = self.policy.algorithm(request.headers.get(SETTINGS))?;
        let url = if request.query.is_empty() {
            self.public_url.clone()
        } else if !self.has_query {
            format!("{}?{}", self.public_url, request.query)
        } else {
            // The configured query as is, and what Twilio appended to it (`bodySHA256` for a
            // JSON body): the request's query past the configured one, when it begins with it.
            let own = self
                .public_url
                .split_once('?')
                .map_or("", |(_, query)| query);
            match request
                .query
                .strip_prefix(own)
                .and_then(|rest| rest.strip_prefix('&'))
            {
                Some(appended) => format!("{}&{appended}", self.public_url),
                None => self.public_url.clone(),
            }
        };
        let params = if let Some(hash) = body_hash_in(&url) {
            // Not a secret: a plain comparison is fine. The URL carrying it is signed below.
            if hash != hex::encode(Sha256::digest(&request.body)) {
                return Err(Rejection::BadSignature);
            }
            Vec::new()
        } else if is_form(request.headers.get(CONTENT_TYPE)) {
            sorted_params(&request.body).ok_or(Rejection::TooManyParameters)?
        } else if request.body.is_empty() {
            Vec::new()
        } else {
            // A body the signature would not cover.
            return Err(Rejection::MalformedHeader(CONTENT_TYPE));
        };
        // Without `bodySHA256` in the URL, what is signed is the form's parameters, not bytes.
        let params_signed = body_hash_in(&url).is_none();
        let mut matched = false;
        for variant in port_variants(&url) {
            let parts = signed_parts(&variant, &params);
            matched |=
                mac::matches_any(algorithm, &self.secrets, &parts, std::slice::from_ref(&tag));
        }
        if !matched {
            return Err(Rejection::BadSignature);
        }
        Ok(Claims {
            // A form's bytes are not what is signed: `{"id":"x","p":"...&..."}` posted as a form
            // can rebuild the signed parameters of a captured request, JSON to a `json:` rule.
            body_bytes_unsigned: params_signed,
            ..Claims::unsigned_id(request.headers.get(IDEMPOTENCY).and_then(EventId::new))
        })
    }
}

/// The URL followed by each parameter's key and value.
fn signed_parts<'a>(url: &'a str, params: &'a [(String, String)]) -> Vec<&'a [u8]> {
    let mut parts = vec![url.as_bytes()];
    for (key, value) in params {
        parts.push(key.as_bytes());
        parts.push(value.as_bytes());
    }
    parts
}

/// Form parameters a request may carry: Twilio's own requests carry a few dozen. Decoding and
/// sorting half a million cost 193 ms of CPU before this cap.
pub const MAX_FORM_PARAMS: usize = 1000;

/// The decoded form parameters, sorted by key then value, a repeated pair kept once
/// (twilio-python's `sorted(set(...))`); `None` past [`MAX_FORM_PARAMS`], decoding no further.
fn sorted_params(body: &[u8]) -> Option<Vec<(String, String)>> {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .take(MAX_FORM_PARAMS + 1)
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    if params.len() > MAX_FORM_PARAMS {
        return None;
    }
    params.sort();
    params.dedup();
    Some(params)
}

/// `application/x-www-form-urlencoded`, with or without parameters such as `charset`.
fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case(FORM))
}

impl Twilio {
    /// The URL Twilio calls, as configured: what `hookgate send-test` signs over.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }
}

#[cfg(test)]
mod tests;
