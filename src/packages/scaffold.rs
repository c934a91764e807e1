//! A new node package from the bundled templates: what `fuse nodes new` and
//! the dashboard's New node form (`POST /api/v1/nodes`) both do.

use std::path::{Path, PathBuf};

/// The languages there is a template for.
pub const LANGUAGES: &[&str] = &["python", "sh", "rust"];

/// Longest description a new package takes.
const MAX_DESCRIPTION: usize = 300;

/// Why a package could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NewNodeError {
    /// Bad input: the name, language or description (a 400).
    #[error("{0}")]
    Invalid(String),
    /// A package of that name exists (a 409).
    #[error("{} already exists; pick another name or remove it first", .0.display())]
    Exists(PathBuf),
    #[error(transparent)]
    Failed(#[from] crate::Error),
}

/// Creates `packages_dir/name` from the `lang` template; the files written.
pub fn new_node(
    packages_dir: &Path,
    name: &str,
    lang: &str,
    description: Option<&str>,
) -> Result<Vec<PathBuf>, NewNodeError> {
    if !super::manifest::valid_name(name) {
        return Err(NewNodeError::Invalid(format!(
            "{name:?} is not a valid package name: up to 64 letters, digits, `-` and `_`, starting with a letter or digit"
        )));
    }
    if !LANGUAGES.contains(&lang) {
        return Err(NewNodeError::Invalid(format!(
            "there is no {lang:?} package template; use python, sh or rust"
        )));
    }
    let description = description.map(str::trim).filter(|d| !d.is_empty());
    if description
        .is_some_and(|d| d.chars().count() > MAX_DESCRIPTION || d.chars().any(char::is_control))
    {
        return Err(NewNodeError::Invalid(format!(
            "the description must be one line of at most {MAX_DESCRIPTION} characters"
        )));
    }
    let dest = packages_dir.join(name);
    if dest.exists() {
        return Err(NewNodeError::Exists(dest));
    }
    let files = crate::home::scaffold_package(lang, name, description, &dest)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_gets_the_description_and_a_second_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = new_node(dir.path(), "word-count", "sh", Some("Counts \"words\"")).unwrap();
        assert!(files.iter().any(|f| f.ends_with("main.sh")));
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("word-count/manifest.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest["description"], "Counts \"words\"");
        assert_eq!(manifest["name"], "word-count");
        assert!(matches!(
            new_node(dir.path(), "word-count", "sh", None),
            Err(NewNodeError::Exists(_))
        ));
        for (name, lang, description) in [
            ("../up", "sh", None),
            ("ok", "cobol", None),
            ("ok", "sh", Some("two\nlines")),
        ] {
            assert!(
                matches!(
                    new_node(dir.path(), name, lang, description),
                    Err(NewNodeError::Invalid(_))
                ),
                "{name} {lang}"
            );
        }
        assert!(!dir.path().join("ok").exists());
    }
}
