//! A validated workflow: nodes resolved to their implementations, edges indexed
//! both ways, durations parsed. Built only by [`crate::workflow::validate`], so a
//! plan is always runnable.

use serde_json::{Map, Value};
use std::collections::HashMap;
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
    pub edges: Edges,
    /// Each node's edges in and out ([`Plan::incoming`], [`Plan::outgoing`]).
    pub(crate) links: Links,
    pub(crate) index: NodeIndex,
    /// What the plan keeps for its nodes apart from them.
    pub(crate) apart: Apart,
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

/// One node of a plan: 32 bytes (a 100,000-node workflow holds 100,000 of
/// them). What it shares with other nodes of its type ([`Kind`]), its inputs
/// as written (text in [`Texts`]), and what most nodes lack (inputs with
/// expressions, retry, timeout, `foreach`, credentials) are kept by the plan
/// apart ([`Apart`]); [`Plan::at`] gives a node with all of it
/// ([`NodeRef`]).
pub struct PlannedNode {
    pub id: Box<str>,
    /// Where the plan keeps `data.inputs` as written (JSON), for a node
    /// without expressions (which has no [`NodeRef::templates`]) and for
    /// trigger nodes; `None` otherwise, so a plan keeps one form of each
    /// node's inputs, not two.
    pub(crate) written: Option<Span>,
    /// The node's type: an index into [`Apart::kinds`].
    kind: u16,
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

/// What a plan keeps for its nodes apart from them: their types (one of
/// each), their inputs as written, and, by node, what few nodes have.
#[derive(Default)]
pub(crate) struct Apart {
    pub kinds: Vec<Kind>,
    pub texts: Texts,
    pub templates: HashMap<u32, Templates>,
    pub more: HashMap<u32, More>,
}

impl Apart {
    /// The index of a new kind; `None` past 65,536 kinds in one plan.
    pub(crate) fn add_kind(&mut self, kind: Kind) -> Option<u16> {
        let index = u16::try_from(self.kinds.len()).ok()?;
        self.kinds.push(kind);
        Some(index)
    }
}

impl PlannedNode {
    /// Its type: an index into [`Apart::kinds`].
    pub(crate) fn kind(&self) -> usize {
        self.kind as usize
    }

    /// A node of kind `kind` (from [`Apart::add_kind`]).
    pub(crate) fn new(id: Box<str>, kind: u16, trigger: bool) -> PlannedNode {
        PlannedNode {
            id,
            written: None,
            kind,
            on_error: OnError::Fail,
            has_error_edge: false,
            first_wins: false,
            trigger,
            read_by_expressions: false,
        }
    }
}

/// A node of a plan with what the plan keeps for it apart ([`Plan::at`]);
/// its own fields read through it.
#[derive(Clone, Copy)]
pub struct NodeRef<'p> {
    plan: &'p Plan,
    index: usize,
    node: &'p PlannedNode,
}

impl std::ops::Deref for NodeRef<'_> {
    type Target = PlannedNode;

    fn deref(&self) -> &PlannedNode {
        self.node
    }
}

impl<'p> NodeRef<'p> {
    /// Its index in [`Plan::nodes`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its id, for as long as the plan is there.
    pub fn id(&self) -> &'p str {
        &self.node.id
    }

    fn kind(&self) -> &'p Kind {
        &self.plan.apart.kinds[self.node.kind()]
    }

    /// The node's type, as its implementation names it.
    pub fn type_name(&self) -> &'p Arc<str> {
        &self.kind().name
    }

    /// The node's implementation.
    pub fn imp(&self) -> &'p Arc<dyn Node> {
        &self.kind().imp
    }

    /// `data.inputs` with expressions, prepared for rendering; `None` when
    /// the node has none (its inputs are [`Self::written`]).
    pub fn templates(&self) -> Option<&'p [(String, Template)]> {
        let templates = self.plan.apart.templates.get(&(self.index as u32))?;
        Some(&templates.0)
    }

    /// `data.inputs` as written (empty for a node whose inputs have
    /// expressions, see [`Self::templates`]), read back from the text the
    /// plan keeps.
    pub fn written(&self) -> serde_json::Result<Map<String, Value>> {
        match self.node.written {
            Some(span) => serde_json::from_str(self.plan.apart.texts.get(span)),
            None => Ok(Map::new()),
        }
    }

    fn more(&self) -> Option<&'p More> {
        self.plan.apart.more.get(&(self.index as u32))
    }

    /// `foreach`: the expression giving the items.
    pub fn foreach(&self) -> Option<&'p str> {
        self.more()?.foreach.as_deref()
    }

    /// Items of a `foreach` running at once.
    pub fn concurrency(&self) -> Option<usize> {
        self.more()?.concurrency
    }

    pub fn retry(&self) -> Option<&'p RetryPolicy> {
        self.more()?.retry.as_ref()
    }

    /// Per-attempt time limit.
    pub fn timeout(&self) -> Option<Duration> {
        self.more()?.timeout
    }

    /// Credentials the node names (`credential` input, `creds.NAME` expressions).
    pub fn credentials(&self) -> &'p [String] {
        self.more().map_or(&[], |m| &m.credentials)
    }
}

