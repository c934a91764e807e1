//! Node and plugin packages: folders with a `manifest.json`, found on disk in
//! the home's `node_packages/` and `plugin_packages/`. Each node package becomes
//! a node type that runs as its own process ([`runtime`]), speaking JSON over
//! stdio (docs/node-protocol.md). A bad manifest is reported and skipped; every
//! other package keeps working.

pub mod confine;
pub mod manifest;
pub mod runtime;
pub mod scaffold;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use manifest::{Kind, Manifest, ManifestError};

use crate::nodes::Registry;

/// A package found on disk with a valid manifest.
#[derive(Debug, Clone)]
pub struct Package {
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// The plugin that bundles this node package, if any.
    pub plugin: Option<String>,
}

/// A package that could not be loaded, and why.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Problem {
    pub package: String,
    pub dir: PathBuf,
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "package {}: {}", self.package, self.reason)
        } else {
            write!(
                f,
                "package {}: `{}`: {}",
                self.package, self.field, self.reason
            )
        }
    }
}

/// Everything found under the package folders.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The fuse home the packages live in: hidden from package processes.
    pub home: Option<PathBuf>,
    pub nodes: Vec<Package>,
    pub plugins: Vec<Package>,
    pub problems: Vec<Problem>,
}

/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A plugin as `fuse plugins list`, the API and the dashboard report it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PluginReport {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
    pub dir: PathBuf,
    /// `loaded`, `partly loaded` (some of its parts failed) or `error` (its
    /// manifest did not load).
    pub state: String,
    /// The node types it bundles.
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub errors: Vec<String>,
    #[serde(default)]
    pub credential_types: Vec<manifest::CredentialTypeDecl>,
    /// Served under `/plugins/<name>/`.
    #[serde(default)]
    pub routes: Vec<manifest::RouteDecl>,
    #[serde(default)]
    pub triggers: Vec<manifest::TriggerDecl>,
}

impl Catalog {
    /// Every plugin with its state, parts and errors; plugins whose manifest
    /// did not load (in `plugin_dir`) are listed with state `error`.
    pub fn plugin_reports(&self, plugin_dir: &Path) -> Vec<PluginReport> {
        let mut out: Vec<PluginReport> = self
            .plugins
            .iter()
            .map(|p| {
                let errors: Vec<String> = self
                    .problems
                    .iter()
                    .filter(|e| e.dir.starts_with(&p.dir))
                    .map(|e| e.to_string())
                    .collect();
                PluginReport {
                    name: p.manifest.name.clone(),
                    version: p.manifest.version.clone(),
                    description: p.manifest.description.clone(),
                    dir: p.dir.clone(),
                    state: if errors.is_empty() {
                        "loaded"
                    } else {
                        "partly loaded"
                    }
                    .into(),
                    nodes: self
                        .nodes
                        .iter()
                        .filter(|n| n.plugin.as_deref() == Some(&p.manifest.name))
                        .map(|n| n.manifest.node_type().to_string())
                        .collect(),
                    errors,
                    credential_types: p.manifest.credential_types.clone(),
                    routes: p.manifest.routes.clone(),
                    triggers: p.manifest.triggers.clone(),
                }
            })
            .collect();
        for problem in &self.problems {
            if problem.dir.parent() == Some(plugin_dir) {
                out.push(PluginReport {
                    name: problem.package.clone(),
                    version: String::new(),
                    description: String::new(),
                    dir: problem.dir.clone(),
                    state: "error".into(),
                    nodes: Vec::new(),
                    errors: vec![problem.to_string()],
                    credential_types: Vec::new(),
                    routes: Vec::new(),
                    triggers: Vec::new(),
                });
            }
        }
        out
    }

    /// Scans `node_packages/` and `plugin_packages/` folders.
    pub fn discover(node_dir: &Path, plugin_dir: &Path) -> Catalog {
        let mut catalog = Catalog {
            home: node_dir.parent().map(Path::to_path_buf),
            ..Catalog::default()
        };
        for (dir, manifest) in scan(node_dir, &mut catalog.problems) {
            catalog.add(dir, manifest, Kind::Node, None);
        }
        for (dir, manifest) in scan(plugin_dir, &mut catalog.problems) {
            if manifest.kind != Kind::Plugin {
                catalog.problem(
                    &manifest.name,
                    &dir,
                    "kind",
                    "packages in plugin_packages/ must have kind \"plugin\"".into(),
                );
                continue;
            }
            for node in &manifest.nodes {
                let node_dir = dir.join(node);
                match load(&node_dir) {
                    Ok(m) => catalog.add(node_dir, m, Kind::Node, Some(manifest.name.clone())),
                    Err(p) => catalog.problems.push(p),
                }
            }
            catalog.add(dir, manifest, Kind::Plugin, None);
        }
        catalog
    }

    fn problem(&mut self, package: &str, dir: &Path, field: &str, reason: String) {
        self.problems.push(Problem {
            package: package.to_string(),
            dir: dir.to_path_buf(),
            field: field.to_string(),
            reason,
        });
    }

