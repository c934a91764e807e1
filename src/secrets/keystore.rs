//! Where the 256-bit master key lives: `FUSE_MASTER_KEY` (base64), the OS keyring,
//! or a key file created exclusively with mode 0600 in a 0700 folder of the home.
//!
//! The store chosen at `fuse init` is recorded in the database, so a keyring that
//! later vanishes is a clear error, never a fresh key that orphans every secret.

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use zeroize::Zeroizing;

use crate::error::{Error, IoContext, Result};

/// Environment variable that may hold the master key (base64 of 32 bytes).
pub const ENV_VAR: &str = "FUSE_MASTER_KEY";
const KEYRING_SERVICE: &str = "fuse";

/// The 32-byte master key; its `Debug` never shows the bytes.
pub struct MasterKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<MasterKey> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *bytes)
            .map_err(|e| Error::KeyStore(format!("the OS random generator failed: {e}")))?;
        Ok(MasterKey(bytes))
    }

    /// Decodes a base64 key; `source` names where it came from for the error.
    pub fn from_base64(text: &str, source: &str) -> Result<MasterKey> {
        let bad = || {
            Error::KeyStore(format!(
                "{source} does not hold a valid master key: expected base64 of 32 bytes \
                 (make one with `head -c 32 /dev/urandom | base64`)"
            ))
        };
        let decoded = Zeroizing::new(B64.decode(text.trim()).map_err(|_| bad())?);
        let bytes: [u8; 32] = decoded.as_slice().try_into().map_err(|_| bad())?;
        Ok(MasterKey(Zeroizing::new(bytes)))
    }

    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(*self.0))
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Which store holds the master key of a home.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStoreKind {
    Env,
    Keyring,
    File,
}

impl KeyStoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStoreKind::Env => "env",
            KeyStoreKind::Keyring => "keyring",
            KeyStoreKind::File => "file",
        }
    }

    pub fn parse(s: &str) -> Option<KeyStoreKind> {
        match s {
            "env" => Some(KeyStoreKind::Env),
            "keyring" => Some(KeyStoreKind::Keyring),
            "file" => Some(KeyStoreKind::File),
            _ => None,
        }
    }
}

/// Whether the OS keyring can be used on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyringStatus {
    Available,
    Unavailable(String),
}

impl KeyringStatus {
    pub fn is_available(&self) -> bool {
        matches!(self, KeyringStatus::Available)
    }
}

/// The key file of a home.
pub fn key_file(home: &Path) -> PathBuf {
    home.join("keys").join("master.key")
}

/// Probes the OS keyring without writing to it.
pub fn keyring_status() -> KeyringStatus {
    match os_keyring::store() {
        Ok(_) => KeyringStatus::Available,
        Err(reason) => KeyringStatus::Unavailable(reason),
    }
}

/// Creates a master key for a new home and stores it. Returns the store used and,
/// when the keyring was wanted but failed, why.
pub fn create(home: &Path, want_keyring: bool) -> Result<(KeyStoreKind, Option<String>)> {
    if let Ok(value) = std::env::var(ENV_VAR) {
        MasterKey::from_base64(&value, ENV_VAR)?;
        return Ok((KeyStoreKind::Env, None));
    }
    let mut keyring_failure = None;
    if want_keyring {
        let key = MasterKey::generate()?;
        match os_keyring::save(home, &key) {
            Ok(()) => return Ok((KeyStoreKind::Keyring, None)),
            Err(reason) => keyring_failure = Some(reason),
        }
    }
    let path = key_file(home);
    if !path.exists() {
        write_key_file(&path, &MasterKey::generate()?)?;
    }
    // An existing file is a key left by an interrupted init: adopt it after checks.
    load_file(&path)?;
    Ok((KeyStoreKind::File, keyring_failure))
}

/// Loads the master key from the store recorded for the home.
pub fn load(home: &Path, kind: KeyStoreKind) -> Result<MasterKey> {
    match kind {
        KeyStoreKind::Env => match std::env::var(ENV_VAR) {
            Ok(value) => MasterKey::from_base64(&value, ENV_VAR),
            Err(_) => Err(Error::KeyStore(format!(
                "this home's master key is kept in {ENV_VAR}, which is not set; \
                 set it to the key you used at `fuse init`"
            ))),
        },
        KeyStoreKind::Keyring => os_keyring::load(home).map_err(|reason| {
            Error::KeyStore(format!(
                "this home's master key is kept in the OS keyring, which cannot be read: {reason}; \
                 unlock or start the keyring (fuse never makes a new key, which would orphan every credential)"
            ))
        }),
        KeyStoreKind::File => load_file(&key_file(home)),
    }
}

