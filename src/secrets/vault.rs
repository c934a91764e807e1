//! The credentials vault: named credentials encrypted with XChaCha20-Poly1305
//! under the master key. A row holds the type, the field names, a random 24-byte
//! nonce and the ciphertext; the credential's name and type are the associated
//! data, so a row copied over another one does not decrypt.
//!
//! Rotation keeps every credential readable whatever moment it is killed at: the
//! new key is stored as the *next* key first, then one transaction re-encrypts
//! every row and records the new key's fingerprint, then the next key replaces
//! the old one. Opening the vault finishes or discards a rotation left half done,
//! by comparing both keys' fingerprints with the one in the database.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use super::keystore::{self, KeyStoreKind, MasterKey};
use super::types::{self, CredType};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::store::credentials::CredentialStore;

/// `meta` key of the fingerprint of the key the credentials are encrypted with.
pub const META_KEY_ID: &str = "key_id";
const AAD_PREFIX: &[u8] = b"fuse credential v1\0";
const NONCE_LEN: usize = 24;
/// Credential names: what a workflow writes after `creds.` and in `credential`.
const NAME_RULE: &str = "1-64 letters, digits, `_` or `-`, starting with a letter";

/// A decrypted credential. Its `Debug` never shows values.
pub struct Credential {
    pub name: String,
    pub kind: String,
    pub fields: BTreeMap<String, Zeroizing<String>>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Credential {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|v| v.as_str())
    }

    /// The values to mask: the secret fields of the type (every field when the
    /// type is unknown), and the Basic-auth form of a user and password.
    pub fn secrets(&self) -> super::Masks {
        let mut masks = super::Masks::default();
        let spec = types::find(&self.kind);
        for (name, value) in &self.fields {
            let secret = spec
                .and_then(|t| t.fields.iter().find(|f| f.name == name))
                .is_none_or(|f| f.secret);
            if secret {
                masks.add(value);
            }
        }
        if let (Some(user), Some(password)) = (self.field("username"), self.field("password")) {
            masks.add_basic(user, password);
        }
        masks
    }
}

pub use crate::store::credentials::CredentialInfo;
use crate::store::credentials::Sealed;

/// The vault of one home.
pub struct Vault {
    store: Arc<dyn CredentialStore>,
    key: MasterKey,
    kind: KeyStoreKind,
    home: PathBuf,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("home", &self.home)
            .field("key_store", &self.kind)
            .finish()
    }
}

/// Checks a credential name.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::Credential(format!(
            "{name:?} is not a valid credential name: use {NAME_RULE}"
        )))
    }
}

/// Checks fields against a type: every required field present and non-empty,
/// no unknown field.
pub fn check_fields(spec: &CredType, fields: &BTreeMap<String, Zeroizing<String>>) -> Result<()> {
    let known: Vec<&str> = spec.fields.iter().map(|f| f.name.as_str()).collect();
    if let Some(unknown) = fields.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::Credential(format!(
            "a {} credential has no field `{unknown}`; its fields are {}",
            spec.name,
            known.join(", ")
        )));
    }
    for field in spec.fields.iter().filter(|f| f.required) {
        if fields.get(&field.name).is_none_or(|v| v.is_empty()) {
            return Err(Error::Credential(format!(
                "a {} credential needs `{}` ({})",
                spec.name, field.name, field.help
            )));
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn aad(name: &str, kind: &str) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad.push(0);
    aad.extend_from_slice(kind.as_bytes());
    aad
}

fn encrypt(
    key: &MasterKey,
    name: &str,
    kind: &str,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| Error::Credential(format!("the OS random generator failed: {e}")))?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let aad = aad(name, kind);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Error::Credential(format!("credential {name:?} could not be encrypted")))?;
    Ok((nonce.to_vec(), ciphertext))
}

fn decrypt(
    key: &MasterKey,
    name: &str,
    kind: &str,
    nonce: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    let refused = || {
        Error::Credential(format!(
            "credential {name:?} cannot be decrypted: the master key is not the one it was \
             stored with, or its database row was altered; set it again with \
             `fuse creds set {name} --type {kind}`"
        ))
    };
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad(name, kind),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| refused())
}

fn parse_fields(name: &str, plaintext: &[u8]) -> Result<BTreeMap<String, Zeroizing<String>>> {
    let map: BTreeMap<String, String> = serde_json::from_slice(plaintext).map_err(|_| {
        Error::Credential(format!(
            "credential {name:?} decrypted to something that is not a field map; set it again"
        ))
    })?;
    Ok(map
        .into_iter()
        .map(|(k, v)| (k, Zeroizing::new(v)))
        .collect())
}

