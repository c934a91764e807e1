//! The daemon's view of the API tokens: the hashes from the store, kept in
//! memory. Each API request asks the store only for `meta.tokens_version` (one
//! indexed read) and reloads the hashes when it changed, so `fuse tokens new`
//! and `revoke` take effect at once. When a token was last used is written at
//! most once a minute per token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::State;
use crate::store::tokens::{Scope, hash};

/// How often last-use times are written.
const TOUCH: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct Tokens {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// hash → (name, scope)
    by_hash: HashMap<String, (String, Scope)>,
    version: Option<i64>,
    /// name → when its last use was last written.
    touched: HashMap<String, Instant>,
}

impl Tokens {
    /// The name and scope of `token`, if it is a current token.
    pub fn check(&self, state: &State, token: &str) -> Option<(String, Scope)> {
        let Ok(mut table) = self.inner.lock() else {
            tracing::error!("the token table is unusable; refusing the request");
            return None;
        };
        let now = Instant::now();
        table.refresh(state);
        let found = table.by_hash.get(&hash(token)).cloned();
        if let Some((name, _)) = &found
            && table
                .touched
                .get(name)
                .is_none_or(|at| now.duration_since(*at) >= TOUCH)
        {
            table.touched.insert(name.clone(), now);
            let used = [(name.clone(), crate::engine::events::now_ms())];
            if let Err(e) = state.db.touch_tokens(&used) {
                tracing::warn!("cannot record when token {name:?} was used: {e}");
            }
        }
        found
    }
}

impl Table {
    /// Reloads the hashes when the store says tokens changed. On a store
    /// error the table stays as it was (and says so in the log).
    fn refresh(&mut self, state: &State) {
        let version = match state.db.tokens_version() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("cannot read the API tokens ({e}); they stay as they were");
                return;
            }
        };
        if self.version == Some(version) {
            return;
        }
        match state.db.token_hashes() {
            Ok(rows) => {
                self.by_hash = rows
                    .into_iter()
                    .map(|(h, name, scope)| (h, (name, scope)))
                    .collect();
                self.version = Some(version);
            }
            Err(e) => tracing::error!("cannot read the API tokens ({e}); they stay as they were"),
        }
    }
}