/// Environment variable holding the next key while `fuse creds rotate-key` runs
/// for a home whose key lives in [`ENV_VAR`].
pub const NEXT_ENV_VAR: &str = "FUSE_NEW_MASTER_KEY";

/// The key file of a rotation in progress.
pub fn next_key_file(home: &Path) -> PathBuf {
    home.join("keys").join("master.key.next")
}

/// Keeps `key` as the *next* key before a rotation re-encrypts anything, so a
/// rotation killed after its commit can still find the key it used.
pub fn save_next(home: &Path, kind: KeyStoreKind, key: &MasterKey) -> Result<()> {
    match kind {
        // The user supplies the next key in NEXT_ENV_VAR; nothing to store.
        KeyStoreKind::Env => Ok(()),
        KeyStoreKind::Keyring => os_keyring::save_named(home, "next", key).map_err(|reason| {
            Error::KeyStore(format!(
                "cannot store the new key in the OS keyring: {reason}"
            ))
        }),
        KeyStoreKind::File => {
            let path = next_key_file(home);
            discard_next(home, kind)?;
            write_key_file(&path, key)
        }
    }
}

/// The next key of an unfinished rotation, if one is stored.
pub fn load_next(home: &Path, kind: KeyStoreKind) -> Result<Option<MasterKey>> {
    match kind {
        KeyStoreKind::Env => match std::env::var(NEXT_ENV_VAR) {
            Ok(value) => MasterKey::from_base64(&value, NEXT_ENV_VAR).map(Some),
            Err(_) => Ok(None),
        },
        KeyStoreKind::Keyring => Ok(os_keyring::load_named(home, "next").ok()),
        KeyStoreKind::File => {
            let path = next_key_file(home);
            if path.exists() {
                load_file(&path).map(Some)
            } else {
                Ok(None)
            }
        }
    }
}

/// Makes the next key the master key (after the re-encryption committed).
pub fn promote_next(home: &Path, kind: KeyStoreKind) -> Result<()> {
    match kind {
        KeyStoreKind::Env => Ok(()),
        KeyStoreKind::Keyring => {
            let key = os_keyring::load_named(home, "next")
                .map_err(|reason| Error::KeyStore(format!("cannot read the new key: {reason}")))?;
            os_keyring::save(home, &key).map_err(|reason| {
                Error::KeyStore(format!(
                    "cannot store the new key in the OS keyring: {reason}"
                ))
            })?;
            let _ = os_keyring::delete_named(home, "next");
            Ok(())
        }
        KeyStoreKind::File => {
            let (next, current) = (next_key_file(home), key_file(home));
            std::fs::rename(&next, &current).io_context("replace key file", &current)?;
            if let Some(dir) = current.parent() {
                // The rename is durable once the folder is synced.
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(())
        }
    }
}

/// Forgets the next key of a rotation that never committed.
pub fn discard_next(home: &Path, kind: KeyStoreKind) -> Result<()> {
    match kind {
        KeyStoreKind::Env => Ok(()),
        KeyStoreKind::Keyring => {
            let _ = os_keyring::delete_named(home, "next");
            Ok(())
        }
        KeyStoreKind::File => {
            let path = next_key_file(home);
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(Error::io("remove key file", path, e)),
            }
        }
    }
}

/// A short, non-secret fingerprint of a key, kept in the database so a wrong key
/// is recognised before anything is decrypted with it.
pub fn key_id(key: &MasterKey) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"fuse master key id v1\0");
    hasher.update(key.bytes());
    crate::digest::hex(&hasher.finalize()[..8])
}

fn write_key_file(path: &Path, key: &MasterKey) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).io_context("create key folder", dir)?;
    crate::files::set_mode(dir, 0o700)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).io_context("create key file", path)?;
    file.write_all(key.to_base64().as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .io_context("write key file", path)
}

