//! The console's sign-in sessions: the admin token is exchanged once for a random session id,
//! which the browser keeps in an HttpOnly, SameSite=Strict cookie. Sessions live in memory (a
//! restart signs everyone out), expire after [`IDLE`] without a request or [`LIFETIME`] in all,
//! and end when the admin token changes (a reload with a new token signs everyone out). Each
//! carries the CSRF token its forms must send back ([`super::csrf`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "hookgate_console";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// And after this long in all.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once; signing in past it ends the one least recently used.
const MAX_SESSIONS: usize = 64;

/// A signed-in operator's session, as a request sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The token every state-changing form of this session must carry.
    pub csrf: String,
}

#[derive(Debug)]
struct Kept {
    csrf: String,
    /// SHA-256 of the admin token the session was opened with.
    token: [u8; 32],
    opened: Instant,
    seen: Instant,
}

/// Every open session, by the SHA-256 of its id (so the ids themselves are not kept).
#[derive(Debug, Default)]
pub struct Sessions {
    kept: Mutex<HashMap<[u8; 32], Kept>>,
}

/// 32 random bytes from the OS, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

impl Sessions {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<[u8; 32], Kept>) -> T) -> T {
        let mut kept = self
            .kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut kept)
    }

    /// Opens a session for the holder of `admin_token` (already checked); returns its id, for
    /// the cookie.
    pub fn open(&self, admin_token: &[u8], now: Instant) -> String {
        let id = random_token();
        let kept = Kept {
            csrf: random_token(),
            token: digest(admin_token),
            opened: now,
            seen: now,
        };
        self.with(|sessions| {
            sessions.retain(|_, s| alive(s, now));
            if sessions.len() >= MAX_SESSIONS {
                let least_recent = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k);
                if let Some(key) = least_recent {
                    sessions.remove(&key);
                }
            }
            sessions.insert(digest(id.as_bytes()), kept);
        });
        id
    }

    /// The live session `id` names, opened with the current `admin_token`; marks it seen. An
    /// expired session, or one opened with another token, is ended.
    pub fn find(&self, id: &str, admin_token: &[u8], now: Instant) -> Option<Session> {
        let key = digest(id.as_bytes());
        let token = digest(admin_token);
        self.with(|sessions| {
            let kept = sessions.get_mut(&key)?;
            if !alive(kept, now) || kept.token != token {
                sessions.remove(&key);
                return None;
            }
            kept.seen = now;
            Some(Session {
                csrf: kept.csrf.clone(),
            })
        })
    }

    /// Ends session `id` (signing out).
    pub fn close(&self, id: &str) {
        self.with(|sessions| sessions.remove(&digest(id.as_bytes())));
    }
}

fn alive(kept: &Kept, now: Instant) -> bool {
    now.saturating_duration_since(kept.seen) < IDLE
        && now.saturating_duration_since(kept.opened) < LIFETIME
}

/// Every value of cookie `name` in a `Cookie` request header. A browser sends every cookie of
/// that name it holds for the host (cookies are not kept apart by port: any page on the host may
/// set one, for a longer path, which comes first), so the caller tries each; a pair that is not
/// text is skipped, not the whole header.
pub fn cookie_values<'a>(header: &'a [u8], name: &'a str) -> impl Iterator<Item = &'a str> {
    header.split(|b| *b == b';').filter_map(move |pair| {
        let pair = std::str::from_utf8(pair).ok()?;
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// The `Set-Cookie` value that hands the browser session `id`: HttpOnly (no script reads it),
/// SameSite=Strict (no other site's page makes the browser send it), scoped to the console.
/// Not `Secure`: the admin listener speaks plain HTTP (on loopback by default).
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"admin-token";

    #[test]
    fn a_session_is_found_by_its_id_only() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open(TOKEN, now);
        assert_eq!(id.len(), 64, "32 random bytes in hex");
        let session = sessions.find(&id, TOKEN, now).expect("found");
        assert_eq!(session.csrf.len(), 64);
        assert_ne!(session.csrf, id);
        assert_eq!(sessions.find("not-a-session", TOKEN, now), None);
        let other = sessions.open(TOKEN, now);
        assert_ne!(other, id, "ids are random");
        assert_ne!(
            sessions.find(&other, TOKEN, now).unwrap().csrf,
            session.csrf
        );
    }

    #[test]
    fn sessions_expire_when_idle_and_after_their_lifetime() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let id = sessions.open(TOKEN, start);
        assert!(sessions.find(&id, TOKEN, start + IDLE / 2).is_some());
        // Seen at IDLE/2: still alive just before IDLE/2 + IDLE.
        assert!(sessions.find(&id, TOKEN, start + IDLE).is_some());
        assert!(
            sessions.find(&id, TOKEN, start + IDLE * 2).is_none(),
            "idle"
        );
        assert!(sessions.find(&id, TOKEN, start).is_none(), "and it is gone");

        let busy = sessions.open(TOKEN, start);
        let mut at = start;
        while at < start + LIFETIME - IDLE {
            at += IDLE / 2;
            assert!(sessions.find(&busy, TOKEN, at).is_some());
        }
        assert!(
            sessions.find(&busy, TOKEN, start + LIFETIME).is_none(),
            "lifetime"
        );
    }

    #[test]
    fn a_new_admin_token_ends_every_session() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open(TOKEN, now);
        assert!(sessions.find(&id, b"rotated-token", now).is_none());
        assert!(sessions.find(&id, TOKEN, now).is_none(), "ended, not kept");
    }

    #[test]
    fn signing_out_ends_the_session() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let id = sessions.open(TOKEN, now);
        sessions.close(&id);
        assert!(sessions.find(&id, TOKEN, now).is_none());
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let first = sessions.open(TOKEN, start);
        for i in 1..=MAX_SESSIONS as u32 {
            sessions.open(TOKEN, start + Duration::from_millis(u64::from(i)));
        }
        assert!(sessions.with(|s| s.len()) <= MAX_SESSIONS);
        let later = start + Duration::from_secs(1);
        assert!(
            sessions.find(&first, TOKEN, later).is_none(),
            "least recent ended"
        );
    }

    #[test]
    fn cookies_are_read_and_set_strictly() {
        fn values(header: &[u8]) -> Vec<&str> {
            cookie_values(header, COOKIE).collect()
        }
        assert_eq!(values(b"a=1; hookgate_console=abc; b=2"), ["abc"]);
        assert!(values(b"xhookgate_console=abc").is_empty());
        assert_eq!(
            values(b"hookgate_console=planted; \xff=\xfe; hookgate_console=abc"),
            ["planted", "abc"]
        );
        let set = set_cookie("abc");
        for part in [
            "hookgate_console=abc",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/console",
        ] {
            assert!(set.contains(part), "{set}");
        }
        assert!(clear_cookie().contains("Max-Age=0"));
    }
}
