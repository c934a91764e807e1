//! A validated workflow: nodes resolved to their implementations, edges indexed
//! both ways, durations parsed. Built only by [`crate::workflow::validate`], so a
//! plan is always runnable.

use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::expr::Template;
use crate::nodes::Node;
use crate::workflow::{OnError, model::Backoff, model::RetryOn, model::Settings};

/// A runnable workflow.
pub struct Plan {
    /// The workflow's settings (its nodes and edges are planned below).
    pub settings: Settings,
    /// The name to show (`name`, else the file name).
    pub name: String,
    /// The id derived from the name ([`crate::workflow::workflow_id`]): what
    /// history, URLs and the daemon use.
    pub id: String,
    /// The workflow JSON as run, and its hash (sha256, hex).
    pub definition: super::definition::Definition,
    pub hash: String,
    /// The workflow's `description`.
    pub description: Option<String>,
    pub source_path: Option<PathBuf>,
    /// Folder that relative paths in the workflow resolve against.
    pub base_dir: Arc<PathBuf>,
    pub nodes: Chunked<PlannedNode>,
    pub edges: Chunked<PlannedEdge>,
    /// Each node's edges in and out ([`Plan::incoming`], [`Plan::outgoing`]).
    pub(crate) links: Links,
    pub(crate) index: NodeIndex,
    pub max_parallel: Option<usize>,
    pub timeout: Option<Duration>,
    /// Things that are allowed but probably not meant (a retry that can never
    /// apply): `fuse validate` and `fuse run` print them.
    pub warnings: Vec<crate::workflow::Problem>,
    /// The declared parameters; `None` when the workflow declares none (its
    /// input is then taken as it comes).
    pub params: Option<Vec<crate::workflow::params::Param>>,
}

/// A plan's nodes (and edges), held in chunks of [`CHUNK`]. A growing vector
/// would hold up to half its size again in spare capacity and copy itself as
/// it grows (a third more memory for a 100,000-node plan, and twice its size
/// while it copies); chunks never move, and only the last has room to spare.
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

