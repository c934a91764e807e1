//! The workflow JSON as written (React-Flow shaped): `nodes` and `edges` plus
//! settings. Fields a visual editor adds (`position`, styling, …) are kept in
//! `extra` and written back unchanged; the engine ignores them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A workflow file.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Workflow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the workflow is for (shown in listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub settings: Settings,
    /// What a run's input may hold; checked before a run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<super::params::Param>>,
    pub nodes: Vec<NodeDef>,
    #[serde(default)]
    pub edges: Vec<EdgeDef>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `settings`: run-wide options.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Settings {
    /// Nodes of a run executing at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<usize>,
    /// Whole-run time limit, e.g. `"5m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Runs of this workflow kept in history (overrides `history.keep_runs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_runs: Option<u64>,
    /// Days runs of this workflow are kept (overrides `history.keep_days`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u64>,
    /// Constants available to expressions as `vars`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: Map<String, Value>,
    /// The daemon resumes a run it was interrupted in from the last finished node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
    /// A deployed workflow the daemon runs when a run of this one fails, with
    /// the failed run's summary as its input (default: `alerts.workflow`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One node.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct NodeDef {
    pub id: String,
    #[serde(rename = "type")]
    pub node_type: String,
    #[serde(default)]
    pub data: NodeData,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<RetryDef>>,
    /// Per-attempt time limit, e.g. `"10s"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    /// `"{{ expr }}"` giving an array: the node runs once per item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foreach: Option<String>,
    /// Items of a `foreach` running at once (default: the run's max_parallel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `data` of a node: a display name and the inputs.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct NodeData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub inputs: Map<String, Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// `retry` of a node.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryDef {
    /// Total attempts, including the first.
    pub attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    /// First delay (default `"500ms"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<String>,
    /// Longest delay (default `"30s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Only retry errors matching these conditions (default: errors marked retryable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<RetryOn>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    #[default]
    Exponential,
    Fixed,
}

/// `retry.on`: an error is retried when it matches any listed condition.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryOn {
    /// Error kinds: `timeout`, `network`, `http`, `exit`, `process`, `any`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Exit codes of `exec.command` and external nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exit_codes: Vec<i32>,
    /// HTTP statuses of `http.request`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub statuses: Vec<u16>,
}

/// What a failed node does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The run fails (unless an `error` edge handles it).
    Fail,
    /// The node is recorded as failed; its output is `{"error": …}` and the run goes on.
    Continue,
}

/// One edge. `sourceHandle` picks a branch (`true`, `false`, a switch case,
/// `error`); `targetHandle` names the input slot on the target.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct EdgeDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub source: String,
    pub target: String,
    #[serde(
        default,
        rename = "sourceHandle",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_handle: Option<String>,
    #[serde(
        default,
        rename = "targetHandle",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_handle: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

// Objects that keep unknown keys in `extra` deserialize through a visitor
// written out below rather than `#[serde(flatten)]`, which buffers every
// object into an intermediate tree first: parsing a 10,000-node file took
// twice as long that way. They read the same keys, defaults and errors.
macro_rules! deserialize_with_extra {
    ($ty:ident, $expecting:literal,
     required { $($rf:ident : $rj:literal),* $(,)? },
     optional { $($of:ident : $oj:literal),* $(,)? }
     $(compact { $($cf:ident : $cj:literal),* $(,)? })?) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Fields;
                impl<'de> serde::de::Visitor<'de> for Fields {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<$ty, A::Error> {
                        $( let mut $rf = None; )*
                        $( let mut $of = None; )*
                        $($( let mut $cf = None; )*)?
                        let mut extra = Map::new();
                        while let Some(key) = map.next_key::<Key<'de>>()? {
                            match key.as_str() {
                                $( $rj => {
                                    if $rf.is_some() {
                                        return Err(serde::de::Error::duplicate_field($rj));
                                    }
                                    $rf = Some(map.next_value()?);
                                } )*
                                $( $oj => {
                                    if $of.is_some() {
                                        return Err(serde::de::Error::duplicate_field($oj));
                                    }
                                    $of = Some(map.next_value()?);
                                } )*
                                $($( $cj => {
                                    if $cf.is_some() {
                                        return Err(serde::de::Error::duplicate_field($cj));
                                    }
                                    $cf = Some(map.next_value::<CompactMap>()?.0);
                                } )*)?
                                _ => {
                                    let value = map.next_value::<CompactValue>()?.0;
                                    extra.insert(key.into_string(), value);
                                }
                            }
                        }
                        Ok($ty {
                            $( $rf: $rf.ok_or_else(|| serde::de::Error::missing_field($rj))?, )*
                            $( $of: $of.unwrap_or_default(), )*
                            $($( $cf: $cf.unwrap_or_default(), )*)?
                            extra: Extra::from(extra),
                        })
                    }
                }
                d.deserialize_map(Fields)
            }
        }
    };
}

