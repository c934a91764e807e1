//! The explicit list of node types a run can use: built-ins registered in one
//! place, later joined by packages.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::Node;

/// Node types by name.
#[derive(Clone, Default)]
pub struct Registry {
    nodes: BTreeMap<String, Arc<dyn Node>>,
}

impl Registry {
    /// The built-in node types with default settings.
    pub fn builtin() -> Registry {
        Registry::with_settings(&super::Settings::default())
    }

    /// The built-in node types, configured (HTTP limits, LLM defaults, cache folder).
    pub fn with_settings(settings: &super::Settings) -> Registry {
        let mut registry = Registry::default();
        for node in super::builtin::all(settings) {
            registry.register(node);
        }
        registry
    }

    pub fn register(&mut self, node: Arc<dyn Node>) {
        self.nodes.insert(node.spec().type_name.clone(), node);
    }

    /// The node for a type name, resolving the seed format's aliases.
    pub fn get(&self, type_name: &str) -> Option<&Arc<dyn Node>> {
        self.nodes.get(crate::workflow::canonical_type(type_name))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Node>> {
        self.nodes.values()
    }

    /// The known type name closest to `name`, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Option<String> {
        let names = self
            .nodes
            .keys()
            .map(String::as_str)
            .chain(crate::workflow::ALIASES.iter().map(|(a, _)| *a));
        crate::workflow::validate::closest(name, names)
    }
}
