//! Secrets: the master key and where it is kept. The credentials vault (issue 6)
//! builds on [`keystore`].

pub mod keystore;

pub use keystore::{KeyStoreKind, KeyringStatus, MasterKey};