fn encode_fields(fields: &BTreeMap<String, Zeroizing<String>>) -> Result<Zeroizing<Vec<u8>>> {
    let plain: BTreeMap<&str, &str> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    serde_json::to_vec(&plain)
        .map(Zeroizing::new)
        .map_err(|e| Error::Credential(format!("cannot encode the fields: {e}")))
}

/// How far a rotation goes (tests stop it early to check recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RotateStage {
    /// The next key is stored; nothing is re-encrypted.
    NextKeySaved,
    /// The re-encryption committed; the old key is still the master key.
    Committed,
    /// Done.
    Promoted,
}

impl Vault {
    /// Opens the vault of an initialised home, finishing or discarding a rotation
    /// that was interrupted.
    pub fn open(home: &Home) -> Result<Vault> {
        match home.store_url()? {
            Some(url) => Vault::open_on(home, crate::store::pg::db::shared(&url)?),
            None => Vault::open_on(home, Arc::new(std::sync::Mutex::new(home.open_store()?))),
        }
    }

    /// [`Vault::open`] on a store already open (the daemon's [`crate::store::Db`]).
    pub fn open_on(home: &Home, store: Arc<dyn CredentialStore>) -> Result<Vault> {
        let kind = Home::key_store(|k| store.meta(k))?.ok_or_else(|| {
            Error::KeyStore(format!(
                "the home {} has no master key yet; run `fuse init`",
                home.root().display()
            ))
        })?;
        let root = home.root().to_path_buf();
        let current = keystore::load(&root, kind)?;
        let next = keystore::load_next(&root, kind)?;
        let recorded = store.meta(META_KEY_ID)?;
        let key = match (recorded, next) {
            (Some(id), Some(next)) if keystore::key_id(&next) == id => {
                // The rotation committed but was stopped before the new key took over.
                if kind != KeyStoreKind::Env {
                    keystore::promote_next(&root, kind)?;
                }
                next
            }
            (Some(id), next) => {
                if keystore::key_id(&current) != id {
                    return Err(Error::KeyStore(wrong_key_message(kind)));
                }
                if next.is_some() && kind != KeyStoreKind::Env {
                    // A rotation that never committed: its key encrypts nothing.
                    keystore::discard_next(&root, kind)?;
                }
                current
            }
            (None, _) => {
                // A home from before fingerprints: adopt the key if it opens a row.
                if let Some(first) = store.any_sealed_credential()?
                    && decrypt(
                        &current,
                        &first.name,
                        &first.kind,
                        &first.nonce,
                        &first.ciphertext,
                    )
                    .is_err()
                {
                    return Err(Error::KeyStore(wrong_key_message(kind)));
                }
                store.set_meta(META_KEY_ID, &keystore::key_id(&current))?;
                current
            }
        };
        Ok(Vault {
            store,
            key,
            kind,
            home: root,
        })
    }

    pub fn key_store(&self) -> KeyStoreKind {
        self.kind
    }

    /// Creates or replaces a credential of a built-in type.
    pub fn set(
        &self,
        name: &str,
        kind: &str,
        fields: &BTreeMap<String, Zeroizing<String>>,
    ) -> Result<()> {
        let spec = types::find(kind).map(CredType::from).ok_or_else(|| {
            Error::Credential(format!(
                "unknown credential type {kind:?}; the types are {}",
                types::names()
            ))
        })?;
        self.set_typed(name, &spec, fields)
    }

    /// Creates or replaces a credential of any type (built-in or from a plugin).
    pub fn set_typed(
        &self,
        name: &str,
        spec: &CredType,
        fields: &BTreeMap<String, Zeroizing<String>>,
    ) -> Result<()> {
        check_name(name)?;
        let kind = spec.name.as_str();
        check_fields(spec, fields)?;
        let plaintext = encode_fields(fields)?;
        let (nonce, ciphertext) = encrypt(&self.key, name, kind, &plaintext)?;
        // Field names in the type's order (username before password).
        let names: Vec<&str> = spec
            .fields
            .iter()
            .map(|f| f.name.as_str())
            .filter(|n| fields.contains_key(*n))
            .collect();
        let names = serde_json::to_string(&names).unwrap_or_default();
        let sealed = Sealed {
            name: name.to_string(),
            kind: kind.to_string(),
            nonce,
            ciphertext,
        };
        self.store.put_credential(&sealed, &names, now_ms())
    }

