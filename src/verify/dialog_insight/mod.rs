//! Dialog Insight: `X-DI-Signature` holds an RSA PKCS#1 v1.5 signature of the raw body, made
//! with Dialog Insight's private key; the webhook's configuration page gives the public key as
//! XML (.NET `<RSAKeyValue>`) or PEM.
//!
//! Dialog Insight does not publish the exact parameters, so they are options: `hash` (`sha256`,
//! the default, or `sha1`) and `signature_encoding` (`base64`, the default, or `hex`). Keys are
//! listed in `public_keys` (several during a rotation: any one verifying is enough) and are read
//! and checked at start-up (see `keys`). A JSON body with a top-level `"isTest": true` (the
//! "Test" button) is accepted as a test event; `forward_tests` says whether such events go
//! downstream. The payloads carry no event id, so the body's hash serves.

mod keys;

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use rsa::traits::PublicKeyParts;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::hmac_generic::Encoding;
use super::{required, Claims, Rejection, SignedHeaders, Unverified};
use crate::secret::Secret;

const SIGNATURE: &str = "X-DI-Signature";

/// The hash signed with RSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha1,
}

impl Hash {
    pub fn parse(name: &str) -> Result<Hash, String> {
        match name {
            "sha256" => Ok(Hash::Sha256),
            "sha1" => Ok(Hash::Sha1),
            other => Err(format!("hash {other:?} is not one of \"sha256\", \"sha1\"")),
        }
    }

    /// The body's digest and the PKCS#1 v1.5 padding scheme that names it.
    fn digest(self, body: &[u8]) -> (Vec<u8>, Pkcs1v15Sign) {
        match self {
            Hash::Sha256 => (Sha256::digest(body).to_vec(), Pkcs1v15Sign::new::<Sha256>()),
            Hash::Sha1 => (Sha1::digest(body).to_vec(), Pkcs1v15Sign::new::<Sha1>()),
        }
    }
}

pub struct DialogInsight {
    keys: Vec<RsaPublicKey>,
    hash: Hash,
    encoding: Encoding,
    forward_tests: bool,
}

impl fmt::Debug for DialogInsight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits: Vec<usize> = self.keys.iter().map(|key| key.n().bits()).collect();
        f.debug_struct("DialogInsight")
            .field("key_bits", &bits)
            .field("hash", &self.hash)
            .field("encoding", &self.encoding)
            .field("forward_tests", &self.forward_tests)
            .finish()
    }
}

impl DialogInsight {
    /// Checks every key and option, reporting every problem at once. `public_keys` holds each
    /// key's text (PEM or XML) with the label its errors start with; the caller sees that there
    /// is at least one. `hash` defaults to `sha256`, `signature_encoding` to `base64`.
    pub fn new(
        public_keys: &[(String, Secret)],
        hash: Option<&str>,
        signature_encoding: Option<&str>,
        forward_tests: bool,
    ) -> Result<DialogInsight, Vec<String>> {
        let mut errors = Vec::new();
        let mut keys = Vec::new();
        for (label, text) in public_keys {
            match keys::parse_public_key(text.expose()) {
                Ok(key) => keys.push(key),
                Err(err) => errors.push(format!("{label}: {err}")),
            }
        }
        let hash = Hash::parse(hash.unwrap_or("sha256"))
            .map_err(|err| errors.push(err))
            .ok();
        let encoding_name = signature_encoding.unwrap_or("base64");
        let encoding = Encoding::parse(encoding_name)
            .map_err(|_| {
                errors.push(format!(
                    "signature_encoding {encoding_name:?} is not one of \"base64\", \"hex\""
                ))
            })
            .ok();
        match (hash, encoding) {
            (Some(hash), Some(encoding)) if errors.is_empty() => Ok(DialogInsight {
                keys,
                hash,
                encoding,
                forward_tests,
            }),
            _ => Err(errors),
        }
    }

    /// Accepts the request when any configured key verifies the signature of the raw body.
    pub fn verify(&self, request: &Unverified<'_>) -> Result<Claims, Rejection> {
        let header = required(request, SIGNATURE)?;
        let signature = self
            .encoding
            .decode(header.trim())
            .filter(|bytes| !bytes.is_empty())
            .ok_or(Rejection::MalformedHeader(SIGNATURE))?;
        let (digest, scheme) = self.hash.digest(&request.body);
        let verified = self
            .keys
            .iter()
            .any(|key| key.verify(scheme.clone(), &digest, &signature).is_ok());
        if !verified {
            return Err(Rejection::BadSignature);
        }
        Ok(Claims {
            test: is_test(&request.body),
            ..Claims::default()
        })
    }

    pub fn forward_tests(&self) -> bool {
        self.forward_tests
    }

    pub fn hash(&self) -> Hash {
        self.hash
    }

    pub fn signature_encoding(&self) -> Encoding {
        self.encoding
    }

    /// Signs `body` as Dialog Insight would, with this provider's `hash` and encoding, for
    /// `hookgate send-test`: the header to send.
    pub fn sign(&self, private_key_pem: &str, body: &[u8]) -> Result<SignedHeaders, String> {
        let value = Self::sign_with_private_key(private_key_pem, self.hash, self.encoding, body)?;
        Ok(vec![(SIGNATURE.to_string(), value)])
    }

    /// The `X-DI-Signature` value for `body`, signed with a PKCS#8 or PKCS#1 PEM private key.
    pub fn sign_with_private_key(
        pem: &str,
        hash: Hash,
        encoding: Encoding,
        body: &[u8],
    ) -> Result<String, String> {
        let key = keys::parse_private_key(pem)?;
        let (digest, scheme) = hash.digest(body);
        let signature = key
            .sign(scheme, &digest)
            .map_err(|err| format!("RSA signing failed: {err}"))?;
        Ok(match encoding {
            Encoding::Base64 => BASE64.encode(signature),
            Encoding::Hex => hex::encode(signature),
        })
    }
}

/// Whether the body is a JSON object whose top-level `isTest` is `true` (Dialog Insight's "Test"
/// button). Anything else, including a non-JSON body or `"isTest": "true"`, is a real event.
fn is_test(body: &[u8]) -> bool {
    if !body.windows(6).any(|window| window == b"isTest") {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .is_ok_and(|json| json.get("isTest") == Some(&serde_json::Value::Bool(true)))
}

#[cfg(test)]
mod tests;