/// An object key, borrowed from the input when it can be.
enum Key<'de> {
    Borrowed(&'de str),
    Owned(String),
}

impl Key<'_> {
    fn as_str(&self) -> &str {
        match self {
            Key::Borrowed(s) => s,
            Key::Owned(s) => s,
        }
    }

    fn into_string(self) -> String {
        match self {
            Key::Borrowed(s) => s.to_string(),
            Key::Owned(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key::Borrowed(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key::Owned(v))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Workflow {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed;
        let mut all = Collect::default();
        let head = Stream(&mut all).deserialize(d)?;
        Ok(Workflow::assemble(head, all))
    }
}
deserialize_with_extra!(
    Settings,
    "a settings object",
    required {},
    optional {
        max_parallel: "max_parallel",
        timeout: "timeout",
        keep_runs: "keep_runs",
        keep_days: "keep_days",
        vars: "vars",
        resume: "resume",
        on_failure: "on_failure"
    }
);
deserialize_with_extra!(
    NodeDef,
    "a node object",
    required {
        id: "id",
        node_type: "type"
    },
    optional {
        data: "data",
        retry: "retry",
        timeout: "timeout",
        on_error: "on_error",
        foreach: "foreach",
        concurrency: "concurrency"
    }
);
deserialize_with_extra!(
    NodeData,
    "a node's data object",
    required {},
    optional { name: "name" }
    compact { inputs: "inputs" }
);

/// The keys of an object the format does not use (editor fields such as
/// `position`), kept to be written back. Most objects have none, and an
/// empty one takes one word rather than a whole map in every node and edge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra(Option<Box<Map<String, Value>>>);

impl From<Map<String, Value>> for Extra {
    /// The map at its exact size (its values are read so, as [`CompactValue`]s).
    fn from(map: Map<String, Value>) -> Extra {
        Extra((!map.is_empty()).then(|| {
            let mut exact = Map::with_capacity(map.len());
            exact.extend(map);
            Box::new(exact)
        }))
    }
}

impl std::ops::Deref for Extra {
    type Target = Map<String, Value>;
    fn deref(&self) -> &Map<String, Value> {
        static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
        match &self.0 {
            Some(map) => map,
            None => &EMPTY,
        }
    }
}

impl Serialize for Extra {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl schemars::JsonSchema for Extra {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <Map<String, Value> as schemars::JsonSchema>::schema_name()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <Map<String, Value> as schemars::JsonSchema>::json_schema(generator)
    }
}

/// A JSON object read with exact capacities: serde_json grows every object
/// to room for three entries and arrays by doubling; a workflow holds one or
/// two small objects per node (`data.inputs`), so for a large workflow that
/// slack was the biggest part of its parsed size. Each object's (and
/// array's) entries are gathered on one stack, reused from read to read,
/// and moved into a collection of their exact size when it ends.
struct CompactMap(Map<String, Value>);

type Entries = Vec<(String, Value)>;

thread_local! {
    static ENTRIES: std::cell::Cell<Entries> = const { std::cell::Cell::new(Vec::new()) };
}

/// The most entries the reused stack keeps room for between reads.
const KEPT_ENTRIES: usize = 1024;

impl<'de> Deserialize<'de> for CompactMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Top<'s>(&'s mut Entries);
        impl<'de> serde::de::Visitor<'de> for Top<'_> {
            type Value = Map<String, Value>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Map<String, Value>, A::Error> {
                Compact(self.0).object(map)
            }
        }
        with_entries(|entries| d.deserialize_map(Top(entries))).map(CompactMap)
    }
}

/// Any JSON value read with exact capacities (see [`CompactMap`]).
struct CompactValue(Value);

impl<'de> Deserialize<'de> for CompactValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::DeserializeSeed;
        with_entries(|entries| Compact(entries).deserialize(d)).map(CompactValue)
    }
}

/// Runs `read` with this thread's stack of entries, left empty after it.
fn with_entries<T>(read: impl FnOnce(&mut Entries) -> T) -> T {
    let mut entries = ENTRIES.take();
    let result = read(&mut entries);
    entries.clear();
    if entries.capacity() <= KEPT_ENTRIES {
        ENTRIES.set(entries);
    }
    result
}

