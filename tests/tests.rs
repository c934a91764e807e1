//! The integration test binary: every test drives the real `fuse` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helper;
// Polling with a deadline.
mod wait;

// `fuse init`, config, store and key store: the home and its failure modes.
mod init;
// `fuse version`, completions and the global flags.
mod version;
// Execution rules through the engine API.
mod engine;
// Property test: random DAGs against a reference model.
mod dag_property;
// `fuse run` and `fuse runs` through the binary.
mod run;
// `fuse validate` and `fuse schema`.
mod validate;
// Retention keeps the store bounded.
mod history;
// http.request and llm.chat against a local HTTP server.
mod http;
// The credentials vault through the binary: masking, tampering, rotation.
mod creds;
// Node and plugin packages: runtimes, scaffolds, manifests.
mod packages;
// The daemon as a real process: API, webhooks, start/stop, crash recovery.
mod daemon;
// `fuse workflows …` against a real daemon.
mod workflows_cli;
// Named API tokens with scopes.
mod tokens;
// The daemon as a library, in this process.
mod server;
// Issue 12: nothing fails silently, nothing recorded is lost.
mod trust;
// Headless Chromium over WebDriver, for the dashboard tests.
mod browser;
// The dashboard: sign-in links, sessions, pages.
mod dashboard;
// Issue 13: the seed documents' flows and API shapes.
mod seed;
// Issue 16: agents, Anthropic, conversation memory.
mod ai;
// Issue 17: probes, and the rest of operations.
mod ops;
// Issue 18: fuse test, pinned runs, recorded runs as cases.
mod workflow_tests;
// Issue 19 (preview): fuse worker processes sharing a PostgreSQL queue.
mod scale_out;
// The store's one behaviour suite, on SQLite and on PostgreSQL.
mod store;
