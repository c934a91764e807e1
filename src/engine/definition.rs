//! A plan's definition: the workflow JSON it was made from.
//!
//! Most definitions are held as text. A large workflow file is read as a
//! stream instead, and its text is not held while it runs (it would be the
//! largest thing a 100,000-node run holds): what needs the text reads it back
//! from the file, checked against the hash it had when it was planned.

use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// Files at least this long are read as a stream ([`crate::Engine::load`]);
/// smaller ones cost little to hold, and parse fastest from memory.
pub const STREAMED_FILE: u64 = 4 * 1024 * 1024;

/// The workflow JSON a plan was made from.
#[derive(Clone)]
pub enum Definition {
    Text(Arc<String>),
    /// A file read as a stream, to be read again when needed.
    File(Arc<DefinitionFile>),
}

/// A definition left in its file.
pub struct DefinitionFile {
    pub path: PathBuf,
    pub len: u64,
    /// sha256 (hex) of the text as it was planned.
    pub hash: String,
}

/// The length and where it is, not the text (which may be megabytes).
impl std::fmt::Debug for Definition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Definition::Text(text) => write!(f, "Definition::Text({} bytes)", text.len()),
            Definition::File(file) => write!(
                f,
                "Definition::File({}, {} bytes)",
                file.path.display(),
                file.len
            ),
        }
    }
}

impl Definition {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Definition::Text(text) => text.len() as u64,
            Definition::File(file) => file.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text: held, or read back from its file (an error if the file no
    /// longer holds what was planned).
    pub fn text(&self) -> Result<Arc<String>, String> {
        match self {
            Definition::Text(text) => Ok(text.clone()),
            Definition::File(file) => {
                let mut bytes = Vec::with_capacity(file.len as usize);
                file.copy(|chunk, _| {
                    bytes.extend_from_slice(chunk);
                    Ok(())
                })?;
                // The same bytes as planned (the hash says so), so UTF-8.
                String::from_utf8(bytes)
                    .map(Arc::new)
                    .map_err(|e| format!("{} is not UTF-8: {e}", file.path.display()))
            }
        }
    }

    /// Hands the text to `write` piece by piece (with each piece's offset),
    /// without holding it whole.
    pub fn copy(
        &self,
        mut write: impl FnMut(&[u8], usize) -> Result<(), String>,
    ) -> Result<(), String> {
        match self {
            Definition::Text(text) => write(text.as_bytes(), 0),
            Definition::File(file) => file.copy(write),
        }
    }
}

impl DefinitionFile {
    fn copy(
        &self,
        mut write: impl FnMut(&[u8], usize) -> Result<(), String>,
    ) -> Result<(), String> {
        let changed = || {
            format!(
                "{} changed after fuse read it, so the workflow that ran is no longer in it; run it again",
                self.path.display()
            )
        };
        let mut f = std::fs::File::open(&self.path).map_err(|e| {
            format!(
                "cannot read {} again ({e}); a workflow's file must stay while it runs",
                self.path.display()
            )
        })?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = 0usize;
        loop {
            let n = f
                .read(&mut buf)
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 {
                break;
            }
            if (at + n) as u64 > self.len {
                return Err(changed());
            }
            hash.update(&buf[..n]);
            write(&buf[..n], at)?;
            at += n;
        }
        if at as u64 != self.len || crate::digest::hex(&hash.finalize()) != self.hash {
            return Err(changed());
        }
        Ok(())
    }
}

/// Reads through to a hash of what was read.
pub(crate) struct Hashing<R> {
    pub inner: R,
    pub hash: Sha256,
    pub len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            len: 0,
        }
    }
}

/// A definition's hash: sha256 of its text, in lower-case hex (what history
/// and the workflow store key definitions by).
pub fn definition_hash(text: &str) -> String {
    crate::digest::sha256_hex(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_definition(path: &std::path::Path, text: &str) -> Definition {
        Definition::File(Arc::new(DefinitionFile {
            path: path.to_path_buf(),
            len: text.len() as u64,
            hash: definition_hash(text),
        }))
    }

    #[test]
    fn a_file_definition_reads_back_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.json");
        // Pieces of 64 KB split the multi-byte characters; the text does not.
        let text = format!("{{\"description\": \"{}\"}}", "é✓".repeat(50_000));
        std::fs::write(&path, &text).unwrap();
        let definition = file_definition(&path, &text);
        assert_eq!(definition.len(), text.len() as u64);
        assert_eq!(*definition.text().unwrap(), text);
        let mut pieces = Vec::new();
        definition
            .copy(|piece, at| {
                pieces.push((at, piece.len()));
                Ok(())
            })
            .unwrap();
        assert!(pieces.len() > 1);
        assert!(pieces.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));

        // Same length, other bytes; then longer; then gone.
        std::fs::write(&path, text.replacen('✓', "✗", 1)).unwrap();
        let err = definition.text().unwrap_err();
        assert!(err.contains("changed after fuse read it"), "{err}");
        std::fs::write(&path, format!("{text} ")).unwrap();
        assert!(
            definition
                .text()
                .unwrap_err()
                .contains("changed after fuse read it")
        );
        std::fs::remove_file(&path).unwrap();
        assert!(definition.text().unwrap_err().contains("cannot read"));
    }
}
