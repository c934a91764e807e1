//! `fuse test [PATH…]`: runs the cases of `*.test.json` files (see
//! [`crate::testing`]) and reports each, with what differed.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use futures_util::stream::{self, StreamExt};

use super::Globals;
use crate::engine::{Engine, Observer};
use crate::home::Home;
use crate::secrets::vault::HomeCredentials;
use crate::testing::junit::{self, BrokenFile};
use crate::testing::runner::{CaseResult, Collector, Runner, Verdict};
use crate::testing::{self, Loaded};

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Test files (NAME.test.json) or folders to search for them (default: .).
    pub paths: Vec<PathBuf>,

    /// Only cases whose "FILE › CASE" contains this text.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,

    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,

    /// Also write the results as JUnit XML (for CI).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,

    /// Rewrite `equals` expectations (and a missing run output) from what the
    /// runs gave, after showing what changes.
    #[arg(long)]
    pub update: bool,

    /// Cases run at once (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
}

pub fn run(globals: &Globals, args: TestArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        args.paths.clone()
    };
    let files = match testing::discover(&paths) {
        Ok(files) => files,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if files.is_empty() {
        eprintln!(
            "error: no test files (*{}) under {}",
            testing::SUFFIX,
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        eprintln!(
            "hint: a test for flow.json is flow.test.json beside it; docs/testing.md shows the format"
        );
        return Ok(ExitCode::from(2));
    }
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut broken: Vec<BrokenFile> = Vec::new();
    for file in &files {
        match testing::load(file) {
            Ok(l) => loaded.push(l),
            Err(e) => broken.push(BrokenFile {
                path: e.path,
                message: e.message,
            }),
        }
    }
    let cases: Vec<(usize, usize)> = loaded
        .iter()
        .enumerate()
        .flat_map(|(f, l)| (0..l.file.cases.len()).map(move |c| (f, c)))
        .filter(|&(f, c)| {
            args.filter.as_deref().is_none_or(|text| {
                format!(
                    "{} › {}",
                    loaded[f].path.display(),
                    loaded[f].file.cases[c].name
                )
                .contains(text)
            })
        })
        .collect();

    let runner = Arc::new(runner(globals)?);
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let human = !args.json;
    let loaded = Arc::new(loaded);
    let results: Vec<CaseResult> = runtime.block_on(async {
        let mut out = Vec::with_capacity(cases.len());
        let mut stream = stream::iter(cases.iter().copied())
            .map(|(f, c)| {
                let (runner, loaded) = (runner.clone(), loaded.clone());
                async move { runner.run_case(&loaded[f], c).await }
            })
            .buffered(jobs);
        while let Some(result) = stream.next().await {
            if human {
                // A closed stdout (`| head`) ends the report, not the runs' checks.
                let _ = print_case(&result);
            }
            out.push(result);
        }
        out
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    let total_ms = started.elapsed().as_millis() as u64;

    for b in &broken {
        eprintln!("error: {}: {}", b.path.display(), b.message);
    }
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    let (passed, failed, errors) = (
        count(Verdict::Passed),
        count(Verdict::Failed),
        count(Verdict::Error),
    );
    if args.update {
        let loaded = Arc::try_unwrap(loaded).unwrap_or_else(|l| (*l).clone());
        update(loaded, &results)?;
    }
    if let Some(path) = &args.junit {
        let xml = junit::report(&results, &broken, total_ms);
        crate::files::write_atomic(path, xml.as_bytes(), None)
            .with_context(|| format!("cannot write the JUnit report {}", path.display()))?;
    }
    if args.json {
        let report = serde_json::json!({
            "passed": passed,
            "failed": failed,
            "errors": errors + broken.len(),
            "duration_ms": total_ms,
            "cases": results,
            "broken_files": broken.iter().map(|b| serde_json::json!({"file": b.path, "error": b.message})).collect::<Vec<_>>(),
        });
        let mut out = std::io::stdout().lock();
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        let mut summary = format!("{passed} passed, {failed} failed");
        if errors + broken.len() > 0 {
            summary.push_str(&format!(", {} could not run", errors + broken.len()));
        }
        if let Some(filter) = args.filter.as_deref().filter(|_| cases.is_empty()) {
            summary = format!("no case matched --filter {filter:?}");
        }
        eprintln!(
            "{summary} ({})",
            crate::engine::duration::human(std::time::Duration::from_millis(total_ms))
        );
    }
    // A case that cannot run (an invalid workflow, a node the workflow lacks,
    // an input that does not fit its params) is invalid input, as in `fuse run`.
    Ok(if !broken.is_empty() || errors > 0 || cases.is_empty() {
        ExitCode::from(2)
    } else if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// An engine whose runs report to the collector only (tests record no history),
/// with the home's node packages and credentials when there is a home.
fn runner(globals: &Globals) -> anyhow::Result<Runner> {
    let home = Home::resolve(globals.home.clone())?;
    let mut max_parallel = crate::config::EngineConfig::default().max_parallel;
    let mut settings = crate::nodes::Settings::default();
    if home.probe()? {
        let config = home.config(&Default::default())?;
        max_parallel = config.engine.max_parallel;
        settings = crate::nodes::Settings::of_home(&home, &config);
    }
    let registry = super::run::home_registry(&home, &settings, !globals.quiet);
    let collector = Arc::new(Collector::default());
    let observer: Arc<dyn Observer> = collector.clone();
    let mut engine = Engine::new(registry, observer, max_parallel);
    if home.is_initialized() {
        engine = engine.with_credentials(Arc::new(HomeCredentials::new(home.clone())));
    }
    Ok(Runner::new(engine, collector))
}

fn print_case(r: &CaseResult) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let mark = match r.verdict {
        Verdict::Passed => "✓",
        Verdict::Failed => "✗",
        Verdict::Error => "!",
    };
    writeln!(
        out,
        "{mark} {} › {} ({} ms)",
        r.file.display(),
        r.case,
        r.duration_ms
    )?;
    for d in &r.differences {
        writeln!(out, "    {}: {}", d.path, d.message)?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "    could not run: {e}")?;
    }
    Ok(())
}

/// `--update`: shows and writes the new expectations, file by file.
fn update(mut loaded: Vec<Loaded>, results: &[CaseResult]) -> anyhow::Result<()> {
    let mut files_changed = 0;
    for file in &mut loaded {
        let mut changes = Vec::new();
        for r in results.iter().filter(|r| r.file == file.path) {
            let Some(actual) = &r.actual else { continue };
            let changed = crate::testing::runner::update(&mut file.raw, r.index, actual);
            if !changed.is_empty() {
                changes.push((r.case.clone(), changed));
            }
        }
        if changes.is_empty() {
            continue;
        }
        eprintln!("updating {}:", file.path.display());
        for (case, diffs) in &changes {
            eprintln!("  {case}:");
            for d in diffs {
                eprintln!("    {}: {}", d.path, d.message);
            }
        }
        let mut text = serde_json::to_string_pretty(&file.raw)?;
        text.push('\n');
        crate::files::write_atomic(&file.path, text.as_bytes(), None)
            .with_context(|| format!("cannot write {}", file.path.display()))?;
        files_changed += 1;
    }
    eprintln!(
        "{}",
        if files_changed == 0 {
            "--update: every expectation already holds; nothing written".to_string()
        } else {
            format!(
                "--update: rewrote {files_changed} test file(s); run `fuse test` again to check them"
            )
        }
    );
    Ok(())
}
