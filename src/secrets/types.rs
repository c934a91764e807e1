//! Credential types: which fields a credential of each type has, which of them
//! are secret (masked in everything a run records or prints), and which may be
//! left out.

/// One field of a credential type.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub secret: bool,
    pub required: bool,
}

/// A credential type.
#[derive(Debug, Clone, Copy)]
pub struct TypeSpec {
    pub name: &'static str,
    pub help: &'static str,
    pub fields: &'static [FieldSpec],
}

const fn secret(name: &'static str, help: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        help,
        secret: true,
        required: true,
    }
}

const fn plain(name: &'static str, help: &'static str, required: bool) -> FieldSpec {
    FieldSpec {
        name,
        help,
        secret: false,
        required,
    }
}

/// The built-in credential types (plugins add their own with the packages issue).
pub const BUILTIN: &[TypeSpec] = &[
    TypeSpec {
        name: "bearer",
        help: "a token sent as `Authorization: Bearer <token>`",
        fields: &[secret("token", "the token")],
    },
    TypeSpec {
        name: "basic",
        help: "HTTP basic authentication",
        fields: &[
            plain("username", "user name", true),
            secret("password", "password"),
        ],
    },
    TypeSpec {
        name: "header",
        help: "one request header holding a secret, e.g. X-Api-Token",
        fields: &[
            plain("name", "header name", true),
            secret("value", "header value"),
        ],
    },
    TypeSpec {
        name: "api_key",
        help: "an API key sent in a header (default X-API-Key) or a query parameter",
        fields: &[
            secret("key", "the API key"),
            plain(
                "name",
                "header or parameter name (default X-API-Key)",
                false,
            ),
            plain("in", "header (default) or query", false),
        ],
    },
    TypeSpec {
        name: "openai",
        help: "an OpenAI-compatible API (OpenAI, llama.cpp, Ollama, vLLM, …)",
        fields: &[
            secret("api_key", "API key"),
            plain(
                "base_url",
                "API base URL (default from [llm] base_url)",
                false,
            ),
            plain("organization", "OpenAI organization id", false),
        ],
    },
    TypeSpec {
        name: "anthropic",
        help: "the Anthropic Messages API (llm.chat / llm.agent with provider: anthropic)",
        fields: &[
            secret("api_key", "API key"),
            plain(
                "base_url",
                "API base URL (default https://api.anthropic.com/v1)",
                false,
            ),
        ],
    },
];

/// A built-in type by name.
pub fn find(name: &str) -> Option<&'static TypeSpec> {
    BUILTIN.iter().find(|t| t.name == name)
}

/// A credential type from anywhere: built-in or declared by a plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredType {
    pub name: String,
    pub help: String,
    /// The plugin that declares it (`None`: built-in).
    pub plugin: Option<String>,
    pub fields: Vec<CredField>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CredField {
    pub name: String,
    pub help: String,
    pub secret: bool,
    pub required: bool,
}

impl From<&TypeSpec> for CredType {
    fn from(t: &TypeSpec) -> CredType {
        CredType {
            name: t.name.into(),
            help: t.help.into(),
            plugin: None,
            fields: t
                .fields
                .iter()
                .map(|f| CredField {
                    name: f.name.into(),
                    help: f.help.into(),
                    secret: f.secret,
                    required: f.required,
                })
                .collect(),
        }
    }
}

/// The built-in types followed by `extra` (plugin types; one named like a
/// built-in is left out).
pub fn with_extra(extra: Vec<CredType>) -> Vec<CredType> {
    let mut all: Vec<CredType> = BUILTIN.iter().map(CredType::from).collect();
    for t in extra {
        if !all.iter().any(|a| a.name == t.name) {
            all.push(t);
        }
    }
    all
}

/// The names of the built-in types, for error messages.
pub fn names() -> String {
    BUILTIN
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Built-in credential types plus those the home's plugins declare.
pub fn known(home: &crate::home::Home) -> Vec<CredType> {
    let mut extra = Vec::new();
    if home.is_initialized() {
        let catalog = crate::packages::Catalog::discover(
            &home.node_packages_dir(),
            &home.plugin_packages_dir(),
        );
        for plugin in &catalog.plugins {
            for t in &plugin.manifest.credential_types {
                extra.push(CredType {
                    name: t.name.clone(),
                    help: t.description.clone(),
                    plugin: Some(plugin.manifest.name.clone()),
                    fields: t
                        .fields
                        .iter()
                        .map(|f| CredField {
                            name: f.name.clone(),
                            help: f.description.clone(),
                            secret: f.secret,
                            required: f.required,
                        })
                        .collect(),
                });
            }
        }
    }
    with_extra(extra)
}