/// Items in a chunk of [`Chunked`] (64 KB of planned nodes).
const CHUNK: usize = 1024;

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn push(&mut self, node: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(node),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(node);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> + Clone {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> Chunked<Option<T>> {
    /// The nodes that are there, in order, each chunk reused in place.
    pub(crate) fn present(self) -> Chunked<T> {
        let mut len = 0;
        let chunks = self
            .chunks
            .into_iter()
            .map(|chunk| {
                // The identity `filter_map` reuses the chunk; `flatten` would copy it.
                #[allow(clippy::filter_map_identity)]
                let chunk: Vec<T> = chunk.into_iter().filter_map(|n| n).collect();
                len += chunk.len();
                chunk
            })
            .collect();
        Chunked { chunks, len }
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// One node of a plan: 64 bytes (a 100,000-node workflow holds 100,000 of
/// them). Its type is shared with the other nodes of the type ([`Kind`]);
/// what most nodes lack (retry, timeout, `foreach`, credentials, inputs with
/// expressions) is boxed, and inputs without expressions are kept as their
/// JSON text, read when the node runs.
pub struct PlannedNode {
    pub id: Arc<str>,
    kind: Arc<Kind>,
    /// `data.inputs` as written (JSON), for a node without expressions (whose
    /// [`Self::inputs`] is `None`) and for trigger nodes; `None` otherwise,
    /// so a plan keeps one form of each node's inputs, not two.
    pub(crate) written: Option<Box<str>>,
    /// `data.inputs` prepared for rendering; `None` when the node has no
    /// expression anywhere, so its inputs are used as written.
    pub(crate) inputs: Option<Box<Templates>>,
    pub(crate) more: Option<Box<More>>,
    pub on_error: OnError,
    pub has_error_edge: bool,
    /// `flow.merge` with `mode: first`: runs on the first live input.
    pub first_wins: bool,
    pub trigger: bool,
    /// An expression of a later node reads this node's output
    /// (`nodes.ID…`), or one reads `nodes` as a whole.
    pub read_by_expressions: bool,
}

/// A node type as a plan uses it: one per type, shared by its nodes.
pub(crate) struct Kind {
    pub name: Arc<str>,
    pub imp: Arc<dyn Node>,
}

/// A node's inputs with expressions, prepared for rendering.
pub(crate) struct Templates(pub Box<[(String, Template)]>);

/// What most nodes do not have.
#[derive(Default)]
pub(crate) struct More {
    pub foreach: Option<Box<str>>,
    pub concurrency: Option<usize>,
    pub retry: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
    pub credentials: Vec<String>,
}

impl PlannedNode {
    pub(crate) fn new(id: Arc<str>, kind: Arc<Kind>) -> PlannedNode {
        PlannedNode {
            trigger: kind.imp.spec().trigger,
            id,
            kind,
            written: None,
            inputs: None,
            more: None,
            on_error: OnError::Fail,
            has_error_edge: false,
            first_wins: false,
            read_by_expressions: false,
        }
    }

    /// The node's type, as its implementation names it.
    pub fn type_name(&self) -> &Arc<str> {
        &self.kind.name
    }

    /// The node's implementation.
    pub fn imp(&self) -> &Arc<dyn Node> {
        &self.kind.imp
    }

    /// `data.inputs` with expressions, prepared for rendering; `None` when
    /// the node has none (its inputs are [`Self::written`]).
    pub fn templates(&self) -> Option<&[(String, Template)]> {
        self.inputs.as_deref().map(|t| &*t.0)
    }

    /// `data.inputs` as written (empty for a node whose inputs have
    /// expressions, see [`Self::inputs`]), read back from the text the plan
    /// keeps.
    pub fn written(&self) -> serde_json::Result<Map<String, Value>> {
        match &self.written {
            Some(text) => serde_json::from_str(text),
            None => Ok(Map::new()),
        }
    }

    /// `foreach`: the expression giving the items.
    pub fn foreach(&self) -> Option<&str> {
        self.more.as_ref()?.foreach.as_deref()
    }

    /// Items of a `foreach` running at once.
    pub fn concurrency(&self) -> Option<usize> {
        self.more.as_ref()?.concurrency
    }

    pub fn retry(&self) -> Option<&RetryPolicy> {
        self.more.as_ref()?.retry.as_ref()
    }

    /// Per-attempt time limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.more.as_ref()?.timeout
    }

    /// Credentials the node names (`credential` input, `creds.NAME` expressions).
    pub fn credentials(&self) -> &[String] {
        self.more.as_ref().map_or(&[], |m| &m.credentials)
    }
}

/// One edge of a plan: 16 bytes, its handles boxed (most edges have none).
pub struct PlannedEdge {
    source: u32,
    target: u32,
    handles: Option<Box<Handles>>,
}

/// The branch an edge leaves by and the input slot it arrives at.
struct Handles {
    source: Option<Box<str>>,
    target: Option<Box<str>>,
}

impl PlannedEdge {
    /// An edge between nodes `source` and `target` (indexes into
    /// [`Plan::nodes`]; a plan holds fewer than 2³² nodes).
    pub fn new(
        source: u32,
        target: u32,
        source_handle: Option<Box<str>>,
        target_handle: Option<Box<str>>,
    ) -> PlannedEdge {
        let handles = (source_handle.is_some() || target_handle.is_some()).then(|| {
            Box::new(Handles {
                source: source_handle,
                target: target_handle,
            })
        });
        PlannedEdge {
            source,
            target,
            handles,
        }
    }

    /// The node the edge leaves (an index into [`Plan::nodes`]).
    pub fn source(&self) -> usize {
        self.source as usize
    }

    /// The node the edge arrives at.
    pub fn target(&self) -> usize {
        self.target as usize
    }

    /// The branch the edge leaves by (`true`, a switch case, `error`);
    /// `None` for the default output.
    pub fn source_handle(&self) -> Option<&str> {
        self.handles.as_ref()?.source.as_deref()
    }

    /// The input slot the edge arrives at; `None` for the default one.
    pub fn target_handle(&self) -> Option<&str> {
        self.handles.as_ref()?.target.as_deref()
    }
}

/// A node's retry settings with durations parsed.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff: Backoff,
    pub initial: Duration,
    pub max: Duration,
    pub on: Option<RetryOn>,
}

impl Plan {
    /// A run's input checked against the declared params (defaults filled,
    /// strings converted), or every problem; as given when there are none.
    pub fn check_input(
        &self,
        input: Value,
        check: crate::workflow::params::Check,
    ) -> Result<Value, Vec<String>> {
        match &self.params {
            Some(params) => crate::workflow::params::apply(params, input, check),
            None => Ok(input),
        }
    }

    /// The edges into node `i` (indexes into [`Plan::edges`]).
    pub fn incoming(&self, i: usize) -> EdgeIds<'_> {
        self.links.incoming(i)
    }

    /// The edges out of node `i`.
    pub fn outgoing(&self, i: usize) -> EdgeIds<'_> {
        self.links.outgoing(i)
    }

    pub fn node(&self, id: &str) -> Option<&PlannedNode> {
        self.position(id).map(|i| &self.nodes[i])
    }

    /// The index in [`Plan::nodes`] of the node with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id, |i| &self.nodes[i].id)
    }

    /// Nodes with no outgoing edges.
    pub fn sinks(&self) -> impl Iterator<Item = &PlannedNode> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.outgoing(*i).is_empty())
            .map(|(_, n)| n)
    }
}

