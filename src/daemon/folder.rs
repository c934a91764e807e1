//! The home's `workflows/` folder: a JSON file added or changed there is
//! deployed as a new version, a removed one disables its workflow. An invalid
//! file is logged with every problem and the previous version keeps running.
//! Test files (`NAME.test.json`, for `fuse test`) beside them are not workflows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::Value;

use super::State;

/// What a scan did with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed { name: String, version: i64 },
    Unchanged,
    Invalid { file: PathBuf, error: String },
}

/// The workflow name of a file: its `name`, else the file stem.
fn name_of(path: &Path, value: &Value) -> Option<String> {
    value
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
}

/// Deploys what changed in the folder and disables workflows whose file is gone.
pub(super) fn scan(state: &Arc<State>) -> Vec<Outcome> {
    let dir = state.home.workflows_dir();
    let mut outcomes = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|e| e == "json")
                        && !crate::testing::is_test_file(p)
                        && p.is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in &files {
        outcomes.push(deploy_file(state, path));
    }
    // Files that disappeared: their workflows stop (history and versions stay).
    {
        let deployed = state.db.workflows_from_files().unwrap_or_else(|e| {
            tracing::error!(
                "workflows/: cannot read the deployed workflows ({e}); removed files stay deployed until the next scan"
            );
            Vec::new()
        });
        let gone: Vec<String> = deployed
            .into_iter()
            .filter(|(_, src)| {
                Path::new(src).parent() == Some(dir.as_path()) && !Path::new(src).exists()
            })
            .map(|(name, _)| name)
            .collect();
        for name in gone {
            tracing::info!("workflows/: the file of {name} was removed; the workflow is disabled");
            if let Err(e) = state.db.set_workflow_enabled(&name, false) {
                tracing::error!("workflows/: cannot disable {name}: {e}");
            }
        }
    }
    super::routes::changed(state);
    outcomes
}

fn deploy_file(state: &Arc<State>, path: &Path) -> Outcome {
    let invalid = |error: String| {
        tracing::warn!(
            "workflows/{}: not deployed: {error}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        Outcome::Invalid {
            file: path.to_path_buf(),
            error,
        }
    };
    let text = match crate::files::read_regular(path, crate::engine::MAX_WORKFLOW_BYTES).and_then(
        |bytes| {
            String::from_utf8(bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text")
            })
        },
    ) {
        Ok(t) => t,
        Err(e) => return invalid(format!("cannot read it: {e}")),
    };
    let value: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return invalid(format!("not JSON: {e}")),
    };
    let name = match name_of(path, &value).map(|n| crate::workflow::workflow_id(&n)) {
        Some(Ok(id)) => id,
        Some(Err(message)) => return invalid(message),
        None => return invalid("the workflow has no \"name\" and its file no name".into()),
    };
    // Unchanged content (same hash as the current version) is not a new version.
    let hash = crate::store::workflows::definition_hash(&text);
    let current: Option<(String, bool)> = match state.db.current_workflow(&name) {
        Ok(c) => c.map(|c| {
            (
                crate::store::workflows::definition_hash(&c.definition),
                c.enabled,
            )
        }),
        Err(e) => return invalid(format!("cannot read its deployed version: {e}")),
    };
    if current
        .as_ref()
        .is_some_and(|(h, enabled)| *h == hash && *enabled)
    {
        return Outcome::Unchanged;
    }
    if let Err(e) = state.engine.load_str(&text, Some(path)) {
        return invalid(e.to_string());
    }
    match state.db.store_version(&name, &text, Some(path)) {
        Ok((version, _)) => {
            tracing::info!("workflows/: deployed {name} version {version}");
            Outcome::Deployed { name, version }
        }
        Err(e) => invalid(format!("cannot store it: {e}")),
    }
}

/// Watches the folder (debounced) while the returned watcher lives.
pub(super) fn watch(state: Arc<State>) -> notify::Result<notify::RecommendedWatcher> {
    let dir = state.home.workflows_dir();
    let _ = std::fs::create_dir_all(&dir);
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && !event.kind.is_access()
        {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    std::thread::Builder::new()
        .name("fuse-workflows-watch".into())
        .spawn(move || {
            loop {
                match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(()) => {}
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                while rx.recv_timeout(crate::packages::watch::DEBOUNCE).is_ok() {}
                scan(&state);
            }
        })
        .map_err(|e| notify::Error::generic(&e.to_string()))?;
    Ok(watcher)
}
