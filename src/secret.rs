//! Secrets: written `env:NAME`, `file:/path`, `credential:NAME` (a systemd credential) or as a
//! literal (for local demos only), resolved once at load time and never printed.

use std::ffi::OsStr;
use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretSlice};

/// A resolved secret value. `Debug` redacts it, so it cannot leak into logs, and its bytes are
/// zeroed when it is dropped (`secrecy`), so a replaced secret does not linger in freed memory.
#[derive(Clone)]
pub struct Secret(SecretSlice<u8>);

impl Secret {
    /// The secret's bytes, for keying a MAC or comparing a token.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// A secret derived from another one (a decoded key, for instance).
    pub fn from_bytes(bytes: Vec<u8>) -> Secret {
        Secret(bytes.into())
    }

    #[cfg(test)]
    pub fn from_literal(value: &str) -> Secret {
        Secret::from_bytes(value.as_bytes().to_vec())
    }
}

/// Configs compare equal when their secrets do (a reload tells what changed); not for checking
/// a sender's token, which the verifiers compare in constant time.
impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Secret {}

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
    Credential,
    Literal,
}

/// The prefixes of a reference to a secret kept outside the config.
const REFERENCES: [&str; 3] = ["env:", "file:", "credential:"];

/// The variable systemd sets for a unit with `LoadCredential=` or `LoadCredentialEncrypted=`:
/// a private directory holding one file per credential, readable by the service only.
pub const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Whether a reference is the secret itself rather than `env:`, `file:` or `credential:`.
pub fn is_literal(reference: &str) -> bool {
    !REFERENCES
        .iter()
        .any(|prefix| reference.starts_with(prefix))
}

/// The word before a colon that reads as a misspelled reference prefix (`Env:`,
/// `credentials:`, `cred:`, `files:`): the prefix in another case, with an `s` added, or cut
/// short to three letters or more.
fn misspelled_reference(reference: &str) -> Option<&str> {
    let (word, _) = reference.split_once(':')?;
    if word.is_empty() || word.len() > 12 || !word.bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    let near = REFERENCES.iter().any(|prefix| {
        let name = prefix.trim_end_matches(':');
        let singular = lower.strip_suffix('s').unwrap_or(&lower);
        lower == name || singular == name || (singular.len() >= 3 && name.starts_with(singular))
    });
    near.then_some(word)
}

/// Resolves one secret reference. The error names the reference, never the value.
pub fn resolve(reference: &str) -> Result<(Secret, SecretSource), String> {
    let (value, source) = if let Some(name) = reference.strip_prefix("env:") {
        // As bytes, as a file's are: a value that is not UTF-8 read as "not set".
        use std::os::unix::ffi::OsStringExt;
        let value = std::env::var_os(name)
            .ok_or_else(|| format!("environment variable {name} is not set"))?;
        (value.into_vec(), SecretSource::Env)
    } else if let Some(path) = reference.strip_prefix("file:") {
        let value = read_trimmed(Path::new(path))
            .map_err(|err| format!("cannot read secret file {path}: {err}"))?;
        (value, SecretSource::File)
    } else if let Some(name) = reference.strip_prefix("credential:") {
        (credential(name)?, SecretSource::Credential)
    } else if let Some(word) = misspelled_reference(reference) {
        return Err(format!(
            "a secret starts with \"{word}:\", a misspelled \"env:\", \"file:\" or \"credential:\" (taken as the secret itself, it would sit in the config file)"
        ));
    } else {
        (reference.as_bytes().to_vec(), SecretSource::Literal)
    };
    if value.is_empty() {
        return Err(match source {
            SecretSource::Env => format!("{} is empty", reference),
            SecretSource::File => format!("secret file {} is empty", &reference[5..]),
            SecretSource::Credential => format!("{reference} is empty"),
            SecretSource::Literal => "a secret is empty".to_string(),
        });
    }
    Ok((Secret::from_bytes(value), source))
}

