//! Shows a run's progress on stderr: an indicatif view on a terminal (a line per
//! running node, counts, elapsed time), plain lines otherwise, nothing with -q.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Observer, Status};
use crate::nodes::LogLevel;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Lines,
    Silent,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// The observer that draws progress.
pub struct Progress {
    mode: Mode,
    state: Mutex<State>,
}

struct State {
    top_run: Option<String>,
    multi: MultiProgress,
    main: Option<ProgressBar>,
    running: HashMap<String, ProgressBar>,
}

impl Progress {
    pub fn new(mode: Mode) -> Progress {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Progress {
            mode,
            state: Mutex::new(State {
                top_run: None,
                multi,
                main: None,
                running: HashMap::new(),
            }),
        }
    }

    /// Removes the bars (before the result is printed).
    pub fn finish(&self) {
        if let Ok(mut s) = self.state.lock() {
            for (_, bar) in s.running.drain() {
                bar.finish_and_clear();
            }
            if let Some(main) = s.main.take() {
                main.finish_and_clear();
            }
        }
    }

    fn line(&self, s: &State, text: String) {
        match self.mode {
            Mode::Bars => {
                let _ = s.multi.println(text);
            }
            Mode::Lines => eprintln!("{text}"),
            Mode::Silent => {}
        }
    }
}

impl Observer for Progress {
    fn on_event(&self, event: &Event) {
        if self.mode == Mode::Silent {
            return;
        }
        let Ok(mut s) = self.state.lock() else { return };
        let own = |s: &State, run_id: &str| s.top_run.as_deref() == Some(run_id);
        match event {
            Event::RunStarted {
                run_id,
                workflow,
                node_count,
                parent_id: None,
                ..
            } if s.top_run.is_none() => {
                s.top_run = Some(run_id.clone());
                if self.mode == Mode::Bars {
                    let main = s.multi.add(ProgressBar::new(*node_count as u64));
                    main.set_style(
                        ProgressStyle::with_template("{spinner:.cyan} {prefix:.bold} [{elapsed_precise}] {pos}/{len} nodes {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    main.set_prefix(workflow.clone());
                    main.enable_steady_tick(Duration::from_millis(100));
                    s.main = Some(main);
                } else {
                    self.line(
                        &s,
                        format!("run {run_id} of {workflow} started ({node_count} nodes)"),
                    );
                }
            }
            Event::NodeStarted {
                run_id,
                node_id,
                attempt,
                item,
            } if own(&s, run_id) => {
                let label = match item {
                    Some(i) => format!("{node_id}[{i}]"),
                    None => node_id.to_string(),
                };
                let retry = if *attempt > 1 {
                    format!(" (attempt {attempt})")
                } else {
                    String::new()
                };
                if self.mode == Mode::Bars {
                    if item.is_none() || !s.running.contains_key(&**node_id) {
                        let bar = s.multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("  {spinner} {msg} {elapsed}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.enable_steady_tick(Duration::from_millis(100));
                        if let Some(old) = s.running.insert(node_id.to_string(), bar.clone()) {
                            old.finish_and_clear();
                        }
                        bar.set_message(format!("{label}{retry}"));
                    }
                } else if item.is_none() || *attempt > 1 {
                    self.line(&s, format!("  [{label}] started{retry}"));
                }
            }
            Event::NodeFinished {
                run_id,
                node_id,
                status,
                attempts,
                duration_ms,
                error,
                ..
            } if own(&s, run_id) => {
                if let Some(bar) = s.running.remove(node_id) {
                    bar.finish_and_clear();
                }
                if let Some(main) = &s.main {
                    main.inc(1);
                }
                let text = match status {
                    Status::Succeeded => format!("  [{node_id}] ok in {duration_ms}ms"),
                    Status::Failed => format!(
                        "  [{node_id}] FAILED after {attempts} attempt(s): {}",
                        error.as_deref().unwrap_or("")
                    ),
                    other => format!("  [{node_id}] {}", other.as_str()),
                };
                if self.mode == Mode::Lines || matches!(status, Status::Failed) {
                    self.line(&s, text);
                }
            }
            Event::Log {
                node_id,
                level,
                message,
                ..
            } if *level != LogLevel::Debug => {
                let who = node_id.as_deref().unwrap_or("run");
                self.line(&s, format!("  [{who}] {}: {message}", level.as_str()));
            }
            _ => {}
        }
    }
}
