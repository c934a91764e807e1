//! `fuse creds set|list|rm|check|types|rotate-key`: the encrypted credentials.
//! Values are typed at a hidden prompt or piped as JSON on stdin, never passed
//! on the command line (where `ps` and shell history would see them).

use std::collections::BTreeMap;
use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::Globals;
use crate::home::Home;
use crate::secrets::keystore::{self, KeyStoreKind};
use crate::secrets::{Vault, types};

#[derive(Debug, clap::Subcommand)]
pub enum CredsCommand {
    /// Create or replace a credential. Values come from a hidden prompt, or as a
    /// JSON object on stdin with --stdin; never from arguments.
    #[command(
        after_help = "Examples:\n  fuse creds set github --type bearer            # asks for the token\n  echo '{\"token\": \"…\"}' | fuse creds set github --type bearer --stdin\n  fuse creds set openai --type openai\n\nTypes: see `fuse creds types`. Workflows use a credential with\n\"credential\": \"github\" on http.request / llm.chat, or {{ creds.github.token }}."
    )]
    Set {
        /// Credential name: letters, digits, `_` or `-`.
        name: String,
        /// Credential type: bearer, basic, header, api_key, openai.
        #[arg(long = "type", short = 't', value_name = "TYPE")]
        kind: Option<String>,
        /// Read the fields as a JSON object from stdin.
        #[arg(long)]
        stdin: bool,
    },
    /// List credentials: names, types, field names and dates, never values.
    #[command(
        after_help = "Examples:\n  fuse creds list\n  fuse creds list --json | jq '.credentials[].name'"
    )]
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a credential.
    #[command(after_help = "Example:\n  fuse creds rm github")]
    Rm { name: String },
    /// Check that every credential (or one) decrypts with the master key.
    #[command(after_help = "Examples:\n  fuse creds check\n  fuse creds check github --json")]
    Check {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the credential types and their fields.
    #[command(after_help = "Example:\n  fuse creds types --json")]
    Types {
        #[arg(long)]
        json: bool,
    },
    /// Re-encrypt every credential with a new master key, then replace the key.
    #[command(
        name = "rotate-key",
        after_help = "Examples:\n  fuse creds rotate-key\n  FUSE_NEW_MASTER_KEY=$(head -c 32 /dev/urandom | base64) fuse creds rotate-key   # key kept in FUSE_MASTER_KEY\n\nSafe to interrupt: every credential stays readable with the old or the new key."
    )]
    RotateKey {
        #[arg(long)]
        json: bool,
    },
}

