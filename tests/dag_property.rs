//! Property: over random DAGs of branches and pass-through nodes, every node runs
//! at most once, only after all its non-skipped upstream nodes, and the set of
//! skipped nodes matches a reference model computed here.

use std::collections::HashMap;

use fuse::engine::{Event, Status};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::engine::run;

#[derive(Debug, Clone)]
struct Dag {
    /// Some(condition) for a flow.if node, None for flow.noop.
    nodes: Vec<Option<bool>>,
    /// (source, target, handle) with source < target.
    edges: Vec<(usize, usize, Option<bool>)>,
}

fn dag() -> impl Strategy<Value = Dag> {
    (2usize..18).prop_flat_map(|n| {
        let nodes = proptest::collection::vec(proptest::option::of(any::<bool>()), n);
        let pairs: Vec<(usize, usize)> = (0..n).flat_map(|t| (0..t).map(move |s| (s, t))).collect();
        let edges = proptest::collection::vec(
            (0.0f64..1.0, proptest::option::of(any::<bool>())),
            pairs.len(),
        );
        (nodes, Just(pairs), edges).prop_map(|(nodes, pairs, picks)| {
            let edges = pairs
                .into_iter()
                .zip(picks)
                .filter(|(_, (p, _))| *p < 0.3)
                .map(|((s, t), (_, h))| (s, t, if nodes[s].is_some() { h } else { None }))
                .collect();
            Dag { nodes, edges }
        })
    })
}

fn to_workflow(d: &Dag) -> Value {
    let nodes: Vec<Value> = d
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n {
            Some(c) => json!({"id": format!("n{i}"), "type": "flow.if", "data": {"inputs": {"condition": c}}}),
            None => json!({"id": format!("n{i}"), "type": "flow.noop"}),
        })
        .collect();
    let edges: Vec<Value> = d
        .edges
        .iter()
        .map(|(s, t, h)| {
            let mut e = json!({"source": format!("n{s}"), "target": format!("n{t}")});
            if let Some(h) = h {
                e["sourceHandle"] = json!(h.to_string());
            }
            e
        })
        .collect();
    json!({"settings": {"max_parallel": 4}, "nodes": nodes, "edges": edges})
}

/// Which nodes run, by the rules of DESIGN §4.
fn reference(d: &Dag) -> Vec<bool> {
    let mut ran = vec![false; d.nodes.len()];
    for i in 0..d.nodes.len() {
        let incoming: Vec<_> = d.edges.iter().filter(|(_, t, _)| *t == i).collect();
        ran[i] = incoming.is_empty()
            || incoming
                .iter()
                .any(|(s, _, h)| ran[*s] && h.is_none_or(|h| d.nodes[*s] == Some(h)));
    }
    ran
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_dags_follow_the_rules(d in dag()) {
        let (record, events) = run(to_workflow(&d));
        prop_assert_eq!(record.status, Status::Succeeded);
        let expected = reference(&d);
        for (i, ran) in expected.iter().enumerate() {
            let got = record.nodes[&format!("n{i}")].status;
            prop_assert_eq!(got, if *ran { Status::Succeeded } else { Status::Skipped }, "node n{}", i);
        }
        let mut starts: HashMap<String, usize> = HashMap::new();
        let mut ends: HashMap<String, usize> = HashMap::new();
        for (pos, e) in events.all().iter().enumerate() {
            match e {
                Event::NodeStarted { node_id, .. } => {
                    prop_assert!(!starts.contains_key(&**node_id), "{} started twice", node_id);
                    starts.insert(node_id.to_string(), pos);
                }
                Event::NodeFinished { node_id, status: Status::Succeeded, .. } => {
                    ends.insert(node_id.clone(), pos);
                }
                _ => {}
            }
        }
        for (s, t, _) in &d.edges {
            let (s, t) = (format!("n{s}"), format!("n{t}"));
            if let (Some(end), Some(start)) = (ends.get(&s), starts.get(&t)) {
                prop_assert!(end < start, "{} started before its upstream {} finished", t, s);
            }
        }
    }
}
