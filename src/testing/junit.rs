//! JUnit XML (the format CI systems read): one `<testsuite>` per test file,
//! one `<testcase>` per case, `<failure>` for a case whose run differed and
//! `<error>` for one that could not run.

use std::fmt::Write;
use std::path::PathBuf;

use super::runner::{CaseResult, Verdict};

/// A test file that could not be read, shown as a suite with one error.
pub struct BrokenFile {
    pub path: PathBuf,
    pub message: String,
}

/// The report of a whole `fuse test`.
pub fn report(results: &[CaseResult], broken: &[BrokenFile], total_ms: u64) -> String {
    let mut suites: Vec<(String, Vec<&CaseResult>)> = Vec::new();
    for r in results {
        let name = r.file.display().to_string();
        match suites.last_mut() {
            Some((n, cases)) if *n == name => cases.push(r),
            _ => suites.push((name, vec![r])),
        }
    }
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"fuse test\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{}\">",
        results.len() + broken.len(),
        count(Verdict::Failed),
        count(Verdict::Error) + broken.len(),
        seconds(total_ms)
    );
    for (name, cases) in &suites {
        let of = |v: Verdict| cases.iter().filter(|r| r.verdict == v).count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" time=\"{}\">",
            escape(name),
            cases.len(),
            of(Verdict::Failed),
            of(Verdict::Error),
            seconds(cases.iter().map(|c| c.duration_ms).sum())
        );
        for case in cases {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{}\"",
                escape(name),
                escape(&case.case),
                seconds(case.duration_ms)
            );
            match case.verdict {
                Verdict::Passed => xml.push_str("/>\n"),
                Verdict::Failed => {
                    let details: Vec<String> = case
                        .differences
                        .iter()
                        .map(|d| format!("{}: {}", d.path, d.message))
                        .collect();
                    let first = details.first().cloned().unwrap_or_default();
                    let _ = write!(
                        xml,
                        ">\n      <failure message=\"{}\" type=\"expectation\">{}</failure>\n    </testcase>\n",
                        escape(&first),
                        escape(&details.join("\n"))
                    );
                }
                Verdict::Error => {
                    let message = case.error.clone().unwrap_or_default();
                    let _ = write!(
                        xml,
                        ">\n      <error message=\"{}\" type=\"case\">{}</error>\n    </testcase>\n",
                        escape(&message),
                        escape(&message)
                    );
                }
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    for file in broken {
        let name = escape(&file.path.display().to_string());
        let message = escape(&file.message);
        let _ = write!(
            xml,
            "  <testsuite name=\"{name}\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\">\n    <testcase classname=\"{name}\" name=\"(test file)\" time=\"0\">\n      <error message=\"{message}\" type=\"file\">{message}</error>\n    </testcase>\n  </testsuite>\n"
        );
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Text for an XML attribute or element: markup escaped, characters XML 1.0
/// cannot hold dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}