pub fn run(globals: &Globals, command: CredsCommand) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let all_types = types::known(&home);
    if let CredsCommand::Types { json } = command {
        print_types(&all_types, json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut vault = Vault::open(&home)?;
    let names = all_types
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match command {
        CredsCommand::Set { name, kind, stdin } => {
            crate::secrets::vault::check_name(&name)?;
            let kind = match kind {
                Some(k) => k,
                None if !stdin && super::stdin_is_tty() => ask_type(&all_types)?,
                None => bail!("say which type the credential is with --type (one of {names})"),
            };
            let spec = all_types.iter().find(|t| t.name == kind).with_context(|| {
                format!("unknown credential type {kind:?}; the types are {names}")
            })?;
            let fields = if stdin {
                read_stdin_fields()?
            } else if super::stdin_is_tty() {
                prompt_fields(spec)?
            } else {
                bail!(
                    "there is no terminal to type the values at; pipe them as JSON with --stdin, e.g. \
                     echo '{{\"{}\": \"…\"}}' | fuse creds set {name} --type {kind} --stdin",
                    spec.fields[0].name
                );
            };
            let existed = vault.list()?.iter().any(|c| c.name == name);
            vault.set_typed(&name, spec, &fields)?;
            if !globals.quiet {
                let verb = if existed { "replaced" } else { "stored" };
                eprintln!(
                    "{verb} credential {name} ({kind}; fields: {}); use it with \"credential\": \"{name}\" or {{{{ creds.{name}.{} }}}}",
                    fields.keys().cloned().collect::<Vec<_>>().join(", "),
                    spec.fields[0].name
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CredsCommand::List { json } => {
            let list = vault.list()?;
            let store = store_description(&home, vault.key_store());
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "key_store": vault.key_store().as_str(),
                        "credentials": list,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            outln!("master key: {store}");
            if list.is_empty() {
                outln!("no credentials yet; add one with `fuse creds set NAME --type TYPE`");
                return Ok(ExitCode::SUCCESS);
            }
            let width = list.iter().map(|c| c.name.len()).max().unwrap_or(4).max(4);
            outln!(
                "{:<width$}  {:<8}  {:<28}  {:<19}  LAST USED",
                "NAME",
                "TYPE",
                "FIELDS",
                "UPDATED"
            );
            for c in list {
                outln!(
                    "{:<width$}  {:<8}  {:<28}  {:<19}  {}",
                    c.name,
                    c.kind,
                    c.fields.join(","),
                    super::runs::local_time(c.updated_at),
                    c.last_used_at
                        .map(super::runs::local_time)
                        .unwrap_or_else(|| "never".into())
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CredsCommand::Rm { name } => {
            if vault.remove(&name)? {
                if !globals.quiet {
                    eprintln!("removed credential {name}");
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("error: there is no credential {name:?}; see `fuse creds list`");
                Ok(ExitCode::from(1))
            }
        }
        CredsCommand::Check { name, json } => {
            let results = match name {
                Some(n) => vec![(n.clone(), vault.get(&n).map(|_| ()))],
                None => vault.check()?,
            };
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            if json {
                let rows: Vec<Value> = results
                    .iter()
                    .map(|(n, r)| match r {
                        Ok(()) => json!({"name": n, "ok": true}),
                        Err(e) => json!({"name": n, "ok": false, "error": e.to_string()}),
                    })
                    .collect();
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"credentials": rows, "failed": failed}))?
                );
            } else {
                for (n, r) in &results {
                    match r {
                        Ok(()) => outln!("ok      {n}"),
                        Err(e) => outln!("FAILED  {n}: {e}"),
                    }
                }
                if results.is_empty() {
                    outln!("no credentials to check");
                }
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        CredsCommand::RotateKey { json } => {
            let count = vault.rotate_key()?;
            let store = store_description(&home, vault.key_store());
            if json {
                outln!(
                    "{}",
                    json!({"reencrypted": count, "key_store": vault.key_store().as_str()})
                );
            } else {
                outln!("re-encrypted {count} credential(s) with a new master key, now in {store}");
                if vault.key_store() == KeyStoreKind::Env {
                    outln!(
                        "set {} to the value of {} now: the old key no longer opens anything",
                        keystore::ENV_VAR,
                        keystore::NEXT_ENV_VAR
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        CredsCommand::Types { .. } => Ok(ExitCode::SUCCESS),
    }
}

fn store_description(home: &Home, kind: KeyStoreKind) -> String {
    match kind {
        KeyStoreKind::Env => format!("the {} environment variable", keystore::ENV_VAR),
        KeyStoreKind::Keyring => "the OS keyring".into(),
        KeyStoreKind::File => format!(
            "the key file {} (no OS keyring)",
            keystore::key_file(home.root()).display()
        ),
    }
}

fn print_types(all: &[types::CredType], json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    for t in all {
        match &t.plugin {
            Some(p) => outln!("{}: {} (plugin {p})", t.name, t.help),
            None => outln!("{}: {}", t.name, t.help),
        }
        for f in &t.fields {
            outln!(
                "  {:<14} {}{}{}",
                f.name,
                f.help,
                if f.secret { " (secret)" } else { "" },
                if f.required { "" } else { " (optional)" }
            );
        }
    }
    Ok(())
}

fn ask_type(all: &[types::CredType]) -> anyhow::Result<String> {
    let items: Vec<String> = all
        .iter()
        .map(|t| format!("{:<8} {}", t.name, t.help))
        .collect();
    let choice = dialoguer::Select::new()
        .with_prompt("Credential type")
        .items(&items)
        .default(0)
        .interact()
        .context("no answer for the credential type")?;
    Ok(all[choice].name.clone())
}

fn prompt_fields(spec: &types::CredType) -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let mut fields = BTreeMap::new();
    for f in &spec.fields {
        let label = if f.required {
            format!("{} ({})", f.name, f.help)
        } else {
            format!("{} ({}; Enter to skip)", f.name, f.help)
        };
        let value = if f.secret {
            Zeroizing::new(
                dialoguer::Password::new()
                    .with_prompt(label)
                    .allow_empty_password(!f.required)
                    .interact()
                    .context("no value typed")?,
            )
        } else {
            Zeroizing::new(
                dialoguer::Input::<String>::new()
                    .with_prompt(label)
                    .allow_empty(!f.required)
                    .interact_text()
                    .context("no value typed")?,
            )
        };
        if !value.is_empty() {
            fields.insert(f.name.clone(), value);
        }
    }
    Ok(fields)
}

fn read_stdin_fields() -> anyhow::Result<BTreeMap<String, Zeroizing<String>>> {
    let mut text = Zeroizing::new(String::new());
    std::io::stdin()
        .take(1024 * 1024)
        .read_to_string(&mut text)
        .context("cannot read the fields from stdin")?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("stdin is not a JSON object of fields ({e}); e.g. {{\"token\": \"…\"}}")
    })?;
    let Value::Object(map) = &value else {
        bail!("stdin must be a JSON object of fields, e.g. {{\"token\": \"…\"}}");
    };
    let mut fields = BTreeMap::new();
    for (k, v) in map {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            Value::Null => continue,
            _ => bail!("field `{k}` must be a string"),
        };
        if !text.is_empty() {
            fields.insert(k.clone(), Zeroizing::new(text));
        }
    }
    Ok(fields)
}
