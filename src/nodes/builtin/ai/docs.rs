//! Documents for retrieval: `doc.load` (text, Markdown, HTML, PDF, folders),
//! `text.split` (recursive, Markdown-aware chunks) and `html.extract` (CSS
//! selectors and a page's main text).
//!
//! A document is `{id, text, metadata}`; `metadata` has at least `path` and
//! `title` for loaded files (and `page` for a PDF page).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::nodes::{NodeCtx, NodeError, NodeOutput, wrong_type};

/// Files a folder load reads at most (default; `max_files` changes it).
const DEFAULT_MAX_FILES: u64 = 1000;
/// Largest file read (default; `max_bytes` changes it).
const DEFAULT_MAX_BYTES: u64 = 50 * 1024 * 1024;

/// What a file is read as.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
}

impl Format {
    fn of(path: &Path) -> Format {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("md" | "markdown" | "mdx") => Format::Markdown,
            Some("html" | "htm" | "xhtml") => Format::Html,
            Some("pdf") => Format::Pdf,
            _ => Format::Text,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Html => "html",
            Format::Pdf => "pdf",
        }
    }

    fn parse(s: &str) -> Result<Format, NodeError> {
        Ok(match s {
            "text" | "txt" => Format::Text,
            "markdown" | "md" => Format::Markdown,
            "html" => Format::Html,
            "pdf" => Format::Pdf,
            other => {
                return Err(NodeError::input(format!(
                    "unknown format {other:?}; use text, markdown, html or pdf (or leave it out to go by the extension)"
                )));
            }
        })
    }
}

fn count_input(ctx: &NodeCtx, name: &str, default: u64) -> Result<u64, NodeError> {
    match ctx.param(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| wrong_type(name, "a whole number above 0", v)),
    }
}

/// `doc.load`.
pub async fn load(ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let path = ctx.path("path")?;
    let glob = ctx.opt_str("glob")?.map(str::to_string);
    let format = ctx.opt_str("format")?.map(Format::parse).transpose()?;
    let max_files = count_input(&ctx, "max_files", DEFAULT_MAX_FILES)?;
    let max_bytes = count_input(&ctx, "max_bytes", DEFAULT_MAX_BYTES)?;
    let documents = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, NodeError> {
        let meta = std::fs::metadata(&path)
            .map_err(|e| NodeError::io(format!("cannot read {}: {e}", path.display())))?;
        let files: Vec<(PathBuf, String)> = if meta.is_dir() {
            let mut found = Vec::new();
            walk(&path, &path, glob.as_deref(), max_files, &mut found)?;
            found.sort();
            found
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![(path.clone(), name)]
        };
        let mut docs = Vec::new();
        for (file, rel) in files {
            docs.extend(read_file(&file, &rel, format, max_bytes)?);
        }
        Ok(docs)
    })
    .await
    .map_err(|e| NodeError::other(format!("the load task failed: {e}")))??;
    Ok(NodeOutput::new(
        json!({"count": documents.len(), "documents": documents}),
    ))
}

/// Files under `dir` matching `glob` (against the path relative to `root`,
/// `/`-separated); hidden files and folders are skipped; symlinks are not followed.
fn walk(
    root: &Path,
    dir: &Path,
    glob: Option<&str>,
    max_files: u64,
    out: &mut Vec<(PathBuf, String)>,
) -> Result<(), NodeError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| NodeError::io(format!("cannot list {}: {e}", dir.display())))?;
    let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let path = entry.path();
        if kind.is_dir() {
            walk(root, &path, glob, max_files, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| {
                    p.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                })
                .unwrap_or(name.clone());
            let wanted = match glob {
                Some(g) => glob_path(g, &rel),
                None => true,
            };
            if wanted {
                if out.len() as u64 >= max_files {
                    return Err(NodeError::input(format!(
                        "{} holds more than {max_files} matching files; narrow `glob` or raise `max_files`",
                        root.display()
                    )));
                }
                out.push((path, rel));
            }
        }
    }
    Ok(())
}

