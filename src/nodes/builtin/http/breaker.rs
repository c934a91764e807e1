//! Circuit breakers, one per target (scheme://host:port), shared by every run in
//! the process. After `threshold` consecutive failures a circuit opens: calls
//! fail fast for the cool-down; then one probe is let through, which closes the
//! circuit on success or opens it again on failure.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        failures: u32,
    },
    /// One probe is out since `since`.
    HalfOpen {
        since: Instant,
        failures: u32,
    },
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, PartialEq)]
pub enum Admit {
    Go,
    /// Fail fast: the circuit is open.
    Reject {
        retry_in: Duration,
        failures: u32,
    },
}

/// A change of a circuit's state worth logging.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Opened { failures: u32 },
    Closed,
}

/// The state of `target`, created closed on first use (without allocating the
/// key on every call).
fn slot<'a>(states: &'a mut HashMap<String, State>, target: &str) -> Option<&'a mut State> {
    if !states.contains_key(target) {
        states.insert(target.to_string(), State::Closed { failures: 0 });
    }
    states.get_mut(target)
}

/// The breakers in use in this process (for metrics); dropped ones fall out.
static LIVE: std::sync::LazyLock<Mutex<Vec<std::sync::Weak<Breakers>>>> =
    std::sync::LazyLock::new(Default::default);

/// Shares `breakers` and lists them for [`states`].
pub fn register(breakers: Breakers) -> std::sync::Arc<Breakers> {
    let shared = std::sync::Arc::new(breakers);
    if let Ok(mut live) = LIVE.lock() {
        live.retain(|w| w.strong_count() > 0);
        live.push(std::sync::Arc::downgrade(&shared));
    }
    shared
}

/// Every target's circuit in this process: 0 closed, 1 half-open, 2 open.
pub fn states() -> Vec<(String, u8)> {
    let live: Vec<std::sync::Arc<Breakers>> = LIVE
        .lock()
        .map(|l| l.iter().filter_map(std::sync::Weak::upgrade).collect())
        .unwrap_or_default();
    let mut out: HashMap<String, u8> = HashMap::new();
    for b in live {
        let Ok(states) = b.states.lock() else {
            continue;
        };
        for (target, state) in states.iter() {
            let n = match state {
                State::Closed { .. } => 0,
                State::HalfOpen { .. } => 1,
                State::Open { .. } => 2,
            };
            let slot = out.entry(target.clone()).or_insert(0);
            *slot = (*slot).max(n);
        }
    }
    let mut out: Vec<(String, u8)> = out.into_iter().collect();
    out.sort();
    out
}

/// The breakers of one process.
pub struct Breakers {
    threshold: u32,
    cooldown: Duration,
    states: Mutex<HashMap<String, State>>,
}

impl Breakers {
    pub fn new(threshold: u32, cooldown: Duration) -> Breakers {
        Breakers {
            threshold: threshold.max(1),
            cooldown,
            states: Mutex::new(HashMap::new()),
        }
    }

    /// Asks to call `target`.
    pub fn admit(&self, target: &str) -> Admit {
        let Ok(mut states) = self.states.lock() else {
            return Admit::Go;
        };
        // The common case: one lookup, no clock.
        if let Some(State::Closed { .. }) = states.get(target) {
            return Admit::Go;
        }
        let now = Instant::now();
        let Some(state) = slot(&mut states, target) else {
            return Admit::Go;
        };
        match *state {
            State::Closed { .. } => Admit::Go,
            State::Open { until, failures } if now < until => Admit::Reject {
                retry_in: until - now,
                failures,
            },
            State::Open { failures, .. } => {
                *state = State::HalfOpen {
                    since: now,
                    failures,
                };
                Admit::Go
            }
            // A probe that never reported back (cancelled) must not block forever.
            State::HalfOpen { since, failures } if now.duration_since(since) >= self.cooldown => {
                *state = State::HalfOpen {
                    since: now,
                    failures,
                };
                Admit::Go
            }
            State::HalfOpen { failures, .. } => Admit::Reject {
                retry_in: Duration::ZERO,
                failures,
            },
        }
    }

