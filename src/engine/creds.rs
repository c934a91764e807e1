//! Credentials during a run: loaded on first use (by a node's `credential`
//! input or a `{{ creds.NAME.FIELD }}` expression), cached for the run, and
//! their secret values added to the run's masks so no output, error or log
//! line carries them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use minijinja::value::{Object, Value as Mj};
use serde_json::Value;

use crate::secrets::{Credential, Masks};

/// Where a run gets credentials from (the home's vault, or a test double).
pub trait CredentialSource: Send + Sync {
    /// Decrypts one credential; the error says what is wrong and how to fix it.
    fn load(&self, name: &str) -> Result<Credential, String>;
    /// Whether a credential of this name is stored (validate's check of bare
    /// names); false when there is no store to ask.
    fn exists(&self, _name: &str) -> bool {
        false
    }
}

/// The credentials one run has loaded, and the masks they imply.
#[derive(Default)]
pub struct RunCreds {
    source: Option<Arc<dyn CredentialSource>>,
    loaded: Mutex<HashMap<String, Arc<Credential>>>,
    masks: RwLock<Masks>,
    active: AtomicBool,
}

impl RunCreds {
    pub fn new(source: Option<Arc<dyn CredentialSource>>) -> RunCreds {
        RunCreds {
            source,
            ..RunCreds::default()
        }
    }

    /// A credential by name, loading it on first use.
    pub fn get(&self, name: &str) -> Result<Arc<Credential>, String> {
        if let Ok(loaded) = self.loaded.lock()
            && let Some(c) = loaded.get(name)
        {
            return Ok(c.clone());
        }
        let source = self.source.as_ref().ok_or_else(|| {
            format!(
                "credential {name:?} cannot be used: there is no fuse home here; \
                 run `fuse init`, then `fuse creds set {name} --type TYPE`"
            )
        })?;
        let credential = Arc::new(source.load(name)?);
        // Masks first: from here on, the values may show up anywhere.
        let secrets = credential.secrets();
        if !secrets.is_empty()
            && let Ok(mut masks) = self.masks.write()
        {
            masks.extend(&secrets);
            self.active.store(true, Ordering::Release);
        }
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(name.to_string(), credential.clone());
        }
        Ok(credential)
    }

    /// Whether any secret is loaded (else masking is skipped).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn mask_value(&self, value: &mut Value) {
        if self.is_active()
            && let Ok(masks) = self.masks.read()
        {
            masks.mask_value(value);
        }
    }

    pub fn mask_string(&self, text: &mut String) {
        if self.is_active()
            && let Ok(masks) = self.masks.read()
        {
            masks.mask_string(text);
        }
    }
}

/// `creds` in expressions: `creds.NAME.FIELD`.
#[derive(Debug)]
pub(super) struct CredsObject(pub Arc<RunCreds>);

impl std::fmt::Debug for RunCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunCreds(***)")
    }
}

/// The field a bare credential name stands for: its value, token, key,
/// API key or password (the first it has).
pub const SECRET_FIELDS: &[&str] = &["value", "token", "key", "api_key", "password"];

/// Bare names in expressions (`{{ api_token }}`, as the seed format writes
/// them): the run input's field of that name, else the workflow's var, else
/// the secret field of the credential of that name ([`SECRET_FIELDS`]).
#[derive(Debug)]
pub(super) struct BareNames {
    pub trigger: Mj,
    pub vars: Mj,
    pub creds: Arc<RunCreds>,
}

impl Object for BareNames {
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        let name = key.as_str()?;
        if super::expr::CONTEXT_NAMES.contains(&name) {
            return None;
        }
        let found = |v: Mj| (!v.is_undefined() && !v.is_none()).then_some(v);
        if let Some(v) = self.trigger.get_attr(name).ok().and_then(found) {
            return Some(v);
        }
        if let Some(v) = self.vars.get_attr(name).ok().and_then(found) {
            return Some(v);
        }
        let credential = self.creds.get(name).ok()?;
        SECRET_FIELDS
            .iter()
            .find_map(|f| credential.field(f))
            .map(Mj::from)
    }
}

impl Object for CredsObject {
    fn get_value(self: &Arc<Self>, key: &Mj) -> Option<Mj> {
        let credential = self.0.get(key.as_str()?).ok()?;
        let fields: std::collections::BTreeMap<String, Mj> = credential
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Mj::from(v.as_str())))
            .collect();
        Some(Mj::from(fields))
    }
}