/// A plan's edges: 8 bytes each ([`PlannedEdge`]), and the branch and slot
/// names of the few edges that have them kept apart.
#[derive(Default)]
pub struct Edges {
    ends: Chunked<PlannedEdge>,
    handles: std::collections::HashMap<u32, Handles>,
}

/// One edge of a plan: the nodes at its ends.
#[derive(Clone, Copy)]
pub struct PlannedEdge {
    source: u32,
    target: u32,
}

/// The branch an edge leaves by and the input slot it arrives at.
struct Handles {
    source: Option<Box<str>>,
    target: Option<Box<str>>,
}

impl Edges {
    /// Adds an edge between nodes `source` and `target` (indexes into
    /// [`Plan::nodes`]; a plan holds fewer than 2³² nodes and edges).
    pub fn push(
        &mut self,
        source: u32,
        target: u32,
        source_handle: Option<Box<str>>,
        target_handle: Option<Box<str>>,
    ) {
        if source_handle.is_some() || target_handle.is_some() {
            let handles = Handles {
                source: source_handle,
                target: target_handle,
            };
            self.handles.insert(self.ends.len() as u32, handles);
        }
        self.ends.push(PlannedEdge { source, target });
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PlannedEdge> + Clone {
        self.ends.iter()
    }

    /// The branch edge `e` leaves by (`true`, a switch case, `error`);
    /// `None` for the default output.
    pub fn source_handle(&self, e: usize) -> Option<&str> {
        self.handles.get(&(e as u32))?.source.as_deref()
    }

    /// The input slot edge `e` arrives at; `None` for the default one.
    pub fn target_handle(&self, e: usize) -> Option<&str> {
        self.handles.get(&(e as u32))?.target.as_deref()
    }
}

impl std::ops::Index<usize> for Edges {
    type Output = PlannedEdge;

    fn index(&self, e: usize) -> &PlannedEdge {
        &self.ends[e]
    }
}

impl PlannedEdge {
    /// The node the edge leaves (an index into [`Plan::nodes`]).
    pub fn source(&self) -> usize {
        self.source as usize
    }

    /// The node the edge arrives at.
    pub fn target(&self) -> usize {
        self.target as usize
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

    /// Node `i` (an index into [`Plan::nodes`]) with what the plan keeps
    /// for it apart.
    pub fn at(&self, i: usize) -> NodeRef<'_> {
        NodeRef {
            plan: self,
            index: i,
            node: &self.nodes[i],
        }
    }

    /// Every node, in order, as [`Self::at`] gives it.
    pub fn iter_nodes(&self) -> impl Iterator<Item = NodeRef<'_>> {
        (0..self.nodes.len()).map(|i| self.at(i))
    }

    pub fn node(&self, id: &str) -> Option<NodeRef<'_>> {
        self.position(id).map(|i| self.at(i))
    }

    /// The index in [`Plan::nodes`] of the node with this id.
    pub fn position(&self, id: &str) -> Option<usize> {
        self.index.get(id, |i| &self.nodes[i].id)
    }
}

/// Texts a plan keeps (its nodes' inputs as written), one after another in
/// chunks of [`TEXT_CHUNK`] bytes: a text costs its bytes and 8 in its node,
/// where a box of its own took a rounded-up allocation and 16.
#[derive(Default)]
pub(crate) struct Texts {
    /// Each chunk with where it starts in the one range of offsets that
    /// [`Span`]s point into, and how many bytes it has room for (a text is
    /// never split, and a chunk never grows past its room, so never moves).
    chunks: Vec<(u32, u32, String)>,
}

/// Where a text is in [`Texts`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    len: std::num::NonZeroU32,
}

/// Bytes in a chunk of [`Texts`] (a longer text has a chunk of its own).
const TEXT_CHUNK: usize = 64 * 1024;

