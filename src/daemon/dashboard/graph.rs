//! A workflow's DAG laid out for the dashboard (drawn as SVG by the page):
//! the saved React-Flow `position`s when every node has one, else a layered
//! layout (a node's column is its longest path from a source; rows in file
//! order). Edges are curves from a node's right side to the next one's left,
//! labelled with their branch handle.

use std::collections::HashMap;

use serde::Serialize;

use crate::workflow::Workflow;

/// Node box size and the gaps between columns and rows.
const W: f64 = 170.0;
const H: f64 = 46.0;
const COLUMN: f64 = 230.0;
const ROW: f64 = 76.0;
const MARGIN: f64 = 20.0;

#[derive(Debug, Clone, Serialize)]
pub struct Graph {
    pub width: f64,
    pub height: f64,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub id: String,
    pub node_type: String,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped`, `cancelled`.
    pub state: String,
    /// Attempts made (0 before it runs).
    pub attempts: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    /// The SVG path.
    pub d: String,
    pub label: Option<String>,
    pub label_x: f64,
    pub label_y: f64,
}

/// Lays out `workflow`, each node in the state `states` gives (else `pending`).
pub fn layout(workflow: &Workflow, states: &HashMap<String, (String, u32)>) -> Graph {
    let n = workflow.nodes.len();
    let index: HashMap<&str, usize> = workflow
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| (node.id.as_str(), i))
        .collect();
    let edges: Vec<(usize, usize, Option<&str>)> = workflow
        .edges
        .iter()
        .filter_map(|e| {
            Some((
                *index.get(e.source.as_str())?,
                *index.get(e.target.as_str())?,
                e.source_handle.as_deref(),
            ))
        })
        .filter(|(s, t, _)| s != t)
        .collect();

    let saved: Option<Vec<(f64, f64)>> = workflow
        .nodes
        .iter()
        .map(|node| {
            let p = node.extra.get("position")?;
            Some((p.get("x")?.as_f64()?, p.get("y")?.as_f64()?))
        })
        .collect();
    let places = match saved {
        Some(points) if !points.is_empty() => {
            let min_x = points.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
            let min_y = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            points
                .into_iter()
                .map(|(x, y)| (x - min_x + MARGIN, y - min_y + MARGIN))
                .collect()
        }
        _ => layered(n, &edges),
    };

    let nodes: Vec<GraphNode> = workflow
        .nodes
        .iter()
        .zip(&places)
        .map(|(node, &(x, y))| {
            let (state, attempts) = states
                .get(&node.id)
                .cloned()
                .unwrap_or_else(|| ("pending".into(), 0));
            GraphNode {
                id: node.id.clone(),
                node_type: node.node_type.clone(),
                x,
                y,
                w: W,
                h: H,
                state,
                attempts,
            }
        })
        .collect();
    let edges = edges
        .iter()
        .map(|&(s, t, handle)| {
            let (x1, y1) = (places[s].0 + W, places[s].1 + H / 2.0);
            let (x2, y2) = (places[t].0, places[t].1 + H / 2.0);
            let bend = ((x2 - x1).abs() / 2.0).max(30.0);
            GraphEdge {
                d: format!(
                    "M{x1:.1},{y1:.1} C{:.1},{y1:.1} {:.1},{y2:.1} {x2:.1},{y2:.1}",
                    x1 + bend,
                    x2 - bend
                ),
                label: handle
                    .filter(|h| !matches!(*h, "out" | "output" | "default"))
                    .map(str::to_string),
                label_x: (x1 + x2) / 2.0,
                label_y: (y1 + y2) / 2.0 - 6.0,
            }
        })
        .collect();
    let width = places.iter().map(|p| p.0 + W).fold(0.0, f64::max) + MARGIN;
    let height = places.iter().map(|p| p.1 + H).fold(0.0, f64::max) + MARGIN;
    Graph {
        width,
        height,
        nodes,
        edges,
    }
}

/// Columns by longest path from a source (in a cycle, what is left goes
/// last), rows in file order within a column.
fn layered(n: usize, edges: &[(usize, usize, Option<&str>)]) -> Vec<(f64, f64)> {
    let mut indegree = vec![0usize; n];
    let mut out = vec![Vec::new(); n];
    for &(s, t, _) in edges {
        indegree[t] += 1;
        out[s].push(t);
    }
    let mut column = vec![0usize; n];
    let mut queue: std::collections::VecDeque<usize> =
        (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut seen = vec![false; n];
    while let Some(i) = queue.pop_front() {
        seen[i] = true;
        for &t in &out[i] {
            column[t] = column[t].max(column[i] + 1);
            indegree[t] -= 1;
            if indegree[t] == 0 {
                queue.push_back(t);
            }
        }
    }
    let last = column.iter().copied().max().unwrap_or(0);
    for (i, done) in seen.iter().enumerate() {
        if !done {
            column[i] = last + 1;
        }
    }
    let mut rows: HashMap<usize, usize> = HashMap::new();
    (0..n)
        .map(|i| {
            let row = rows.entry(column[i]).or_insert(0);
            let place = (
                MARGIN + column[i] as f64 * COLUMN,
                MARGIN + *row as f64 * ROW,
            );
            *row += 1;
            place
        })
        .collect()
}

/// Each node's state and attempts from its recorded attempts: the last
/// attempt's status (a node still running has no finished attempt yet).
pub fn states(nodes: &[crate::store::history::NodeRunRow]) -> HashMap<String, (String, u32)> {
    let mut states: HashMap<String, (String, u32)> = HashMap::new();
    for row in nodes {
        let entry = states
            .entry(row.node_id.clone())
            .or_insert_with(|| (row.status.clone(), row.attempt));
        if row.attempt >= entry.1 {
            *entry = (row.status.clone(), row.attempt);
        }
    }
    states
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_goes_left_to_right_and_a_fan_out_down() {
        let wf = Workflow::from_json(
            r#"{"nodes": [{"id": "a", "type": "x"}, {"id": "b", "type": "x"}, {"id": "c", "type": "x"}],
                "edges": [{"source": "a", "target": "b", "sourceHandle": "true"}, {"source": "a", "target": "c"}]}"#,
        );
        let Ok(wf) = wf else {
            panic!("the test workflow parses");
        };
        let g = layout(&wf, &HashMap::new());
        assert_eq!(g.nodes[0].x, MARGIN);
        assert_eq!(g.nodes[1].x, g.nodes[2].x, "b and c share a column");
        assert!(g.nodes[2].y > g.nodes[1].y, "c below b");
        assert_eq!(g.edges[0].label.as_deref(), Some("true"));
        assert_eq!(g.nodes[0].state, "pending");
    }

    #[test]
    fn saved_positions_are_kept() {
        let wf = Workflow::from_json(
            r#"{"nodes": [{"id": "a", "type": "x", "position": {"x": 100, "y": 50}},
                          {"id": "b", "type": "x", "position": {"x": 400, "y": 250}}]}"#,
        );
        let Ok(wf) = wf else {
            panic!("the test workflow parses");
        };
        let g = layout(&wf, &HashMap::new());
        assert_eq!((g.nodes[0].x, g.nodes[0].y), (MARGIN, MARGIN));
        assert_eq!(
            (g.nodes[1].x, g.nodes[1].y),
            (300.0 + MARGIN, 200.0 + MARGIN)
        );
    }
}