/// A glob over a relative path: `*` within a segment, `**` across segments,
/// `?` one character; `{a,b}` alternatives.
pub fn glob_path(pattern: &str, path: &str) -> bool {
    if let (Some(open), Some(close)) = (pattern.find('{'), pattern.find('}'))
        && open < close
    {
        let (head, rest) = pattern.split_at(open);
        let (alts, tail) = rest[1..].split_at(close - open - 1);
        return alts
            .split(',')
            .any(|alt| glob_path(&format!("{head}{alt}{}", &tail[1..]), path));
    }
    let p: Vec<&str> = pattern.split('/').collect();
    let s: Vec<&str> = path.split('/').collect();
    segments(&p, &s)
}

fn segments(p: &[&str], s: &[&str]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((&"**", rest)) => (0..=s.len()).any(|i| segments(rest, &s[i..])),
        Some((first, rest)) => {
            !s.is_empty()
                && crate::daemon::files::glob_match(first, s[0])
                && segments(rest, &s[1..])
        }
    }
}

fn read_file(
    file: &Path,
    rel: &str,
    format: Option<Format>,
    max_bytes: u64,
) -> Result<Vec<Value>, NodeError> {
    let bytes = crate::files::read_regular(file, max_bytes).map_err(|e| {
        NodeError::io(format!(
            "cannot read {} (at most {max_bytes} bytes; `max_bytes` changes it): {e}",
            file.display()
        ))
    })?;
    let format = format.unwrap_or_else(|| Format::of(file));
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| rel.to_string());
    let meta = |title: &str, page: Option<usize>| {
        let mut m =
            json!({"path": rel, "title": title, "format": format.name(), "bytes": bytes.len()});
        if let Some(p) = page {
            m["page"] = json!(p);
        }
        m
    };
    let text = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            NodeError::input(format!(
                "{} is not UTF-8 text; give `format` if it is a PDF or HTML file",
                file.display()
            ))
        })
    };
    Ok(match format {
        Format::Text => {
            let body = text(&bytes)?;
            vec![json!({"id": rel, "text": body, "metadata": meta(&stem, None)})]
        }
        Format::Markdown => {
            let body = text(&bytes)?;
            let title = body
                .lines()
                .find_map(|l| l.strip_prefix("# "))
                .map(|t| t.trim().to_string())
                .unwrap_or(stem);
            vec![json!({"id": rel, "text": body, "metadata": meta(&title, None)})]
        }
        Format::Html => {
            let body = text(&bytes)?;
            let page = scraper::Html::parse_document(&body);
            let title = select_text(&page, "title").unwrap_or(stem);
            vec![json!({"id": rel, "text": main_text(&page), "metadata": meta(&title, None)})]
        }
        Format::Pdf => {
            let pages = pdf_pages(&bytes).map_err(|e| {
                NodeError::input(format!("cannot read {} as a PDF: {e}", file.display()))
            })?;
            pages
                .into_iter()
                .enumerate()
                .filter(|(_, t)| !t.trim().is_empty())
                .map(|(i, t)| {
                    json!({"id": format!("{rel}#page={}", i + 1), "text": clean_whitespace(&t),
                           "metadata": meta(&stem, Some(i + 1))})
                })
                .collect()
        }
    })
}

/// The text of each page; a PDF the parser chokes on is an error, not a panic.
fn pdf_pages(bytes: &[u8]) -> Result<Vec<String>, String> {
    let bytes = bytes.to_vec();
    match std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem_by_pages(&bytes)) {
        Ok(Ok(pages)) => Ok(pages),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the PDF parser failed on this file".into()),
    }
}

/// Runs of spaces and tabs become one space; more than two line breaks become two.
fn clean_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_lines += 1;
            if blank_lines > 1 {
                continue;
            }
        } else {
            blank_lines = 0;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.trim().to_string()
}

fn select_text(page: &scraper::Html, selector: &str) -> Option<String> {
    let sel = scraper::Selector::parse(selector).ok()?;
    let text = page.select(&sel).next()?.text().collect::<String>();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    (!text.is_empty()).then_some(text)
}

/// Elements whose text is never content.
const NOT_CONTENT: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg",
    "iframe", "head",
];

