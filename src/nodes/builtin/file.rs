//! `file.read` and `file.write`. Relative paths resolve against the workflow's
//! folder.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{InputSpec, Node, any_output, boxed, builtin, object_schema};
use crate::nodes::{NodeError, NodeOutput};

/// Files larger than this are refused by `file.read`.
const MAX_READ: u64 = 256 * 1024 * 1024;

pub(super) fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        builtin(
            "file.read",
            "Reads a file as text, JSON, or a list of lines.",
            vec![
                InputSpec::required(
                    "path",
                    "string",
                    "file to read (relative to the workflow's folder)",
                ),
                InputSpec::optional("format", "string", "text (default), json or lines"),
            ],
            any_output(),
            |ctx| {
                boxed(async move {
                    let path = ctx.path("path")?;
                    let format = ctx.opt_str("format")?.unwrap_or("text").to_string();
                    let meta = tokio::fs::metadata(&path).await.map_err(|e| {
                        NodeError::io(format!("cannot read {}: {e}", path.display()))
                    })?;
                    if meta.len() > MAX_READ {
                        return Err(NodeError::io(format!(
                            "{} is {} bytes; file.read handles at most {MAX_READ}",
                            path.display(),
                            meta.len()
                        )));
                    }
                    let text = tokio::fs::read_to_string(&path).await.map_err(|e| {
                        NodeError::io(format!("cannot read {} as UTF-8 text: {e}", path.display()))
                    })?;
                    let value = match format.as_str() {
                        "text" => Value::String(text),
                        "lines" => Value::Array(
                            text.lines().map(|l| Value::String(l.to_string())).collect(),
                        ),
                        "json" => serde_json::from_str(&text).map_err(|e| {
                            NodeError::io(format!("{} is not valid JSON: {e}", path.display()))
                        })?,
                        other => {
                            return Err(NodeError::input(format!(
                                "format {other:?} is not one of text, json, lines"
                            )));
                        }
                    };
                    Ok(NodeOutput::new(value))
                })
            },
        ),
        builtin(
            "file.write",
            "Writes `content` to a file (JSON for non-strings), creating folders; outputs {path, bytes}.",
            vec![
                InputSpec::required(
                    "path",
                    "string",
                    "file to write (relative to the workflow's folder)",
                ),
                InputSpec::required("content", "any", "text, or any JSON value"),
                InputSpec::optional("append", "boolean", "append instead of replacing"),
            ],
            object_schema(&[("path", "string"), ("bytes", "integer")]),
            |ctx| {
                boxed(async move {
                    let path = ctx.path("path")?;
                    let append = ctx.bool_or("append", false)?;
                    let bytes = match ctx.value("content")? {
                        Value::String(s) => s.clone().into_bytes(),
                        other => serde_json::to_vec_pretty(other).map_err(|e| {
                            NodeError::other(format!("content cannot be written as JSON: {e}"))
                        })?,
                    };
                    if let Some(parent) = path.parent() {
                        tokio::fs::create_dir_all(parent).await.map_err(|e| {
                            NodeError::io(format!("cannot create {}: {e}", parent.display()))
                        })?;
                    }
                    let write = async {
                        use tokio::io::AsyncWriteExt;
                        let mut file = tokio::fs::OpenOptions::new()
                            .create(true)
                            .write(true)
                            .append(append)
                            .truncate(!append)
                            .open(&path)
                            .await?;
                        file.write_all(&bytes).await?;
                        file.flush().await
                    };
                    write.await.map_err(|e| {
                        NodeError::io(format!("cannot write {}: {e}", path.display()))
                    })?;
                    Ok(NodeOutput::new(
                        json!({"path": path.display().to_string(), "bytes": bytes.len()}),
                    ))
                })
            },
        ),
    ]
}
