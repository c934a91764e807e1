//! Schedules: cron expressions (5 fields, or 6 with seconds) in a time zone,
//! and fixed intervals. Used by the daemon's scheduler and by `fuse cron`.

use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use serde_json::Value;

use crate::store::schedules::StoredSchedule;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub enum Schedule {
    Cron {
        cron: Box<Cron>,
        tz: TimeZone,
        tz_name: String,
    },
    Interval(Duration),
    /// One fire at this time.
    Once(Timestamp),
}

/// What to do about fires missed while the daemon was down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missed {
    Skip,
    RunOnce,
}

/// What to do when a fire comes while the previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Allow,
    Skip,
    Queue,
}

impl Missed {
    pub fn parse(s: Option<&str>) -> Result<Missed, String> {
        match s.unwrap_or("skip") {
            "skip" => Ok(Missed::Skip),
            "run_once" => Ok(Missed::RunOnce),
            other => Err(format!("missed {other:?} must be skip or run_once")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Missed::Skip => "skip",
            Missed::RunOnce => "run_once",
        }
    }
}

impl Overlap {
    pub fn parse(s: Option<&str>) -> Result<Overlap, String> {
        match s.unwrap_or("allow") {
            "allow" => Ok(Overlap::Allow),
            "skip" => Ok(Overlap::Skip),
            "queue" => Ok(Overlap::Queue),
            other => Err(format!("overlap {other:?} must be allow, skip or queue")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Allow => "allow",
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
        }
    }
}

/// A time zone by IANA name (`UTC` when `None`).
pub fn time_zone(name: Option<&str>) -> Result<(TimeZone, String), String> {
    let name = name.unwrap_or("UTC");
    TimeZone::get(name)
        .map(|tz| (tz, name.to_string()))
        .map_err(|e| {
            format!("unknown time zone {name:?} ({e}); use an IANA name like Europe/Paris")
        })
}

impl Schedule {
    /// A cron expression: 5 fields (minute precision) or 6 (with seconds first);
    /// `@daily`-style nicknames work too.
    pub fn cron(expr: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .build()
            .parse(expr)
            .map_err(|e| format!("cron {expr:?} is not valid: {e}"))?;
        let (tz, tz_name) = time_zone(tz)?;
        Ok(Schedule::Cron {
            cron: Box::new(cron),
            tz,
            tz_name,
        })
    }

    /// A stored trigger's schedule: `cron` (with its time zone) or `interval`.
    pub fn of_kind(kind: &str, spec: &str, tz: Option<&str>) -> Result<Schedule, String> {
        match kind {
            "cron" => Schedule::cron(spec, tz),
            "once" => Schedule::once(spec, tz),
            _ => Schedule::interval(spec),
        }
    }

    /// One fire at `at`: an RFC 3339 time (`2026-12-01T09:00:00Z`), or a
    /// local date and time (`2026-12-01T09:00:00`, `2026-12-01 09:00`) in
    /// `tz` (UTC by default).
    pub fn once(at: &str, tz: Option<&str>) -> Result<Schedule, String> {
        let (zone, _) = time_zone(tz)?;
        let when = at
            .parse::<Timestamp>()
            .or_else(|_| {
                at.parse::<jiff::civil::DateTime>()
                    .map_err(|e| e.to_string())
                    .and_then(|dt| dt.to_zoned(zone).map(|z| z.timestamp()).map_err(|e| e.to_string()))
            })
            .map_err(|e| {
                format!("{at:?} is not a time: give RFC 3339 (2026-12-01T09:00:00Z) or a local 2026-12-01T09:00:00 ({e})")
            })?;
        Ok(Schedule::Once(when))
    }

    pub fn interval(every: &str) -> Result<Schedule, String> {
        let d = crate::engine::duration::parse(every)?;
        if d < Duration::from_secs(1) {
            return Err(format!("interval {every:?} is shorter than 1s"));
        }
        Ok(Schedule::Interval(d))
    }

    /// The first fire strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Cron { cron, tz, .. } => {
                let start = after.to_zoned(tz.clone());
                cron.find_next_occurrence(&start, false)
                    .ok()
                    .map(|z: Zoned| z.timestamp())
            }
            Schedule::Interval(d) => {
                let span = jiff::SignedDuration::try_from(*d).ok()?;
                after.checked_add(span).ok()
            }
            Schedule::Once(at) => (*at > after).then_some(*at),
        }
    }

    /// The next `count` fires after `after`, as zoned times.
    pub fn upcoming(&self, after: Timestamp, count: usize) -> Vec<Zoned> {
        let tz = match self {
            Schedule::Cron { tz, .. } => tz.clone(),
            Schedule::Interval(_) | Schedule::Once(_) => TimeZone::UTC,
        };
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            let Some(next) = self.next_after(t) else {
                break;
            };
            out.push(next.to_zoned(tz.clone()));
            t = next;
        }
        out
    }
}