/// A page's main text: the `article`, else `main`, else `body`, without
/// scripts, styles, navigation, headers, footers and asides; blocks on their
/// own lines.
pub fn main_text(page: &scraper::Html) -> String {
    let root = ["article", "main", "[role=main]", "body"]
        .iter()
        .filter_map(|s| scraper::Selector::parse(s).ok())
        .find_map(|sel| page.select(&sel).next());
    let mut out = String::new();
    match root {
        Some(el) => collect_text(*el, &mut out),
        None => collect_text(page.tree.root(), &mut out),
    }
    clean_whitespace(&out)
}

fn collect_text(node: ego_tree::NodeRef<'_, scraper::Node>, out: &mut String) {
    for child in node.children() {
        match child.value() {
            scraper::Node::Text(t) => out.push_str(t),
            scraper::Node::Element(e) => {
                let name = e.name();
                if NOT_CONTENT.contains(&name) {
                    continue;
                }
                let block = matches!(
                    name,
                    "p" | "div"
                        | "section"
                        | "article"
                        | "li"
                        | "ul"
                        | "ol"
                        | "br"
                        | "tr"
                        | "table"
                        | "h1"
                        | "h2"
                        | "h3"
                        | "h4"
                        | "h5"
                        | "h6"
                        | "pre"
                        | "blockquote"
                        | "main"
                );
                if block {
                    out.push('\n');
                }
                collect_text(child, out);
                if block {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
}

/// `html.extract`.
pub async fn extract(ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let html = match ctx.param("html") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong_type("html", "a string of HTML", other)),
        None => match &*ctx.input {
            Value::String(s) => s.clone(),
            Value::Object(m) => match m.get("body").or_else(|| m.get("html")) {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    return Err(NodeError::input(
                        "no HTML: give `html`, or send a string (or an http.request output with a text body) from upstream",
                    ));
                }
            },
            _ => {
                return Err(NodeError::input(
                    "no HTML: give `html`, or send a string from upstream",
                ));
            }
        },
    };
    let selectors = match ctx.param("selectors") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(wrong_type(
                "selectors",
                "an object of name → CSS selector (or {selector, attribute?, html?, all?})",
                other,
            ));
        }
    };
    let want_main = ctx.bool_or("main_text", selectors.is_empty())?;
    let mut out = Map::new();
    // Parse in the blocking pool: a large page takes a while.
    let result = tokio::task::spawn_blocking(move || -> Result<Map<String, Value>, NodeError> {
        let page = scraper::Html::parse_document(&html);
        for (name, spec) in &selectors {
            let (selector, attribute, as_html, all) = match spec {
                Value::String(s) => (s.clone(), None, false, false),
                Value::Object(o) => {
                    if let Some(k) = o
                        .keys()
                        .find(|k| !["selector", "attribute", "html", "all"].contains(&k.as_str()))
                    {
                        return Err(NodeError::input(format!(
                            "selectors.{name} has an unknown key {k:?}; it takes selector, attribute, html and all"
                        )));
                    }
                    let selector = o
                        .get("selector")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            NodeError::input(format!("selectors.{name} needs a `selector`"))
                        })?
                        .to_string();
                    (
                        selector,
                        o.get("attribute").and_then(Value::as_str).map(str::to_string),
                        o.get("html").and_then(Value::as_bool).unwrap_or(false),
                        o.get("all").and_then(Value::as_bool).unwrap_or(false),
                    )
                }
                other => {
                    return Err(wrong_type(
                        &format!("selectors.{name}"),
                        "a CSS selector or {selector, attribute?, html?, all?}",
                        other,
                    ));
                }
            };
            let sel = scraper::Selector::parse(&selector).map_err(|e| {
                NodeError::input(format!(
                    "selectors.{name}: {selector:?} is not a valid CSS selector: {e}"
                ))
            })?;
            let value_of = |el: scraper::ElementRef<'_>| -> Value {
                if let Some(a) = &attribute {
                    return el.value().attr(a).map_or(Value::Null, |v| json!(v));
                }
                if as_html {
                    return json!(el.html());
                }
                json!(el.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" "))
            };
            let value = if all {
                Value::Array(page.select(&sel).map(value_of).collect())
            } else {
                page.select(&sel).next().map_or(Value::Null, value_of)
            };
            out.insert(name.clone(), value);
        }
        if want_main {
            out.insert("title".into(), select_text(&page, "title").map_or(Value::Null, |t| json!(t)));
            out.insert("text".into(), json!(main_text(&page)));
        }
        Ok(out)
    })
    .await
    .map_err(|e| NodeError::other(format!("the HTML task failed: {e}")))??;
    Ok(NodeOutput::new(Value::Object(result)))
}

