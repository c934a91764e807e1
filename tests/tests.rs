//! The integration test binary: every test drives the real `fuse` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helper;

// `fuse init`, config, store and key store: the home and its failure modes.
mod init;
// `fuse version`, completions and the global flags.
mod version;
