//! Dashboard sign-in: one-time links and session cookies.
//!
//! `fuse start` and `fuse dashboard` ask the daemon (with the API token) for a
//! link `/login?code=…`; opening it once, within `daemon.login_link_seconds`
//! (a minute by default), sets a session
//! cookie (`HttpOnly`, `SameSite=Strict`) and redirects to the dashboard. The
//! login page also takes an API token. Codes and session ids are random 256-bit
//! values kept only as SHA-256 hashes, in memory: a restarted daemon forgets
//! its sessions (`fuse dashboard` prints a new link).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::tokens::{Scope, hash};

/// How long a session lasts after sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "fuse_session";
/// Unused links and sessions kept at most (the oldest go first).
const MAX_ENTRIES: usize = 1024;

/// Who a session or link signs in as.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The token it was made with (for rate limits and logs).
    pub name: String,
    pub scope: Scope,
}

pub struct Sessions {
    inner: Mutex<Inner>,
    link_ttl: Duration,
}

#[derive(Default)]
struct Inner {
    links: HashMap<String, (Instant, Grant)>,
    sessions: HashMap<String, (Instant, Grant)>,
}

/// Drops expired entries, then the oldest while over [`MAX_ENTRIES`].
fn prune(map: &mut HashMap<String, (Instant, Grant)>, now: Instant) {
    map.retain(|_, (expires, _)| *expires > now);
    while map.len() >= MAX_ENTRIES {
        let Some(oldest) = map
            .iter()
            .min_by_key(|(_, (expires, _))| *expires)
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&oldest);
    }
}

impl Sessions {
    /// Links valid for `link_ttl`.
    pub fn new(link_ttl: Duration) -> Sessions {
        Sessions {
            inner: Mutex::default(),
            link_ttl,
        }
    }

    /// How long a new link can be used.
    pub fn link_ttl(&self) -> Duration {
        self.link_ttl
    }

    /// A new one-time sign-in code for `grant`.
    pub fn new_link(&self, grant: Grant) -> crate::Result<String> {
        let code = crate::home::random_hex(32)?;
        let now = Instant::now();
        let mut inner = self.lock()?;
        prune(&mut inner.links, now);
        inner
            .links
            .insert(hash(&code), (now + self.link_ttl, grant));
        Ok(code)
    }

    /// Uses up `code`: a new session id if the code was known and fresh.
    pub fn redeem(&self, code: &str) -> crate::Result<Option<String>> {
        let now = Instant::now();
        let mut inner = self.lock()?;
        let Some((expires, grant)) = inner.links.remove(&hash(code)) else {
            return Ok(None);
        };
        if expires <= now {
            return Ok(None);
        }
        drop(inner);
        self.start(grant).map(Some)
    }

    /// A new session for `grant` (a sign-in with a token on the login page).
    pub fn start(&self, grant: Grant) -> crate::Result<String> {
        let id = crate::home::random_hex(32)?;
        let now = Instant::now();
        let mut inner = self.lock()?;
        prune(&mut inner.sessions, now);
        inner.sessions.insert(hash(&id), (now + SESSION_TTL, grant));
        Ok(id)
    }

    /// The grant of a live session.
    pub fn check(&self, id: &str) -> Option<Grant> {
        let inner = self.inner.lock().ok()?;
        inner
            .sessions
            .get(&hash(id))
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, grant)| grant.clone())
    }

    /// Ends a session (sign out).
    pub fn end(&self, id: &str) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.sessions.remove(&hash(id));
        }
    }

    fn lock(&self) -> crate::Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| crate::Error::Setting("the session table is unusable".into()))
    }
}

/// The session id in a request's `Cookie` header.
pub fn cookie_of(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE && !value.is_empty()).then(|| value.to_string())
        })
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// The `Set-Cookie` value that ends a session in the browser.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            name: "default".into(),
            scope: Scope::Admin,
        }
    }

    #[test]
    fn a_link_signs_in_once() {
        let s = Sessions::new(Duration::from_secs(60));
        let code = s.new_link(grant()).unwrap_or_default();
        let id = s.redeem(&code).ok().flatten();
        assert!(id.as_deref().and_then(|id| s.check(id)).is_some());
        assert!(s.redeem(&code).ok().flatten().is_none(), "a second use");
        assert!(s.check("not-a-session").is_none());
        if let Some(id) = id {
            s.end(&id);
            assert!(s.check(&id).is_none(), "ended");
        }
    }

    #[test]
    fn an_expired_link_is_refused() {
        let s = Sessions::new(Duration::ZERO);
        let code = s.new_link(grant()).unwrap_or_default();
        assert!(s.redeem(&code).ok().flatten().is_none());
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = hyper::HeaderMap::new();
        h.insert(
            hyper::header::COOKIE,
            hyper::header::HeaderValue::from_static("a=1; fuse_session=abc; b=2"),
        );
        assert_eq!(cookie_of(&h).as_deref(), Some("abc"));
    }
}