    fn add(&mut self, dir: PathBuf, manifest: Manifest, want: Kind, plugin: Option<String>) {
        if manifest.kind != want {
            self.problem(
                &manifest.name,
                &dir,
                "kind",
                format!(
                    "expected kind {:?} here",
                    if want == Kind::Node { "node" } else { "plugin" }
                ),
            );
            return;
        }
        let package = Package {
            manifest,
            dir,
            plugin,
        };
        match want {
            Kind::Node => self.nodes.push(package),
            Kind::Plugin => self.plugins.push(package),
        }
    }

    /// Adds every node package to `registry` as a node type. A package whose type
    /// clashes with a built-in (without `overrides`) or another package is a
    /// problem, not a replacement.
    pub fn register(&mut self, registry: &mut Registry) {
        let mut taken: Vec<String> = Vec::new();
        let mut rejected: Vec<usize> = Vec::new();
        for (index, package) in self.nodes.iter().enumerate() {
            let type_name = package.manifest.node_type().to_string();
            let builtin = registry.get(&type_name).is_some() && !taken.contains(&type_name);
            if builtin && !package.manifest.overrides {
                self.problems.push(Problem {
                    package: package.manifest.name.clone(),
                    dir: package.dir.clone(),
                    field: "type".into(),
                    reason: format!(
                        "{type_name:?} is a built-in node type; choose another name or set \"overrides\": true"
                    ),
                });
                rejected.push(index);
                continue;
            }
            if taken.contains(&type_name) {
                self.problems.push(Problem {
                    package: package.manifest.name.clone(),
                    dir: package.dir.clone(),
                    field: "type".into(),
                    reason: format!("another package already provides {type_name:?}"),
                });
                rejected.push(index);
                continue;
            }
            match runtime::node_for(package, self.home.as_deref()) {
                Ok(node) => {
                    registry.register(node);
                    taken.push(type_name);
                }
                Err(reason) => {
                    self.problems.push(Problem {
                        package: package.manifest.name.clone(),
                        dir: package.dir.clone(),
                        field: String::new(),
                        reason,
                    });
                    rejected.push(index);
                }
            }
        }
        // Only what was registered stays in the catalogue.
        for index in rejected.into_iter().rev() {
            self.nodes.remove(index);
        }
    }

    /// The package providing a node type.
    pub fn node_package(&self, type_name: &str) -> Option<&Package> {
        self.nodes
            .iter()
            .find(|p| p.manifest.node_type() == type_name)
    }
}

/// Folders with a manifest under `root`, sorted by name; problems for the rest.
fn scan(root: &Path, problems: &mut Vec<Problem>) -> Vec<(PathBuf, Manifest)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    let mut found = Vec::new();
    for dir in dirs {
        if !dir.join("manifest.json").exists() {
            continue;
        }
        match load(&dir) {
            Ok(m) => found.push((dir, m)),
            Err(p) => problems.push(p),
        }
    }
    found
}

/// Reads and checks one package's manifest.
pub fn load(dir: &Path) -> Result<Manifest, Problem> {
    let folder = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let problem = |field: &str, reason: String| Problem {
        package: folder.clone(),
        dir: dir.to_path_buf(),
        field: field.to_string(),
        reason,
    };
    let path = dir.join("manifest.json");
    let text = crate::files::read_regular(&path, MAX_MANIFEST_BYTES)
        .and_then(|bytes| {
            String::from_utf8(bytes).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text")
            })
        })
        .map_err(|e| problem("", format!("cannot read {}: {e}", path.display())))?;
    let manifest = Manifest::parse(&text).map_err(|e| problem(&e.field, e.reason))?;
    if let Some(first) = manifest.check(&folder).into_iter().next() {
        return Err(problem(&first.field, first.reason));
    }
    Ok(manifest)
}

/// The registry of a home: built-ins plus the packages in its folders.
pub fn registry_of_home(
    settings: &crate::nodes::Settings,
    home: &crate::home::Home,
) -> (Registry, Arc<Catalog>) {
    registry_with_packages(
        settings,
        &home.node_packages_dir(),
        &home.plugin_packages_dir(),
    )
}

/// Built-ins plus the packages in `node_dir` and `plugin_dir`.
pub fn registry_with_packages(
    settings: &crate::nodes::Settings,
    node_dir: &Path,
    plugin_dir: &Path,
) -> (Registry, Arc<Catalog>) {
    let mut registry = Registry::with_settings(settings);
    let mut catalog = Catalog::discover(node_dir, plugin_dir);
    catalog.register(&mut registry);
    (registry, Arc::new(catalog))
}

/// Whether package processes are confined on this machine, in words.
pub fn confinement_status() -> String {
    match confine::abi_version() {
        Some(abi) => format!(
            "enforced (Landlock ABI {abi}): packages cannot read or write the fuse home \
             except their own folder, and may write only there, in their TMPDIR, /dev and \
             their manifest's permissions.write; network access is not restricted"
        ),
        None => "not enforced: this kernel has no Landlock (Linux 5.13+ with Landlock enabled); \
             packages still run as separate processes with a clean environment in their own \
             process group"
            .to_string(),
    }
}