/// Node ids to their index in [`Plan::nodes`]: 5 bytes a node, where a map
/// keyed by shared ids took 25. The ids stay in the nodes; the functions
/// given (`id_of`) read them.
#[derive(Default)]
pub(crate) struct NodeIndex {
    table: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

impl NodeIndex {
    /// The node with this id.
    pub(crate) fn get<'a>(&self, id: &str, id_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        use std::hash::BuildHasher;
        self.table
            .find(self.hasher.hash_one(id), |&i| id_of(i as usize) == id)
            .map(|&i| i as usize)
    }

    /// Adds node `i`, whose id no node in the index has; `id_of` gives the
    /// ids of the nodes already in it.
    pub(crate) fn insert<'a>(&mut self, i: usize, id: &str, id_of: impl Fn(usize) -> &'a str) {
        use std::hash::BuildHasher;
        let hasher = &self.hasher;
        self.table
            .insert_unique(hasher.hash_one(id), i as u32, |&j| {
                hasher.hash_one(id_of(j as usize))
            });
    }

    /// The nodes in the index, in no particular order.
    pub(crate) fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.table.iter().map(|&i| i as usize)
    }
}

/// Each node's incoming and outgoing edges, in flat lists (8 bytes a node and
/// 8 an edge, where a list per node took 64 bytes and two allocations).
#[derive(Default)]
pub(crate) struct Links {
    incoming: Lists,
    outgoing: Lists,
}

impl Links {
    /// The links of `n` nodes joined by `edges`.
    pub(crate) fn new(n: usize, edges: &Chunked<PlannedEdge>) -> Links {
        Links {
            incoming: Lists::new(n, edges.iter().map(PlannedEdge::target)),
            outgoing: Lists::new(n, edges.iter().map(PlannedEdge::source)),
        }
    }

    pub(crate) fn incoming(&self, i: usize) -> EdgeIds<'_> {
        self.incoming.of(i)
    }

    pub(crate) fn outgoing(&self, i: usize) -> EdgeIds<'_> {
        self.outgoing.of(i)
    }
}

/// For each node, the edges at one end of which it is (`start[i]..start[i + 1]`
/// in `list`).
#[derive(Default)]
struct Lists {
    start: Vec<u32>,
    list: Vec<u32>,
}

impl Lists {
    /// `ends` gives the node at this end of each edge, in edge order.
    fn new(n: usize, ends: impl Iterator<Item = usize> + Clone) -> Lists {
        let mut start = vec![0u32; n + 1];
        for node in ends.clone() {
            start[node + 1] += 1;
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let mut fill: Vec<u32> = start[..n].to_vec();
        let mut list = vec![0u32; start[n] as usize];
        for (e, node) in ends.enumerate() {
            list[fill[node] as usize] = e as u32;
            fill[node] += 1;
        }
        Lists { start, list }
    }

    fn of(&self, i: usize) -> EdgeIds<'_> {
        match (self.start.get(i), self.start.get(i + 1)) {
            (Some(&from), Some(&to)) => EdgeIds(&self.list[from as usize..to as usize]),
            _ => EdgeIds(&[]),
        }
    }
}

/// Edge indexes into [`Plan::edges`].
#[derive(Clone, Copy)]
pub struct EdgeIds<'a>(&'a [u32]);

impl<'a> EdgeIds<'a> {
    pub fn iter(self) -> impl ExactSizeIterator<Item = usize> + 'a {
        self.0.iter().map(|&e| e as usize)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// A plan holds one of each per node and per edge: keep them this small.
const _: () = assert!(std::mem::size_of::<PlannedNode>() <= 64);
const _: () = assert!(std::mem::size_of::<PlannedEdge>() <= 16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_across_chunks_keep_their_order_and_places() {
        let mut nodes: Chunked<Option<usize>> = Chunked::default();
        let n = 2 * CHUNK + 7;
        for i in 0..n {
            nodes.push((i % 3 != 0).then_some(i));
        }
        assert_eq!(nodes.len(), n);
        assert_eq!(nodes[CHUNK + 1], Some(CHUNK + 1));
        assert_eq!(nodes.get(n), None);
        nodes[CHUNK] = Some(7);
        assert_eq!(nodes.get(CHUNK), Some(&Some(7)));
        // Only the last chunk has room to spare.
        assert!(nodes.chunks.iter().rev().skip(1).all(|c| c.len() == CHUNK));

        let present = nodes.present();
        let expected: Vec<usize> = (0..n)
            .filter(|i| i % 3 != 0 || *i == CHUNK)
            .map(|i| if i == CHUNK { 7 } else { i })
            .collect();
        assert_eq!(present.len(), expected.len());
        assert_eq!(present.iter().copied().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn the_index_finds_each_id_by_its_text() {
        let ids: Vec<String> = (0..5000).map(|i| format!("node-{i}")).collect();
        let mut index = NodeIndex::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |j| &ids[j]), None);
            index.insert(i, id, |j| &ids[j]);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |j| &ids[j]), Some(i));
        }
        assert_eq!(index.get("node-5000", |j| &ids[j]), None);
        assert_eq!(index.positions().count(), ids.len());
    }
}
