//! Secrets: the master key and where it is kept ([`keystore`]), the encrypted
//! credentials vault ([`vault`]), credential types ([`types`]) and the masking
//! of secret values in everything a run records or prints ([`mask`]).

pub mod keystore;
pub mod mask;
pub mod types;
pub mod vault;

pub use keystore::{KeyStoreKind, KeyringStatus, MasterKey};
pub use mask::Masks;
pub use vault::{Credential, CredentialInfo, Vault};