/// The documents a node works on: its `documents` input, else the input's
/// `documents`/`chunks`/`matches`, else the input itself when it is an array;
/// a string becomes one document.
pub fn documents_of(ctx: &NodeCtx, input_name: &str) -> Result<Vec<Value>, NodeError> {
    let given = match ctx.param(input_name) {
        Some(v) if !v.is_null() => v.clone(),
        _ => match &*ctx.input {
            Value::Object(m) => m
                .get("documents")
                .or_else(|| m.get("chunks"))
                .or_else(|| m.get("matches"))
                .cloned()
                .or_else(|| m.get("text").map(|t| json!([{"text": t}])))
                .unwrap_or(Value::Null),
            other => other.clone(),
        },
    };
    let list = match given {
        Value::Array(list) => list,
        Value::String(s) => vec![json!({"text": s})],
        Value::Null => {
            return Err(NodeError::input(format!(
                "no documents: give `{input_name}`, or send {{documents: [...]}} (doc.load's output) from upstream"
            )));
        }
        other => {
            return Err(wrong_type(
                input_name,
                "an array of {text, metadata?, id?}",
                &other,
            ));
        }
    };
    list.into_iter()
        .enumerate()
        .map(|(i, d)| match d {
            Value::String(s) => Ok(json!({"text": s})),
            Value::Object(m) if m.get("text").is_some_and(Value::is_string) => Ok(Value::Object(m)),
            other => Err(NodeError::input(format!(
                "{input_name}[{i}] must be a string or an object with a `text` string, not {}",
                crate::nodes::json_type(&other)
            ))),
        })
        .collect()
}

/// `text.split`.
pub async fn split(ctx: NodeCtx) -> Result<NodeOutput, NodeError> {
    let docs = documents_of(&ctx, "documents")?;
    let size = count_input(&ctx, "chunk_size", 1000)? as usize;
    let overlap = match ctx.param("chunk_overlap") {
        None | Some(Value::Null) => (size / 5).min(200),
        Some(v) => v
            .as_u64()
            .ok_or_else(|| wrong_type("chunk_overlap", "a whole number", v))?
            as usize,
    };
    if overlap >= size {
        return Err(NodeError::input(format!(
            "chunk_overlap ({overlap}) must be smaller than chunk_size ({size})"
        )));
    }
    let markdown = match ctx.param("markdown") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(other) => return Err(wrong_type("markdown", "true or false", other)),
    };
    let mut chunks = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let text = doc["text"].as_str().unwrap_or_default();
        let metadata = doc.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let id = doc
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("doc{d}"), str::to_string);
        let is_md = markdown.unwrap_or_else(|| metadata["format"] == "markdown");
        let sections = if is_md {
            markdown_sections(text)
        } else {
            vec![(String::new(), text.to_string())]
        };
        let mut n = 0;
        for (heading, body) in sections {
            for piece in split_text(&body, size, overlap) {
                if piece.trim().is_empty() {
                    continue;
                }
                let mut meta = metadata.clone();
                if !meta.is_object() {
                    meta = json!({});
                }
                meta["chunk"] = json!(n);
                meta["source_id"] = json!(id);
                if !heading.is_empty() {
                    meta["section"] = json!(heading);
                }
                chunks.push(json!({"id": format!("{id}#{n}"), "text": piece, "metadata": meta}));
                n += 1;
            }
        }
    }
    Ok(NodeOutput::new(
        json!({"count": chunks.len(), "chunks": chunks}),
    ))
}

/// Markdown split at headings: (heading path like "Intro > Setup", text).
fn markdown_sections(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut path: Vec<(usize, String)> = Vec::new();
    let mut current = String::new();
    let mut heading = String::new();
    let mut fenced = false;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let level = line.chars().take_while(|c| *c == '#').count();
        let is_heading = !fenced && (1..=6).contains(&level) && line[level..].starts_with(' ');
        if is_heading {
            if !current.trim().is_empty() {
                out.push((heading.clone(), std::mem::take(&mut current)));
            }
            current.clear();
            path.retain(|(l, _)| *l < level);
            path.push((level, line[level..].trim().to_string()));
            heading = path
                .iter()
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>()
                .join(" > ");
        }
        current.push_str(line);
    }
    if !current.trim().is_empty() {
        out.push((heading, current));
    }
    out
}