/// Reads any JSON value as serde_json's own `Value` does, with exact
/// capacities (see [`CompactMap`]).
struct Compact<'s>(&'s mut Entries);

impl<'de> Compact<'_> {
    fn object<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<Map<String, Value>, A::Error> {
        let start = self.0.len();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(Compact(&mut *self.0))?;
            self.0.push((key, value));
        }
        let mut out = Map::with_capacity(self.0.len() - start);
        // A repeated key keeps its first place and its last value, as in serde_json.
        for (key, value) in self.0.drain(start..) {
            out.insert(key, value);
        }
        Ok(out)
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Compact<'_> {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Compact<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let start = self.0.len();
        while let Some(item) = seq.next_element_seed(Compact(&mut *self.0))? {
            // An item has no key; an empty `String` takes no allocation.
            self.0.push((String::new(), item));
        }
        Ok(Value::Array(
            self.0.drain(start..).map(|(_, item)| item).collect(),
        ))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        self.object(map).map(Value::Object)
    }
}

deserialize_with_extra!(
    EdgeDef,
    "an edge object",
    required {
        source: "source",
        target: "target"
    },
    optional {
        id: "id",
        source_handle: "sourceHandle",
        target_handle: "targetHandle"
    }
);

/// Receives a workflow's nodes and edges one at a time, in file order, as
/// [`Workflow::stream`] reads them: a large workflow is checked and planned
/// without ever being held whole in parsed form.
pub trait Sink {
    fn node(&mut self, node: NodeDef);
    /// The `nodes` array has been read (edges may come before it).
    fn nodes_done(&mut self) {}
    fn edge(&mut self, edge: EdgeDef);
}

/// A workflow without its nodes and edges.
#[derive(Debug, Clone, Default)]
pub struct Head {
    pub name: Option<String>,
    pub description: Option<String>,
    pub settings: Settings,
    pub params: Option<Vec<super::params::Param>>,
    pub extra: Extra,
}

impl Head {
    /// The name used in history: `name`, else the file stem given.
    pub fn display_name(&self, fallback: &str) -> String {
        self.name.clone().unwrap_or_else(|| fallback.to_string())
    }
}

/// Collects the nodes and edges into vectors ([`Workflow::from_json`]).
#[derive(Default)]
struct Collect {
    nodes: Vec<NodeDef>,
    edges: Vec<EdgeDef>,
}

impl Sink for Collect {
    fn node(&mut self, node: NodeDef) {
        self.nodes.push(node);
    }
    fn edge(&mut self, edge: EdgeDef) {
        self.edges.push(edge);
    }
}

/// Where a read failed, with the JSON path to it.
struct Located {
    line: usize,
    column: usize,
    path: String,
}

/// Reads a workflow again, tracking the JSON path, to say where it fails.
fn locate<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
) -> Option<Located> {
    use serde::de::DeserializeSeed;
    /// Drops what is read: only the error matters.
    struct Discard;
    impl Sink for Discard {
        fn node(&mut self, _: NodeDef) {}
        fn edge(&mut self, _: EdgeDef) {}
    }
    let mut track = serde_path_to_error::Track::new();
    let e = Stream(&mut Discard)
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .err()?;
    Some(Located {
        line: e.line(),
        column: e.column(),
        path: track.path().to_string(),
    })
}

/// The top-level object: the same keys, defaults and errors as the other
/// objects (see `deserialize_with_extra!`), with `nodes` and `edges` handed
/// to a [`Sink`] item by item.
struct Stream<'s, S>(&'s mut S);

impl<'de, S: Sink> serde::de::DeserializeSeed<'de> for Stream<'_, S> {
    type Value = Head;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, S: Sink> serde::de::Visitor<'de> for Stream<'_, S> {
    type Value = Head;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a workflow object")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        use serde::de::Error;
        fn once<T, E: Error>(slot: &Option<T>, key: &'static str) -> Result<(), E> {
            match slot {
                Some(_) => Err(E::duplicate_field(key)),
                None => Ok(()),
            }
        }
        fn read<'de, T: Deserialize<'de>, A: serde::de::MapAccess<'de>>(
            map: &mut A,
            slot: &mut Option<T>,
            key: &'static str,
        ) -> Result<(), A::Error> {
            once(slot, key)?;
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let mut name = None;
        let mut description = None;
        let mut settings = None;
        let mut params = None;
        let mut nodes = None;
        let mut edges = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key::<Key<'de>>()? {
            match key.as_str() {
                "name" => read(&mut map, &mut name, "name")?,
                "description" => read(&mut map, &mut description, "description")?,
                "settings" => read(&mut map, &mut settings, "settings")?,
                "params" => read(&mut map, &mut params, "params")?,
                "nodes" => {
                    once(&nodes, "nodes")?;
                    nodes = Some(map.next_value_seed(Items {
                        sink: &mut *self.0,
                        nodes: true,
                    })?);
                }
                "edges" => {
                    once(&edges, "edges")?;
                    edges = Some(map.next_value_seed(Items {
                        sink: &mut *self.0,
                        nodes: false,
                    })?);
                }
                _ => {
                    let value = map.next_value::<CompactValue>()?.0;
                    extra.insert(key.into_string(), value);
                }
            }
        }
        if nodes.is_none() {
            return Err(A::Error::missing_field("nodes"));
        }
        Ok(Head {
            name: name.unwrap_or_default(),
            description: description.unwrap_or_default(),
            settings: settings.unwrap_or_default(),
            params: params.unwrap_or_default(),
            extra: Extra::from(extra),
        })
    }
}