/// The systemd credential `name`: the file of that name in `$CREDENTIALS_DIRECTORY`.
fn credential(name: &str) -> Result<Vec<u8>, String> {
    credential_in(std::env::var_os(CREDENTIALS_DIRECTORY).as_deref(), name)
}

/// The credential `name` in `dir` (the value of `$CREDENTIALS_DIRECTORY`, if set).
fn credential_in(dir: Option<&OsStr>, name: &str) -> Result<Vec<u8>, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!("credential name {name:?} is not a file name"));
    }
    let dir = dir.ok_or_else(|| {
        format!(
            "credential:{name} needs ${CREDENTIALS_DIRECTORY}, which systemd sets for a unit \
             with LoadCredential={name}:/path; it is not set"
        )
    })?;
    let path = Path::new(&dir).join(name);
    read_trimmed(&path).map_err(|err| format!("cannot read credential {}: {err}", path.display()))
}

/// A file's bytes, without trailing line ends.
fn read_trimmed(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut value = std::fs::read(path)?;
    while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        value.pop();
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelled_reference_is_refused_not_taken_as_the_secret() {
        for reference in [
            "credentials:admin-token",
            "Env:SECRET",
            "ENV:X",
            "cred:x",
            "files:/a",
        ] {
            let err = resolve(reference).unwrap_err();
            assert!(err.contains("misspelled"), "{reference}: {err}");
            let (_, rest) = reference.split_once(':').unwrap();
            assert!(rest.len() < 3 || !err.contains(rest), "{err} shows {rest}");
        }
        for literal in [
            "whsec_abc:def",
            "hunter2",
            "a:b",
            "token:0123456789abcdef",
            ":x",
        ] {
            let (secret, source) = resolve(literal).unwrap();
            assert_eq!(
                (secret.expose(), source),
                (literal.as_bytes(), SecretSource::Literal)
            );
        }
    }

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
        // Bytes that are not UTF-8 are the secret too, as a file's (they read as "not set").
        use std::os::unix::ffi::OsStrExt;
        let raw = std::ffi::OsStr::from_bytes(b"k\xff\xfey");
        std::env::set_var("HOOKGATE_TEST_SECRET_RESOLVE_BYTES", raw);
        let (secret, _) = resolve("env:HOOKGATE_TEST_SECRET_RESOLVE_BYTES").unwrap();
        assert_eq!(secret.expose(), b"k\xff\xfey");
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

    #[test]
    fn credentials_come_from_the_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), "from-systemd\n").unwrap();
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let at = Some(dir.path().as_os_str());
        assert_eq!(credential_in(at, "admin-token").unwrap(), b"from-systemd");
        assert!(!is_literal("credential:admin-token"));

        let unset = credential_in(None, "admin-token").unwrap_err();
        assert!(unset.contains("$CREDENTIALS_DIRECTORY"), "{unset}");
        assert!(unset.contains("LoadCredential=admin-token:"), "{unset}");
        let missing = credential_in(at, "github").unwrap_err();
        assert!(missing.contains("cannot read credential"), "{missing}");
        assert!(missing.contains(&dir.path().join("github").display().to_string()));
        for name in ["", ".", "..", "../admin-token", "a/b"] {
            let err = credential_in(at, name).unwrap_err();
            assert!(err.contains("is not a file name"), "{name:?}: {err}");
        }
        // Through `resolve`, with systemd's variable set (no other test reads it).
        std::env::set_var(CREDENTIALS_DIRECTORY, dir.path());
        let (secret, source) = resolve("credential:admin-token").unwrap();
        assert_eq!(
            (secret.expose(), source),
            (&b"from-systemd"[..], SecretSource::Credential)
        );
        let empty = resolve("credential:empty").unwrap_err();
        std::env::remove_var(CREDENTIALS_DIRECTORY);
        assert_eq!(empty, "credential:empty is empty");
    }
}