const SEPARATORS: &[&str] = &["\n\n", "\n", ". ", " ", ""];

/// Splits text into pieces of at most `size` characters, cutting at the
/// coarsest separator that works (paragraphs, lines, sentences, words,
/// characters), with about `overlap` characters repeated between pieces.
pub fn split_text(text: &str, size: usize, overlap: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    atoms(text, size, SEPARATORS, &mut pieces);
    merge(&pieces, size, overlap)
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// Pieces no longer than `size`, each ending with its separator.
fn atoms(text: &str, size: usize, seps: &[&str], out: &mut Vec<String>) {
    if chars(text) <= size {
        out.push(text.to_string());
        return;
    }
    let Some((sep, rest)) = seps
        .iter()
        .position(|s| s.is_empty() || text.contains(*s))
        .map(|i| (seps[i], &seps[i + 1..]))
    else {
        out.push(text.to_string());
        return;
    };
    if sep.is_empty() {
        let cs: Vec<char> = text.chars().collect();
        for c in cs.chunks(size) {
            out.push(c.iter().collect());
        }
        return;
    }
    for part in text.split_inclusive(sep) {
        if chars(part) <= size {
            out.push(part.to_string());
        } else {
            atoms(part, size, rest, out);
        }
    }
}

fn merge(atoms: &[String], size: usize, overlap: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut window: std::collections::VecDeque<&str> = Default::default();
    let mut len = 0;
    for atom in atoms {
        let n = chars(atom);
        if len + n > size && len > 0 {
            chunks.push(
                window
                    .iter()
                    .copied()
                    .collect::<String>()
                    .trim()
                    .to_string(),
            );
            // Keep the tail (at most `overlap` characters) as the next chunk's start.
            while len > overlap || (len + n > size && len > 0) {
                let Some(first) = window.pop_front() else {
                    break;
                };
                len -= chars(first);
            }
        }
        window.push_back(atom);
        len += n;
    }
    if len > 0 {
        let last = window
            .iter()
            .copied()
            .collect::<String>()
            .trim()
            .to_string();
        if !last.is_empty() {
            chunks.push(last);
        }
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_within_size_and_overlap() {
        let text =
            "One two three. Four five six. Seven eight nine.\n\nTen eleven twelve. Thirteen.";
        let chunks = split_text(text, 30, 10);
        assert!(chunks.iter().all(|c| c.chars().count() <= 30), "{chunks:?}");
        assert!(chunks.len() >= 3, "{chunks:?}");
        assert!(chunks[0].starts_with("One two three."));
        // Every word is in some chunk.
        for w in text.split_whitespace() {
            assert!(chunks.iter().any(|c| c.contains(w)), "{w} lost: {chunks:?}");
        }
    }

    #[test]
    fn a_long_word_is_cut_by_characters() {
        let chunks = split_text(&"x".repeat(25), 10, 0);
        assert_eq!(chunks, vec!["x".repeat(10), "x".repeat(10), "x".repeat(5)]);
    }

    #[test]
    fn markdown_sections_carry_their_heading_path() {
        let md = "# Guide\nintro\n## Setup\nsteps\n```\n# not a heading\n```\n## Use\nmore\n";
        let s = markdown_sections(md);
        let headings: Vec<&str> = s.iter().map(|(h, _)| h.as_str()).collect();
        assert_eq!(headings, vec!["Guide", "Guide > Setup", "Guide > Use"]);
        assert!(s[1].1.contains("# not a heading"));
    }

    #[test]
    fn globs_match_relative_paths() {
        assert!(glob_path("**/*.md", "a/b/c.md"));
        assert!(glob_path("**/*.md", "c.md"));
        assert!(glob_path("*.{md,pdf}", "x.pdf"));
        assert!(!glob_path("*.md", "a/c.md"));
        assert!(glob_path("docs/*.txt", "docs/a.txt"));
    }
}
