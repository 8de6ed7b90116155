//! HMAC over a message given in parts, checked in constant time against candidate tags with
//! several secrets (rotation: any secret matching any candidate is enough).

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// The hash under the HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Algorithm, String> {
        match name {
            "sha1" => Ok(Algorithm::Sha1),
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other => Err(format!(
                "algorithm {other:?} is not one of \"sha1\", \"sha256\", \"sha512\""
            )),
        }
    }
}

/// Computes the tag of `parts` (concatenated) under `key`.
pub fn sign(algorithm: Algorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().to_vec()
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
        Algorithm::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
        Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
    }
}

/// True when some key's tag over `parts` equals some candidate. Comparison is constant time
/// for each pair; every key is tried for every candidate, whatever matched before.
pub fn matches_any(
    algorithm: Algorithm,
    keys: &[Secret],
    parts: &[&[u8]],
    candidates: &[Vec<u8>],
) -> bool {
    let mut matched = false;
    for key in keys {
        let expected = sign(algorithm, key.expose(), parts);
        for candidate in candidates {
            matched |= constant_time_eq(&expected, candidate);
        }
    }
    matched
}

/// Compares two byte strings in constant time (`subtle`). The length is not secret: every tag of
/// one algorithm has the same length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_published_vector() {
        let tag = sign(
            Algorithm::Sha256,
            b"It's a Secret to Everybody",
            &[b"Hello, World!"],
        );
        assert_eq!(
            hex::encode(tag),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn parts_are_concatenated() {
        let whole = sign(Algorithm::Sha512, b"k", &[b"ab.cd"]);
        assert_eq!(whole, sign(Algorithm::Sha512, b"k", &[b"ab", b".", b"cd"]));
    }

    #[test]
    fn any_key_any_candidate() {
        let keys = [Secret::from_literal("old"), Secret::from_literal("new")];
        let good = sign(Algorithm::Sha1, b"new", &[b"body"]);
        assert!(matches_any(
            Algorithm::Sha1,
            &keys,
            &[b"body"],
            &[vec![1, 2], good.clone()]
        ));
        assert!(!matches_any(
            Algorithm::Sha1,
            &keys[..1],
            &[b"body"],
            &[good]
        ));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
