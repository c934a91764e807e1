use predicates::prelude::*;

use crate::helper::{TestHome, fuse, stdout_of};

#[test]
fn version_json_reports_the_environment() {
    let t = TestHome::initialized();
    let out = stdout_of(t.cmd().args(["version", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["target"].as_str().unwrap().contains('-'));
    assert!(v["rustc"].as_str().unwrap().starts_with("rustc "));
    assert!(v["sqlite"].as_str().unwrap().starts_with("3."));
    assert_eq!(v["schema_version"], v["schema_version_supported"]);
    assert!(v["schema_version"].as_i64().unwrap() >= 1);
    assert_eq!(v["home"], t.path().display().to_string());
    assert_eq!(v["home_initialized"], true);
    assert_eq!(v["store"], "sqlite");
    assert_eq!(v["key_store"], "file");
    assert!(
        v["keyring"].as_str().unwrap().starts_with("unavailable"),
        "{v}"
    );
    assert!(v["commit"].is_string());
    assert!(v["node_packages"]["home"].is_u64());
    assert!(v["plugin_packages"]["bundled"].is_u64());
}

#[test]
fn version_counts_packages_in_the_home() {
    let t = TestHome::initialized();
    let pkg = t.path().join("node_packages/my-node");
    std::fs::create_dir_all(&pkg).unwrap();
    std::fs::write(pkg.join("manifest.json"), "{}").unwrap();
    let before: serde_json::Value =
        serde_json::from_str(&stdout_of(t.cmd().args(["version", "--json"]))).unwrap();
    assert!(before["node_packages"]["home"].as_u64().unwrap() >= 1);
}

#[test]
fn version_before_init_says_how_to_start() {
    let t = TestHome::new();
    t.cmd()
        .arg("version")
        .assert()
        .success()
        .stdout(predicate::str::contains("not initialized: run `fuse init`"));
    assert!(!t.path().exists(), "version must not create the home");
}

#[test]
fn completions_are_generated() {
    fuse()
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_fuse()"));
    fuse()
        .args(["completions", "nonsense"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value"));
}

#[test]
fn help_has_examples_and_unknown_commands_fail_with_usage() {
    fuse()
        .args(["init", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Examples:"));
    fuse().arg("frobnicate").assert().code(2);
}