    /// Decrypts a credential and notes that it was used.
    pub fn get(&self, name: &str) -> Result<Credential> {
        let store = &self.store;
        let Some(Sealed {
            kind,
            nonce,
            ciphertext,
            ..
        }) = store.sealed_credential(name)?
        else {
            return Err(Error::Credential(format!(
                "credential {name:?} does not exist; create it with `fuse creds set {name} --type TYPE` \
                 (types: {}), or see `fuse creds list`",
                types::names()
            )));
        };
        let plaintext = decrypt(&self.key, name, &kind, &nonce, &ciphertext)?;
        let fields = parse_fields(name, &plaintext)?;
        // Best effort: a busy database must not fail the run that uses the credential.
        if let Err(e) = store.touch_credential(name, now_ms()) {
            tracing::debug!("{e}");
        }
        Ok(Credential {
            name: name.to_string(),
            kind,
            fields,
        })
    }

    /// Every credential, by name; never a value.
    pub fn list(&self) -> Result<Vec<CredentialInfo>> {
        self.store.list_credentials()
    }

    /// Deletes a credential; false when there was none.
    pub fn remove(&self, name: &str) -> Result<bool> {
        self.store.remove_credential(name)
    }

    /// Names of the credentials that do not decrypt with the current key.
    pub fn check(&self) -> Result<Vec<(String, Result<()>)>> {
        let names: Vec<String> = self.list()?.into_iter().map(|c| c.name).collect();
        Ok(names
            .into_iter()
            .map(|n| {
                let r = self.get(&n).map(|_| ());
                (n, r)
            })
            .collect())
    }

    /// Re-encrypts every credential with a new key, then makes it the master key.
    /// Returns how many credentials were re-encrypted.
    pub fn rotate_key(&mut self) -> Result<usize> {
        self.rotate_key_until(RotateStage::Promoted)
    }

    /// [`Vault::rotate_key`], stopping after `stage` (tests use it to leave a
    /// rotation half done, as a kill would).
    pub fn rotate_key_until(&mut self, stage: RotateStage) -> Result<usize> {
        let next = match self.kind {
            KeyStoreKind::Env => keystore::load_next(&self.home, self.kind)?.ok_or_else(|| {
                Error::KeyStore(format!(
                    "this home's key comes from {}; put the new key in {} \
                     (make one with `head -c 32 /dev/urandom | base64`), run `fuse creds rotate-key`, \
                     then set {} to the new key",
                    keystore::ENV_VAR,
                    keystore::NEXT_ENV_VAR,
                    keystore::ENV_VAR
                ))
            })?,
            _ => MasterKey::generate()?,
        };
        if keystore::key_id(&next) == keystore::key_id(&self.key) {
            return Err(Error::KeyStore(format!(
                "{} holds the current key; give a new one",
                keystore::NEXT_ENV_VAR
            )));
        }
        keystore::save_next(&self.home, self.kind, &next)?;
        if stage == RotateStage::NextKeySaved {
            return Ok(0);
        }
        let count = {
            let (old, new) = (&self.key, &next);
            let result = self.store.reseal_credentials(
                &mut |row| {
                    let plaintext =
                        decrypt(old, &row.name, &row.kind, &row.nonce, &row.ciphertext)?;
                    encrypt(new, &row.name, &row.kind, &plaintext)
                },
                (META_KEY_ID, &keystore::key_id(new)),
            );
            match result {
                Ok(n) => n,
                Err(e) => {
                    if let Err(discard) = keystore::discard_next(&self.home, self.kind) {
                        tracing::warn!("cannot discard the unused next key: {discard}");
                    }
                    return Err(e);
                }
            }
        };
        if stage == RotateStage::Committed {
            return Ok(count);
        }
        keystore::promote_next(&self.home, self.kind)?;
        self.key = next;
        Ok(count)
    }
}

fn wrong_key_message(kind: KeyStoreKind) -> String {
    let source = match kind {
        KeyStoreKind::Env => format!("{} holds", keystore::ENV_VAR),
        KeyStoreKind::Keyring => "the OS keyring holds".into(),
        KeyStoreKind::File => "the key file keys/master.key holds".into(),
    };
    format!(
        "{source} a different master key than the one this home's credentials were encrypted \
         with; restore the original key (credentials cannot be decrypted without it)"
    )
}