impl Texts {
    /// Keeps `text`; `None` for an empty text, or past 4 GiB in all (more
    /// than a workflow file may hold).
    pub(crate) fn push(&mut self, text: &str) -> Option<Span> {
        let len = std::num::NonZeroU32::new(u32::try_from(text.len()).ok()?)?;
        let fits = self
            .chunks
            .last()
            .is_some_and(|(_, room, chunk)| chunk.len() + text.len() <= *room as usize);
        if !fits {
            let start = match self.chunks.last() {
                Some((start, room, _)) => start.checked_add(*room)?,
                None => 0,
            };
            let room = u32::try_from(text.len().max(TEXT_CHUNK)).ok()?;
            start.checked_add(room)?;
            self.chunks
                .push((start, room, String::with_capacity(room as usize)));
        }
        let (start, _, chunk) = self.chunks.last_mut()?;
        let span = Span {
            start: *start + chunk.len() as u32,
            len,
        };
        chunk.push_str(text);
        Some(span)
    }

    /// The text at `span` (empty for a span of another plan's texts).
    pub(crate) fn get(&self, span: Span) -> &str {
        let i = self
            .chunks
            .partition_point(|(start, _, _)| *start <= span.start);
        let Some((start, _, chunk)) = i.checked_sub(1).and_then(|i| self.chunks.get(i)) else {
            return "";
        };
        let from = (span.start - start) as usize;
        chunk
            .get(from..from + span.len.get() as usize)
            .unwrap_or("")
    }
}

/// Node ids to their index in [`Plan::nodes`]: 5 bytes a node, where a map
/// keyed by shared ids took 25. The ids stay in the nodes; the functions
/// given (`id_of`) read them. Hashed with foldhash, seeded per process.
#[derive(Default)]
pub(crate) struct NodeIndex {
    table: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
}

impl NodeIndex {
    /// The node with this id.
    pub(crate) fn get<'a>(&self, id: &str, id_of: impl Fn(usize) -> &'a str) -> Option<usize> {
        use std::hash::BuildHasher;
        self.table
            .find(self.hasher.hash_one(id), |&i| id_of(i as usize) == id)
            .map(|&i| i as usize)
    }

    /// Adds node `i` under `id`, unless a node in the index has that id:
    /// then returns that node. `id_of` gives the ids of the nodes in it.
    pub(crate) fn insert<'a>(
        &mut self,
        i: usize,
        id: &str,
        id_of: impl Fn(usize) -> &'a str,
    ) -> Result<(), usize> {
        use std::hash::BuildHasher;
        let hasher = &self.hasher;
        match self.table.entry(
            hasher.hash_one(id),
            |&j| id_of(j as usize) == id,
            |&j| hasher.hash_one(id_of(j as usize)),
        ) {
            hashbrown::hash_table::Entry::Occupied(first) => Err(*first.get() as usize),
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(i as u32);
                Ok(())
            }
        }
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
    pub(crate) fn new(n: usize, edges: &Edges) -> Links {
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
const _: () = assert!(std::mem::size_of::<PlannedNode>() <= 32);
const _: () = assert!(std::mem::size_of::<PlannedEdge>() <= 8);

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
            assert_eq!(index.insert(i, id, |j| &ids[j]), Ok(()));
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(index.get(id, |j| &ids[j]), Some(i));
            // A second node with the id is refused, naming the first.
            assert_eq!(index.insert(ids.len() + i, id, |j| &ids[j]), Err(i));
        }
        assert_eq!(index.get("node-5000", |j| &ids[j]), None);
        assert_eq!(index.positions().count(), ids.len());
    }

    #[test]
    fn texts_read_back_as_kept_across_chunks_and_long_texts() {
        let mut texts = Texts::default();
        let mut kept = Vec::new();
        for i in 0..20_000 {
            // Multi-byte text near the ends of chunks, and now and then a text
            // longer than a chunk.
            let text = match i % 5000 {
                4999 => "é".repeat(TEXT_CHUNK),
                _ => format!("{{\"values\":{{\"i\":{i},\"s\":\"ünï\"}}}}"),
            };
            let span = texts.push(&text);
            kept.push((span, text));
        }
        for (span, text) in &kept {
            assert_eq!(texts.get(span.expect("a text of some bytes is kept")), text);
        }
        assert!(texts.chunks.len() > 4);
        // A chunk never grew past its room (it would have moved).
        assert!(
            texts
                .chunks
                .iter()
                .all(|(_, room, c)| c.len() <= *room as usize)
        );
        assert_eq!(texts.push(""), None);
    }

    #[test]
    fn edges_keep_their_handles_apart() {
        let mut edges = Edges::default();
        edges.push(0, 1, None, None);
        edges.push(1, 2, Some("error".into()), None);
        edges.push(2, 3, None, Some("left".into()));
        assert_eq!(edges.len(), 3);
        assert_eq!((edges[1].source(), edges[1].target()), (1, 2));
        assert_eq!(edges.source_handle(0), None);
        assert_eq!(edges.source_handle(1), Some("error"));
        assert_eq!(edges.target_handle(1), None);
        assert_eq!(edges.target_handle(2), Some("left"));
        assert_eq!(edges.handles.len(), 2);
    }
}