/// The schedule triggers of a workflow definition, with when each fires
/// next after `now` (bad specs are left out, with a warning).
pub fn triggers_of(workflow: &str, definition: &str, now: Timestamp) -> Vec<StoredSchedule> {
    let Ok(wf) = serde_json::from_str::<Value>(definition) else {
        return Vec::new();
    };
    wf.get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|node| {
            let node_type = node.get("type").and_then(Value::as_str).unwrap_or("");
            let node_id = node.get("id").and_then(Value::as_str).unwrap_or("");
            let inputs = node.pointer("/data/inputs").unwrap_or(&Value::Null);
            trigger_of(workflow, node_id, node_type, inputs, now)
        })
        .collect()
}

/// The schedule of one trigger node (of type `node_type`, with `inputs`),
/// with when it fires next after `now`; `None` when the node is not a
/// schedule trigger, does not fire by itself, or has a bad spec (warned).
pub fn trigger_of(
    workflow: &str,
    node_id: &str,
    node_type: &str,
    inputs: &Value,
    now: Timestamp,
) -> Option<StoredSchedule> {
    let s = |k: &str| inputs.get(k).and_then(Value::as_str).map(str::to_string);
    let number = |k: &str| inputs.get(k).and_then(Value::as_i64);
    let (mut max_fires, mut retries) = (None, 0);
    let (kind, spec, timezone) = match crate::workflow::canonical_type(node_type) {
        "trigger.cron" => ("cron", s("cron")?, s("timezone")),
        "trigger.interval" => ("interval", s("every")?, None),
        "trigger.timer" => {
            // `manual`, or `auto_trigger_workflow: false`: it does not fire by itself.
            if inputs.get("auto_trigger_workflow").and_then(Value::as_bool) == Some(false) {
                return None;
            }
            max_fires = number("max_executions").filter(|n| *n > 0);
            if inputs.get("retry_on_failure").and_then(Value::as_bool) == Some(true) {
                retries = number("retry_count").unwrap_or(3).max(0);
            }
            let (kind, spec) = timer_schedule(inputs)?;
            (kind, spec, s("timezone"))
        }
        _ => return None,
    };
    let Ok(schedule) = Schedule::of_kind(kind, &spec, timezone.as_deref()) else {
        tracing::warn!("workflow {workflow}: trigger {node_id} has a bad schedule {spec:?}");
        return None;
    };
    Some(StoredSchedule {
        workflow: workflow.to_string(),
        node_id: node_id.to_string(),
        kind: kind.to_string(),
        spec,
        timezone,
        missed: s("missed").unwrap_or_else(|| "skip".into()),
        overlap: s("overlap").unwrap_or_else(|| "allow".into()),
        next_fire_at: schedule.next_after(now).map(Timestamp::as_millisecond),
        max_fires,
        fired: 0,
        retries,
    })
}

/// A `trigger.timer`'s schedule kind and spec by its `schedule_type`
/// (`interval` by default); `None` for `manual`.
pub fn timer_schedule(inputs: &Value) -> Option<(&'static str, String)> {
    let s = |k: &str| inputs.get(k).and_then(Value::as_str).map(str::to_string);
    match s("schedule_type").as_deref().unwrap_or("interval") {
        "cron" => Some(("cron", s("cron_expression")?)),
        "once" => Some(("once", s("scheduled_time")?)),
        "interval" => {
            let seconds = inputs
                .get("interval_seconds")
                .and_then(Value::as_f64)
                .unwrap_or(3600.0);
            Some(("interval", format!("{}s", seconds.max(0.0) as u64)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_and_six_fields_and_time_zones() {
        let s = Schedule::cron("*/15 * * * *", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:07:00Z")),
            Some(at("2026-01-01T10:15:00Z"))
        );
        let s = Schedule::cron("*/10 * * * * *", None).unwrap();
        assert_eq!(
            s.next_after(at("2026-01-01T10:00:01Z")),
            Some(at("2026-01-01T10:00:10Z"))
        );
        let s = Schedule::cron("0 9 * * *", Some("Europe/Paris")).unwrap();
        // 09:00 in Paris is 08:00 UTC in winter.
        assert_eq!(
            s.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-01-01T08:00:00Z"))
        );
        assert!(Schedule::cron("61 * * * *", None).is_err());
        assert!(
            Schedule::cron("0 9 * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn daily_fires_follow_the_wall_clock_across_dst() {
        // Paris springs forward on 2026-03-29: 09:00 local is 08:00 UTC before, 07:00 UTC after.
        let s = Schedule::cron("0 9 * * *", Some("Europe/Paris")).unwrap();
        let fires: Vec<Timestamp> = s
            .upcoming(at("2026-03-27T12:00:00Z"), 3)
            .iter()
            .map(Zoned::timestamp)
            .collect();
        assert_eq!(
            fires,
            vec![
                at("2026-03-28T08:00:00Z"),
                at("2026-03-29T07:00:00Z"),
                at("2026-03-30T07:00:00Z")
            ]
        );
    }
}