/// The vault of a home as a run's credential source, opened on first use.
pub struct HomeCredentials {
    home: Home,
    /// Where the sealed credentials are: the home's SQLite file when `None`.
    store: Option<Arc<dyn CredentialStore>>,
    vault: std::sync::OnceLock<std::result::Result<Vault, String>>,
}

impl HomeCredentials {
    pub fn new(home: Home) -> HomeCredentials {
        HomeCredentials {
            home,
            store: None,
            vault: std::sync::OnceLock::new(),
        }
    }

    /// The home's keys over credentials kept in `store` (PostgreSQL).
    pub fn on(home: Home, store: Arc<dyn CredentialStore>) -> HomeCredentials {
        HomeCredentials {
            home,
            store: Some(store),
            vault: std::sync::OnceLock::new(),
        }
    }

    fn vault(&self) -> &std::result::Result<Vault, String> {
        self.vault.get_or_init(|| {
            match &self.store {
                Some(store) => Vault::open_on(&self.home, store.clone()),
                None => Vault::open(&self.home),
            }
            .map_err(|e| e.to_string())
        })
    }
}

impl crate::engine::CredentialSource for HomeCredentials {
    fn load(&self, name: &str) -> std::result::Result<Credential, String> {
        match self.vault() {
            Ok(vault) => vault.get(name).map_err(|e| e.to_string()),
            Err(e) => Err(format!("credential {name:?} cannot be loaded: {e}")),
        }
    }

    fn exists(&self, name: &str) -> bool {
        self.vault()
            .as_ref()
            .ok()
            .and_then(|v| v.list().ok())
            .is_some_and(|list| list.iter().any(|c| c.name == name))
    }
}

/// Records the fingerprint of a new home's key (at `fuse init`).
pub fn record_key_id(store: &crate::store::Store, key: &MasterKey) -> Result<()> {
    if store.meta(META_KEY_ID)?.is_none() {
        store.set_meta(META_KEY_ID, &keystore::key_id(key))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{InitOptions, init};

    fn vault() -> (tempfile::TempDir, Home, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        init(
            &home,
            &InitOptions {
                port: 5678,
                want_keyring: false,
            },
        )
        .unwrap();
        let vault = Vault::open(&home).unwrap();
        (dir, home, vault)
    }

    fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, Zeroizing<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Zeroizing::new(v.to_string())))
            .collect()
    }

    #[test]
    fn round_trip_and_checks() {
        let (_d, _home, vault) = vault();
        vault
            .set("gh", "bearer", &fields(&[("token", "tok-123456")]))
            .unwrap();
        assert_eq!(vault.get("gh").unwrap().field("token"), Some("tok-123456"));
        let msg = vault
            .set("gh", "bearer", &fields(&[]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("needs `token`"), "{msg}");
        let msg = vault
            .set("x", "bearer", &fields(&[("token", "t"), ("nope", "1")]))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("no field `nope`"), "{msg}");
        assert!(
            vault
                .set("../x", "bearer", &fields(&[("token", "t")]))
                .is_err()
        );
        assert!(vault.set("x", "magic", &fields(&[("token", "t")])).is_err());
        let msg = vault.get("missing").unwrap_err().to_string();
        assert!(
            msg.contains("does not exist") && msg.contains("fuse creds set missing"),
            "{msg}"
        );
        assert!(vault.remove("gh").unwrap());
        assert!(!vault.remove("gh").unwrap());
    }

    #[test]
    fn every_interrupted_rotation_leaves_credentials_readable() {
        for stage in [
            RotateStage::NextKeySaved,
            RotateStage::Committed,
            RotateStage::Promoted,
        ] {
            let (_d, home, mut vault) = vault();
            for i in 0..5 {
                vault
                    .set(
                        &format!("c{i}"),
                        "basic",
                        &fields(&[("username", "u"), ("password", &format!("pw-{i}-secret"))]),
                    )
                    .unwrap();
            }
            vault.rotate_key_until(stage).unwrap();
            drop(vault);
            let reopened = Vault::open(&home).unwrap();
            for i in 0..5 {
                assert_eq!(
                    reopened.get(&format!("c{i}")).unwrap().field("password"),
                    Some(format!("pw-{i}-secret").as_str()),
                    "after stopping at {stage:?}"
                );
            }
            assert!(
                !keystore::next_key_file(home.root()).exists(),
                "the next key is promoted or discarded after {stage:?}"
            );
        }
    }
}