/// `nodes` or `edges`: each item goes to the sink as soon as it is read.
struct Items<'s, S> {
    sink: &'s mut S,
    nodes: bool,
}

impl<'de, S: Sink> serde::de::DeserializeSeed<'de> for Items<'_, S> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: Sink> serde::de::Visitor<'de> for Items<'_, S> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a sequence")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.nodes {
            while let Some(node) = seq.next_element::<NodeDef>()? {
                self.sink.node(node);
            }
            self.sink.nodes_done();
        } else {
            while let Some(edge) = seq.next_element::<EdgeDef>()? {
                self.sink.edge(edge);
            }
        }
        Ok(())
    }
}

impl Workflow {
    /// Parses workflow JSON; errors carry line, column and the JSON path.
    pub fn from_json(text: &str) -> Result<Workflow, ParseError> {
        let mut all = Collect::default();
        let head = Workflow::stream(text, &mut all)?;
        Ok(Workflow::assemble(head, all))
    }

    fn assemble(head: Head, all: Collect) -> Workflow {
        Workflow {
            name: head.name,
            description: head.description,
            settings: head.settings,
            params: head.params,
            nodes: all.nodes,
            edges: all.edges,
            extra: head.extra,
        }
    }

    /// Parses workflow JSON, handing each node and edge to `sink` as it is
    /// read; returns the rest. Errors as [`Workflow::from_json`].
    pub fn stream(text: &str, sink: &mut impl Sink) -> Result<Head, ParseError> {
        Self::stream_with(
            serde_json::Deserializer::from_str(text),
            sink,
            || format_hint(text),
            || locate(serde_json::Deserializer::from_str(text)),
        )
    }

    /// [`Workflow::stream`] from a reader, for a file too large to hold;
    /// `hint` explains a syntax error (see [`format_hint`]), and `again`
    /// reads the same text once more to find the JSON path of an error.
    pub fn stream_reader<R: std::io::Read>(
        reader: impl std::io::Read,
        sink: &mut impl Sink,
        hint: impl FnOnce() -> Option<&'static str>,
        again: impl FnOnce() -> Option<R>,
    ) -> Result<Head, ParseError> {
        Self::stream_with(
            serde_json::Deserializer::from_reader(reader),
            sink,
            hint,
            || again().and_then(|r| locate(serde_json::Deserializer::from_reader(r))),
        )
    }

    /// Reads without tracking the JSON path (tracking allocates for every
    /// key read); an error's path is found by `locate`, which reads the text
    /// again with tracking, and is kept only if that read fails at the same
    /// place.
    fn stream_with<'de, R: serde_json::de::Read<'de>>(
        mut de: serde_json::Deserializer<R>,
        sink: &mut impl Sink,
        hint: impl FnOnce() -> Option<&'static str>,
        locate: impl FnOnce() -> Option<Located>,
    ) -> Result<Head, ParseError> {
        use serde::de::DeserializeSeed;
        let read = Stream(sink)
            .deserialize(&mut de)
            .map_err(|e| (true, e))
            .and_then(|head| de.end().map(|()| head).map_err(|e| (false, e)));
        read.map_err(|(inside, inner)| {
            let path = if inside {
                locate()
                    .filter(|at| (at.line, at.column) == (inner.line(), inner.column()))
                    .map(|at| at.path)
                    .unwrap_or_default()
            } else {
                String::new()
            };
            let mut message = strip_position(&inner.to_string());
            if inner.is_syntax()
                && let Some(hint) = hint()
            {
                message = format!("{message}; {hint}");
            }
            ParseError {
                line: inner.line(),
                column: inner.column(),
                path: if path == "." { String::new() } else { path },
                message,
            }
        })
    }

