//! Secrets: written `env:NAME`, `file:/path` or as a literal (for local demos only), resolved once
//! at load time and never printed.

use std::fmt;

/// A resolved secret value. `Debug` and `Display` redact it, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret's bytes, for keying a MAC or comparing a token.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// A secret derived from another one (a decoded key, for instance).
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    #[cfg(test)]
    pub fn from_literal(value: &str) -> Secret {
        Secret(value.as_bytes().to_vec())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where a secret came from; literals earn a warning at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Env,
    File,
    Literal,
}

/// Whether a reference is the secret itself rather than `env:` or `file:`.
pub fn is_literal(reference: &str) -> bool {
    !(reference.starts_with("env:") || reference.starts_with("file:"))
}

/// Resolves one secret reference. The error names the reference, never the value.
pub fn resolve(reference: &str) -> Result<(Secret, SecretSource), String> {
    let (value, source) = if let Some(name) = reference.strip_prefix("env:") {
        let value =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        (value.into_bytes(), SecretSource::Env)
    } else if let Some(path) = reference.strip_prefix("file:") {
        let mut value =
            std::fs::read(path).map_err(|err| format!("cannot read secret file {path}: {err}"))?;
        while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            value.pop();
        }
        (value, SecretSource::File)
    } else {
        (reference.as_bytes().to_vec(), SecretSource::Literal)
    };
    if value.is_empty() {
        return Err(match source {
            SecretSource::Env => format!("{} is empty", reference),
            SecretSource::File => format!("secret file {} is empty", &reference[5..]),
            SecretSource::Literal => "a secret is empty".to_string(),
        });
    }
    Ok((Secret(value), source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let secret = Secret::from_literal("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
    }

    #[test]
    fn literal_env_and_file() {
        assert_eq!(resolve("abc").unwrap().1, SecretSource::Literal);
        std::env::set_var("HOOKGATE_TEST_SECRET_RESOLVE", "xyz");
        let (secret, source) = resolve("env:HOOKGATE_TEST_SECRET_RESOLVE").unwrap();
        assert_eq!((secret.expose(), source), (&b"xyz"[..], SecretSource::Env));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "from-file\n").unwrap();
        let (secret, _) = resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(secret.expose(), b"from-file");
    }

    #[test]
    fn missing_and_empty_are_errors() {
        assert!(resolve("env:HOOKGATE_TEST_SURELY_UNSET").is_err());
        std::env::set_var("HOOKGATE_TEST_SECRET_EMPTY", "");
        assert!(resolve("env:HOOKGATE_TEST_SECRET_EMPTY").is_err());
        assert!(resolve("").is_err());
        assert!(resolve("file:/nonexistent/hookgate").is_err());
    }
}
