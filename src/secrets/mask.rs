//! Masking: the secret values a run has loaded are replaced by `***` wherever
//! they appear (also inside longer strings) in node outputs, errors and log
//! lines, before any of them reaches an observer, the database or the terminal.

use base64::Engine as _;
use serde_json::Value;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: masking every `a` or `12` would
/// garble all output and hide nothing worth hiding.
pub const MIN_LEN: usize = 4;

/// A set of secret strings, longest first (so a secret that contains another is
/// replaced whole).
#[derive(Debug, Clone, Default)]
pub struct Masks {
    values: Vec<String>,
}

impl Masks {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds a secret and the forms it commonly takes on the wire: URL-encoded
    /// (query strings, forms) and JSON-escaped.
    pub fn add(&mut self, secret: &str) {
        if secret.chars().count() < MIN_LEN {
            return;
        }
        let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let percent = encoded.replace('+', "%20");
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(secret)
            .to_string();
        for form in [secret.to_string(), encoded, percent, json] {
            if !self.values.contains(&form) {
                self.values.push(form);
            }
        }
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Adds every secret of `other`.
    pub fn extend(&mut self, other: &Masks) {
        for v in &other.values {
            if !self.values.contains(v) {
                self.values.push(v.clone());
            }
        }
        self.values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// Adds the `Authorization: Basic` form of a user name and password.
    pub fn add_basic(&mut self, username: &str, password: &str) {
        if password.chars().count() >= MIN_LEN {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
            self.add(&token);
        }
    }

    /// `text` with every secret replaced, or `None` when it holds none.
    pub fn apply(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for secret in &self.values {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(secret.as_str()) {
                out = Some(current.replace(secret.as_str(), MASK));
            }
        }
        out
    }

    /// Masks a string in place.
    pub fn mask_string(&self, text: &mut String) {
        if let Some(masked) = self.apply(text) {
            *text = masked;
        }
    }

    /// Masks every string (and object key) inside a JSON value, in place.
    pub fn mask_value(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.mask_string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.mask_value(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.apply(k).is_some()) {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.mask_value(&mut v);
                        map.insert(self.apply(&k).unwrap_or(k), v);
                    }
                } else {
                    map.values_mut().for_each(|v| self.mask_value(v));
                }
            }
            _ => {}
        }
    }

    /// Whether `text` contains any secret.
    pub fn leaks(&self, text: &str) -> bool {
        self.values.iter().any(|s| text.contains(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_inside_longer_strings_and_encoded_forms() {
        let mut m = Masks::default();
        m.add("s3cr3t&pass word");
        m.add("abc");
        assert_eq!(
            m.apply("token=s3cr3t&pass word!").as_deref(),
            Some("token=***!")
        );
        assert_eq!(
            m.apply("https://x/?k=s3cr3t%26pass+word").as_deref(),
            Some("https://x/?k=***")
        );
        assert_eq!(m.apply("abc is too short to mask"), None);
        let mut v = json!({"a": ["x s3cr3t&pass word y"], "s3cr3t&pass word": 1, "n": 2});
        m.mask_value(&mut v);
        assert_eq!(v, json!({"a": ["x *** y"], "***": 1, "n": 2}));
    }

    #[test]
    fn longest_secret_wins() {
        let mut m = Masks::default();
        m.add("secret");
        m.add("secret-and-more");
        assert_eq!(m.apply("[secret-and-more]").as_deref(), Some("[***]"));
    }

    #[test]
    fn basic_auth_header_form_is_masked() {
        let mut m = Masks::default();
        m.add_basic("ada", "hunter22");
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ada:hunter22")
        );
        assert_eq!(m.apply(&header).as_deref(), Some("Basic ***"));
    }
}
