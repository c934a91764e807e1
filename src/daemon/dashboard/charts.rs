//! The dashboard's small charts, drawn on the server as SVG coordinates for
//! the template: runs per hour (overview) and a run's timeline of node
//! attempts (run page).

use serde_json::{Value, json};

use crate::store::history::{HourCount, NodeRunRow};

/// The overview's bar chart of runs per hour (succeeded below, failed on
/// top, the rest above), scaled to the busiest hour.
pub(super) fn per_hour(hours: &[HourCount]) -> Value {
    const BAR: i64 = 22;
    const HEIGHT: i64 = 90;
    let most = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.other)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u64| (n as i64 * HEIGHT) / most as i64;
    let bars: Vec<Value> = hours
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let (ok, failed, other) = (scale(h.succeeded), scale(h.failed), scale(h.other));
            let x = i as i64 * BAR;
            json!({"x": x, "w": BAR - 4, "hour": h.hour,
                   "ok_y": HEIGHT - ok, "ok_h": ok,
                   "failed_y": HEIGHT - ok - failed, "failed_h": failed,
                   "other_y": HEIGHT - ok - failed - other, "other_h": other,
                   "succeeded": h.succeeded, "failed": h.failed, "other": h.other})
        })
        .collect();
    let total: u64 = hours.iter().map(|h| h.succeeded + h.failed + h.other).sum();
    let failed: u64 = hours.iter().map(|h| h.failed).sum();
    json!({"bars": bars, "width": hours.len() as i64 * BAR, "height": HEIGHT,
           "total": total, "failed": failed, "most": most})
}

/// Attempts drawn on a run's timeline at most (a huge `foreach` run shows
/// its first ones and says how many it left out).
const TIMELINE_ROWS: usize = 300;

/// A run's node attempts on one time axis: each a bar from its start for its
/// duration, coloured by status, with its retries numbered.
pub(super) fn timeline(nodes: &[NodeRunRow]) -> Option<Value> {
    const WIDTH: f64 = 560.0;
    const ROW: i64 = 20;
    let timed: Vec<&NodeRunRow> = nodes.iter().filter(|n| n.started_at.is_some()).collect();
    let start = timed.iter().filter_map(|n| n.started_at).min()?;
    let end = timed
        .iter()
        .filter_map(|n| Some(n.started_at? + n.duration_ms.unwrap_or(0)))
        .max()
        .unwrap_or(start);
    let span = (end - start).max(1) as f64;
    let rows: Vec<Value> = timed
        .iter()
        .take(TIMELINE_ROWS)
        .enumerate()
        .map(|(i, n)| {
            let at = n.started_at.unwrap_or(start) - start;
            let x = (at as f64 / span * WIDTH).round();
            // At least a sliver, so an instant attempt is still seen.
            let w = ((n.duration_ms.unwrap_or(0) as f64 / span * WIDTH).round()).max(2.0);
            let label = match (n.item, n.attempt) {
                (Some(item), a) if a > 1 => format!("{} [{item}] try {a}", n.node_id),
                (Some(item), _) => format!("{} [{item}]", n.node_id),
                (None, a) if a > 1 => format!("{} try {a}", n.node_id),
                (None, _) => n.node_id.clone(),
            };
            json!({"y": i as i64 * ROW, "x": x, "w": w.min(WIDTH - x).max(2.0), "label": label,
                   "status": n.status, "at_ms": at, "duration_ms": n.duration_ms})
        })
        .collect();
    Some(
        json!({"rows": rows, "width": WIDTH, "row": ROW, "height": rows.len() as i64 * ROW,
                "span_ms": end - start, "left_out": timed.len().saturating_sub(TIMELINE_ROWS)}),
    )
}