    /// The name used in history: `name`, else the file stem given.
    pub fn display_name(&self, fallback: &str) -> String {
        self.name.clone().unwrap_or_else(|| fallback.to_string())
    }
}

/// A workflow file that is not valid JSON or not of the expected shape.
#[derive(Debug, Clone)]
pub struct ParseError {
    pub line: usize,
    pub column: usize,
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "at {}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl ParseError {
    /// A file that is not UTF-8 text, with where the first bad byte is.
    pub fn not_utf8(e: &std::string::FromUtf8Error) -> ParseError {
        let at = e.utf8_error().valid_up_to();
        let before = &e.as_bytes()[..at];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let column = at
            - before
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |i| i + 1)
            + 1;
        ParseError {
            line,
            column,
            path: String::new(),
            message: format!(
                "the file is not UTF-8 text (byte {at} is not); workflows are JSON in UTF-8: re-save it as UTF-8"
            ),
        }
    }
}

/// What a file that is not JSON probably is: YAML, or JSON with comments.
pub(crate) fn format_hint(text: &str) -> Option<&'static str> {
    let start = text.trim_start_matches('\u{feff}').trim_start();
    let has_comments = text
        .lines()
        .any(|l| l.trim_start().starts_with("//") || l.trim_start().starts_with("/*"));
    if has_comments {
        return Some(
            "JSON does not allow comments: remove the // and /* */ lines (put notes in \"description\" or a node's data.notes)",
        );
    }
    let first = start.chars().next()?;
    let looks_yaml = start.starts_with("---")
        || (first != '{'
            && first != '['
            && start
                .lines()
                .next()
                .is_some_and(|l| l.contains(':') || l.starts_with("- ")));
    looks_yaml.then_some(
        "this looks like YAML; workflows are JSON (convert it, e.g. `yq -o=json . FILE > FILE.json`)",
    )
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_ui_fields_are_kept() {
        let text = r#"{"nodes":[{"id":"a","type":"log","position":{"x":1,"y":2},
            "data":{"inputs":{"message":"hi"},"label":"A"}}],
            "edges":[],"viewport":{"zoom":1}}"#;
        let wf = Workflow::from_json(text).unwrap();
        let back = serde_json::to_value(&wf).unwrap();
        assert_eq!(back["nodes"][0]["position"]["x"], 1);
        assert_eq!(back["nodes"][0]["data"]["label"], "A");
        assert_eq!(back["viewport"]["zoom"], 1);
    }

    #[test]
    fn inputs_read_as_serde_json_reads_them() {
        let inputs = r#"{"a": [1, -2, 3.5, null, true, "x\"y", {"b": {}}, []],
            "c": {"d": 1, "e": [[]], "d": 2}, "f": 18446744073709551615, "g": -9223372036854775808}"#;
        let text = format!(
            r#"{{"nodes": [{{"id": "n", "type": "log", "data": {{"inputs": {inputs}}}}}]}}"#
        );
        let wf = Workflow::from_json(&text).unwrap();
        let expected: Map<String, Value> = serde_json::from_str(inputs).unwrap();
        assert_eq!(wf.nodes[0].data.inputs, expected);
        // Same order of keys, and a repeated key keeps its first place.
        let keys: Vec<&String> = wf.nodes[0].data.inputs["c"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["d", "e"]);
        assert_eq!(wf.nodes[0].data.inputs["c"]["d"], 2);
        // A second workflow read on the same thread starts from an empty stack.
        let err = Workflow::from_json(
            r#"{"nodes": [{"id": "n", "type": "log", "data": {"inputs": {"a": [1, {"b": }]}}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "nodes[0].data.inputs.a[1].b", "{err}");
        let wf = Workflow::from_json(&text).unwrap();
        assert_eq!(wf.nodes[0].data.inputs, expected);
    }

    #[test]
    fn parse_error_has_path_and_line() {
        let err =
            Workflow::from_json("{\"nodes\": [\n {\"id\": 5, \"type\": \"log\"}]}").unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.path.contains("nodes[0].id"), "{err}");
        let err = Workflow::from_json(
            r#"{"nodes": [{"id": "a", "type": "log"}, {"id": "b", "type": "log", "retry": {"attempts": "3"}}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "nodes[1].retry.attempts", "{err}");
        // Past the workflow object there is no path.
        let err = Workflow::from_json(r#"{"nodes": []} x"#).unwrap_err();
        assert_eq!(err.path, "", "{err}");
        assert!(err.message.contains("trailing characters"), "{err}");
    }
}