fn load_file(path: &Path) -> Result<MasterKey> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::KeyStore(format!(
                "the master key file {} is missing; restore it from your backup \
                 (without it stored credentials cannot be decrypted)",
                path.display()
            ))
        } else {
            Error::io("read key file", path, e)
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.mode() & 0o077 != 0 {
            return Err(Error::KeyStore(format!(
                "the master key file {} is readable by other users (mode {:o}); \
                 fix it with `chmod 600 {}`",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            )));
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        if meta.uid() != uid {
            return Err(Error::KeyStore(format!(
                "the master key file {} belongs to another user (uid {}); \
                 run fuse as that user or `chown` the file",
                path.display(),
                meta.uid()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = Zeroizing::new(std::fs::read_to_string(path).io_context("read key file", path)?);
    MasterKey::from_base64(&text, &path.display().to_string())
}

/// The OS keyring, through keyring-core and the Secret Service on Linux.
mod os_keyring {
    use super::*;

    #[cfg(target_os = "linux")]
    pub(super) fn store()
    -> std::result::Result<std::sync::Arc<keyring_core::CredentialStore>, String> {
        zbus_secret_service_keyring_store::Store::new()
            .map(|s| s as std::sync::Arc<keyring_core::CredentialStore>)
            .map_err(|e| {
                let raw = e.to_string();
                tracing::debug!("OS keyring: {raw}");
                if raw.contains("Failed to connect") || raw.contains("DBUS_SESSION_BUS_ADDRESS") {
                    "no D-Bus session bus, so no Secret Service keyring is reachable".to_string()
                } else {
                    raw
                }
            })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn store()
    -> std::result::Result<std::sync::Arc<keyring_core::CredentialStore>, String> {
        Err("this build of fuse has no OS keyring support for this platform".into())
    }

    fn entry(home: &Path) -> std::result::Result<keyring_core::Entry, String> {
        named_entry(home, "")
    }

    fn named_entry(home: &Path, suffix: &str) -> std::result::Result<keyring_core::Entry, String> {
        let mut user = home.display().to_string();
        if !suffix.is_empty() {
            user = format!("{user}#{suffix}");
        }
        store()?
            .build(KEYRING_SERVICE, &user, None)
            .map_err(|e| e.to_string())
    }

    pub(super) fn save_named(
        home: &Path,
        suffix: &str,
        key: &MasterKey,
    ) -> std::result::Result<(), String> {
        named_entry(home, suffix)?
            .set_secret(key.to_base64().as_bytes())
            .map_err(|e| e.to_string())
    }

    pub(super) fn load_named(home: &Path, suffix: &str) -> std::result::Result<MasterKey, String> {
        let secret = Zeroizing::new(
            named_entry(home, suffix)?
                .get_secret()
                .map_err(|e| e.to_string())?,
        );
        let text = String::from_utf8_lossy(&secret).into_owned();
        MasterKey::from_base64(&Zeroizing::new(text), "the OS keyring entry")
            .map_err(|e| e.to_string())
    }

    pub(super) fn delete_named(home: &Path, suffix: &str) -> std::result::Result<(), String> {
        named_entry(home, suffix)?
            .delete_credential()
            .map_err(|e| e.to_string())
    }

    pub(super) fn save(home: &Path, key: &MasterKey) -> std::result::Result<(), String> {
        let entry = entry(home)?;
        entry
            .set_secret(key.to_base64().as_bytes())
            .map_err(|e| e.to_string())?;
        // Read it back: a keyring that accepts writes but loses them is no keyring.
        let back = load(home)?;
        if back.bytes() != key.bytes() {
            return Err("the keyring returned a different value than was stored".into());
        }
        Ok(())
    }

    pub(super) fn load(home: &Path) -> std::result::Result<MasterKey, String> {
        load_named(home, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_store_round_trip_and_permission_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path());
        let key = MasterKey::generate().unwrap();
        write_key_file(&path, &key).unwrap();
        assert_eq!(load_file(&path).unwrap().bytes(), key.bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let msg = load_file(&path).unwrap_err().to_string();
            assert!(msg.contains("chmod 600"), "{msg}");
        }
    }

    #[test]
    fn debug_hides_key() {
        let key = MasterKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "MasterKey(***)");
    }

    #[test]
    fn bad_base64_is_a_clear_error() {
        let msg = MasterKey::from_base64("abc", "X").unwrap_err().to_string();
        assert!(msg.contains("base64 of 32 bytes"), "{msg}");
    }
}
