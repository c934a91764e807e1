//! A home joining a store on PostgreSQL, and a home's store moving there.
//!
//! - [`join`], whenever a daemon starts on PostgreSQL (and at `fuse init
//!   --store`): the store learns which master key seals its credentials
//!   (the first home to join sets it; a home with another key is told, as
//!   its credentials would not open), and the home's own API token becomes
//!   one of the store's admin tokens, so its commands keep working.
//! - [`move_home`] (`fuse init --store URL` on a home that has a store): the
//!   home's workflows with every version, tokens, credentials (still
//!   sealed), conversation memory and vector collections are copied into
//!   PostgreSQL (the embedding cache is not: it refills), leaving
//!   alone whatever the store already has by the same name. Run history
//!   stays in the home's SQLite file (`fuse runs` reads both).

use super::db::PgDb;
use crate::error::{Error, Result};
use crate::home::{Home, META_KEY_STORE};
use crate::secrets::vault::META_KEY_ID;
use crate::store::Store;
use crate::store::credentials::CredentialStore;

/// What [`move_home`] copied, and what it left because the store had it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Moved {
    pub workflows: usize,
    pub versions: usize,
    pub tokens: usize,
    pub credentials: usize,
    pub memory_sessions: usize,
    pub collections: usize,
    /// Names the store already had (kept as they were there).
    pub kept: Vec<String>,
}

/// Brings a home into the store: its key records (first home) and its
/// token. False when the store's credentials are sealed with another master
/// key than this home's (its runs cannot open them until it has that key).
pub fn join(home: &Home, db: &PgDb, token: &str) -> Result<bool> {
    let local = home.open_store()?;
    let mine = local.meta(META_KEY_ID)?;
    let mut same_key = true;
    match (db.meta(META_KEY_ID)?, &mine) {
        (None, Some(id)) => {
            if let Some(kind) = local.meta(META_KEY_STORE)? {
                db.set_meta(META_KEY_STORE, &kind)?;
            }
            db.set_meta(META_KEY_ID, id)?;
        }
        (Some(theirs), Some(id)) if theirs != *id => {
            tracing::warn!("{}", OTHER_KEY);
            same_key = false;
        }
        _ => {}
    }
    db.wait(db.pg().adopt_home_token(&crate::store::tokens::hash(token)))?;
    Ok(same_key)
}

/// What a home joining a store sealed with another key is told.
pub const OTHER_KEY: &str = "this home's master key is not the key the store's credentials are sealed with: \
     runs here cannot open them. Give this machine the same key (the first home's keys/master.key, \
     or the same FUSE_MASTER_KEY; see docs/scale-out.md)";

/// Copies a home's workflows, tokens, credentials and memory into the store.
pub fn move_home(home: &Home, db: &PgDb) -> Result<Moved> {
    let local: Store = home.open_store()?;
    // Credentials are copied sealed: the store must use this home's key.
    let mine = local.meta(META_KEY_ID)?;
    let theirs = db.meta(META_KEY_ID)?;
    if let (Some(mine), Some(theirs)) = (&mine, &theirs)
        && mine != theirs
        && !local.list_credentials()?.is_empty()
    {
        return Err(Error::Setting(
            "the store on PostgreSQL seals its credentials with another master key than this home's; \
             this home's credentials cannot be moved there (give this home that store's key first, \
             or move them with `fuse export` and `fuse import`)"
                .into(),
        ));
    }
    let mut moved = Moved::default();
    for workflow in local.export_workflows()? {
        if db.wait(db.pg().import_workflow(&workflow))? {
            moved.workflows += 1;
            moved.versions += workflow.versions.len();
        } else {
            moved.kept.push(format!("workflow {}", workflow.name));
        }
    }
    for (hash, token) in local.stored_tokens()? {
        if db.wait(db.pg().import_token(&hash, &token))? {
            moved.tokens += 1;
        } else {
            moved.kept.push(format!("token {}", token.name));
        }
    }
    for info in local.list_credentials()? {
        let Some(sealed) = local.sealed_credential(&info.name)? else {
            continue;
        };
        if db.wait(db.pg().import_credential(&sealed, &info))? {
            moved.credentials += 1;
        } else {
            moved.kept.push(format!("credential {}", info.name));
        }
    }
    for session in local.memory_sessions()? {
        let messages = local.memory_messages(&session.session)?.unwrap_or_default();
        let summary = local.memory_summary(&session.session)?;
        if db.wait(
            db.pg()
                .import_memory(&session.session, &messages, summary.as_deref()),
        )? {
            moved.memory_sessions += 1;
        } else {
            moved
                .kept
                .push(format!("memory session {}", session.session));
        }
    }
    for collection in local.vector_collections()? {
        if db.wait(db.pg().vector_version(&collection.name))?.is_some() {
            moved
                .kept
                .push(format!("vector collection {}", collection.name));
            continue;
        }
        for chunk in local.vector_items(&collection.name)?.chunks(500) {
            db.wait(db.pg().vector_upsert(&collection.name, chunk))?;
        }
        moved.collections += 1;
    }
    Ok(moved)
}