    /// Reports the outcome of a call; returns a transition to log, if any.
    pub fn record(&self, target: &str, ok: bool) -> Option<Transition> {
        let mut states = self.states.lock().ok()?;
        if ok && let Some(State::Closed { failures: 0 }) = states.get(target) {
            return None;
        }
        let state = slot(&mut states, target)?;
        let now = Instant::now();
        match (*state, ok) {
            (State::Closed { .. }, true) => {
                *state = State::Closed { failures: 0 };
                None
            }
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    *state = State::Open {
                        until: now + self.cooldown,
                        failures,
                    };
                    Some(Transition::Opened { failures })
                } else {
                    *state = State::Closed { failures };
                    None
                }
            }
            (State::HalfOpen { .. } | State::Open { .. }, true) => {
                *state = State::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (State::HalfOpen { failures, .. } | State::Open { failures, .. }, false) => {
                *state = State::Open {
                    until: now + self.cooldown,
                    failures: failures + 1,
                };
                Some(Transition::Opened {
                    failures: failures + 1,
                })
            }
        }
    }

    /// The state of a target, for error details.
    pub fn describe(&self, target: &str) -> Value {
        let Ok(states) = self.states.lock() else {
            return Value::Null;
        };
        match states.get(target) {
            None | Some(State::Closed { failures: 0 }) => {
                json!({"target": target, "state": "closed"})
            }
            Some(State::Closed { failures }) => {
                json!({"target": target, "state": "closed", "failures": failures})
            }
            Some(State::Open { until, failures }) => json!({
                "target": target, "state": "open", "failures": failures,
                "retry_in_ms": until.saturating_duration_since(Instant::now()).as_millis() as u64
            }),
            Some(State::HalfOpen { failures, .. }) => {
                json!({"target": target, "state": "half-open", "failures": failures})
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_fails_fast_then_probe_closes() {
        let b = Breakers::new(3, Duration::from_millis(50));
        let t = "http://x:80";
        assert_eq!(b.record(t, false), None);
        assert_eq!(b.record(t, false), None);
        assert_eq!(b.record(t, false), Some(Transition::Opened { failures: 3 }));
        assert!(matches!(b.admit(t), Admit::Reject { failures: 3, .. }));
        assert_eq!(b.describe(t)["state"], "open");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.admit(t), Admit::Go, "one probe after the cool-down");
        assert!(
            matches!(b.admit(t), Admit::Reject { .. }),
            "only one probe at a time"
        );
        assert_eq!(b.record(t, true), Some(Transition::Closed));
        assert_eq!(b.admit(t), Admit::Go);
    }

    #[test]
    fn a_failed_probe_reopens_and_success_resets_the_count() {
        let b = Breakers::new(2, Duration::from_millis(20));
        let t = "https://y:443";
        b.record(t, false);
        b.record(t, true);
        assert_eq!(
            b.record(t, false),
            None,
            "the count restarted after a success"
        );
        assert_eq!(b.record(t, false), Some(Transition::Opened { failures: 2 }));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(b.admit(t), Admit::Go);
        assert_eq!(b.record(t, false), Some(Transition::Opened { failures: 3 }));
        assert!(matches!(b.admit(t), Admit::Reject { .. }));
        assert_eq!(
            b.admit("https://other:443"),
            Admit::Go,
            "targets are independent"
        );
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;

    #[test]
    fn registered_breakers_report_their_circuits() {
        let b = register(Breakers::new(1, Duration::from_secs(60)));
        b.record("http://live-test:80", false);
        let all = states();
        assert!(
            all.contains(&("http://live-test:80".to_string(), 2)),
            "{all:?}"
        );
    }
}
