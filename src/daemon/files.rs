//! `trigger.file`: runs a workflow when files appear, change or go away under a
//! folder. Events are debounced per file (a file being written fires once, when
//! it has been quiet for `debounce`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use serde_json::{Value, json};

use super::State;

/// One `trigger.file` node of an enabled workflow.
#[derive(Debug, Clone)]
pub(crate) struct FileTrigger {
    pub workflow: String,
    pub dir: PathBuf,
    pub glob: Option<String>,
    pub events: Vec<String>,
    pub debounce: Duration,
}

impl FileTrigger {
    /// From a node's inputs; relative folders are relative to the home.
    pub(super) fn from_inputs(workflow: &str, inputs: &Value, home: &Path) -> Option<FileTrigger> {
        let dir = PathBuf::from(inputs.get("path")?.as_str()?);
        let dir = if dir.is_absolute() {
            dir
        } else {
            home.join(dir)
        };
        let events = match inputs.get("events").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            None => vec!["create".into(), "modify".into(), "remove".into()],
        };
        let debounce = inputs
            .get("debounce")
            .and_then(Value::as_str)
            .and_then(|d| crate::engine::duration::parse(d).ok())
            .unwrap_or(Duration::from_millis(500));
        Some(FileTrigger {
            workflow: workflow.to_string(),
            dir,
            glob: inputs
                .get("glob")
                .and_then(Value::as_str)
                .map(str::to_string),
            events,
            debounce,
        })
    }
}

/// `*` (any run of characters) and `?` (one character) against a file name.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn kind_name(kind: &EventKind) -> Option<&'static str> {
    match kind {
        EventKind::Create(_) => Some("create"),
        EventKind::Modify(_) => Some("modify"),
        EventKind::Remove(_) => Some("remove"),
        _ => None,
    }
}

/// Watches the folders of every file trigger while the returned watchers live.
pub(super) fn watch(
    state: Arc<State>,
    triggers: Vec<FileTrigger>,
) -> Vec<notify::RecommendedWatcher> {
    let mut watchers = Vec::new();
    for trigger in triggers {
        if let Err(e) = std::fs::create_dir_all(&trigger.dir) {
            tracing::warn!(
                "{}: cannot watch {}: {e}",
                trigger.workflow,
                trigger.dir.display()
            );
            continue;
        }
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(PathBuf, &'static str)>();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = event
                && let Some(kind) = kind_name(&event.kind)
            {
                for path in event.paths {
                    let _ = tx.send((path, kind));
                }
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(
                    "{}: cannot watch {}: {e}",
                    trigger.workflow,
                    trigger.dir.display()
                );
                continue;
            }
        };
        if let Err(e) = watcher.watch(&trigger.dir, RecursiveMode::Recursive) {
            tracing::warn!(
                "{}: cannot watch {}: {e}",
                trigger.workflow,
                trigger.dir.display()
            );
            continue;
        }
        watchers.push(watcher);
        let state = state.clone();
        tokio::spawn(async move {
            // path -> (last event kind, when it was seen)
            let mut pending: HashMap<PathBuf, (&'static str, Instant)> = HashMap::new();
            loop {
                let next_due = pending.values().map(|(_, at)| *at + trigger.debounce).min();
                let wait = next_due
                    .map(|due| due.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(3600));
                tokio::select! {
                    got = rx.recv() => match got {
                        Some((path, kind)) => {
                            // A create followed by writes is still a create.
                            let kind = match pending.get(&path) {
                                Some(("create", _)) if kind == "modify" => "create",
                                _ => kind,
                            };
                            pending.insert(path, (kind, Instant::now()));
                        }
                        None => return,
                    },
                    _ = tokio::time::sleep(wait) => {}
                }
                let now = Instant::now();
                let due: Vec<(PathBuf, &'static str)> = pending
                    .iter()
                    .filter(|(_, (_, at))| now.duration_since(*at) >= trigger.debounce)
                    .map(|(p, (k, _))| (p.clone(), *k))
                    .collect();
                for (path, kind) in due {
                    pending.remove(&path);
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    if path.is_dir()
                        || !trigger.events.iter().any(|e| e == kind)
                        || trigger
                            .glob
                            .as_deref()
                            .is_some_and(|g| !glob_match(g, &name))
                    {
                        continue;
                    }
                    let input =
                        json!({"path": path.display().to_string(), "name": name, "event": kind});
                    if let Err(r) =
                        super::api::start_run(&state, &trigger.workflow, input, "file").await
                    {
                        tracing::warn!(
                            "{}: file run not started ({})",
                            trigger.workflow,
                            r.status()
                        );
                    }
                }
            }
        });
    }
    watchers
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("*.csv", "orders.csv"));
        assert!(!glob_match("*.csv", "orders.csv.tmp"));
        assert!(glob_match("report-??.txt", "report-01.txt"));
        assert!(glob_match("*", "x"));
        assert!(!glob_match("a*b", "acd"));
    }
}
