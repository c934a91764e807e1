//! Hot reload: the package folders are watched (notify); after a change settles
//! (debounced) the whole registry is rebuilt and swapped into the engine. Runs
//! already started keep the nodes their plan resolved.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use super::Catalog;
use crate::engine::Engine;
use crate::nodes::Settings;

/// How long the folders must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches package folders while it lives.
pub struct PackageWatcher {
    _watcher: notify::RecommendedWatcher,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for PackageWatcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl PackageWatcher {
    /// Starts watching `node_dir` and `plugin_dir` (created if missing). Each
    /// reload calls `on_reload` with the new catalogue (its problems included).
    pub fn start(
        engine: Engine,
        settings: Settings,
        node_dir: PathBuf,
        plugin_dir: PathBuf,
        on_reload: impl Fn(&Catalog) + Send + 'static,
    ) -> notify::Result<PackageWatcher> {
        let (tx, rx) = channel();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && !event.kind.is_access()
                {
                    let _ = tx.send(());
                }
            })?;
        for dir in [&node_dir, &plugin_dir] {
            let _ = std::fs::create_dir_all(dir);
            watcher.watch(dir, RecursiveMode::Recursive)?;
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("fuse-packages-watch".into())
            .spawn(move || {
                loop {
                    // Wait for a change, then for the folders to be quiet.
                    match rx.recv_timeout(Duration::from_millis(500)) {
                        Ok(()) => {}
                        Err(RecvTimeoutError::Timeout) => {
                            if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                                return;
                            }
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                    while rx.recv_timeout(DEBOUNCE).is_ok() {}
                    if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                        return;
                    }
                    let (registry, catalog) =
                        super::registry_with_packages(&settings, &node_dir, &plugin_dir);
                    engine.set_registry(registry);
                    tracing::info!(
                        "packages reloaded: {} node package(s), {} plugin(s), {} problem(s)",
                        catalog.nodes.len(),
                        catalog.plugins.len(),
                        catalog.problems.len()
                    );
                    for p in &catalog.problems {
                        tracing::warn!("{p}");
                    }
                    on_reload(&catalog);
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(PackageWatcher {
            _watcher: watcher,
            stop,
        })
    }
}
