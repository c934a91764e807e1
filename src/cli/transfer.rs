//! `fuse export` and `fuse import`: a home moved as one `.tar.zst` archive:
//! workflows with every version, node and plugin packages, credentials
//! sealed with an export passphrase (never the master key), and with
//! `--runs` the run history.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::Globals;
use crate::home::Home;

/// Format version of the archive.
const FORMAT: u32 = 1;
/// PBKDF2-HMAC-SHA256 rounds that turn the passphrase into the sealing key.
const ROUNDS: u32 = 600_000;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Also the run history (runs, node attempts, logs, steps, large payloads).
    #[arg(long)]
    pub runs: bool,
    /// Write here instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Read the export passphrase from this file (else FUSE_EXPORT_PASSPHRASE,
    /// else a prompt); needed when the home has credentials.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The archive `fuse export` wrote.
    pub file: PathBuf,
    /// Import into a home that already has workflows, credentials or packages
    /// (same names are replaced).
    #[arg(long)]
    pub force: bool,
    /// Read the export passphrase from this file (else FUSE_EXPORT_PASSPHRASE,
    /// else a prompt).
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    fuse_version: String,
    created_at: String,
    runs: bool,
    workflows: usize,
    credentials: usize,
}

#[derive(Serialize, Deserialize)]
struct ExportedWorkflow {
    name: String,
    enabled: bool,
    /// Every version, oldest first.
    versions: Vec<ExportedVersion>,
    current: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct ExportedVersion {
    version: i64,
    definition: String,
}

/// Credentials sealed with the passphrase.
#[derive(Serialize, Deserialize)]
struct SealedCredentials {
    kdf: String,
    rounds: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct PlainCredential {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    fields: BTreeMap<String, String>,
}

use crate::digest::hex;

fn unhex(text: &str) -> anyhow::Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .context("the archive's credentials are damaged (bad hex)")
        })
        .collect()
}

/// PBKDF2-HMAC-SHA256, one 32-byte block.
fn derive(passphrase: &[u8], salt: &[u8], rounds: u32) -> Zeroizing<[u8; 32]> {
    use hmac::{Hmac, Mac};
    type H = Hmac<sha2::Sha256>;
    let mac = |data: &[&[u8]]| -> [u8; 32] {
        let mut m = <H as Mac>::new_from_slice(passphrase).unwrap_or_else(|_| {
            // HMAC takes keys of any length; this cannot fail.
            <H as Mac>::new_from_slice(&[]).unwrap_or_else(|_| unreachable!())
        });
        for d in data {
            m.update(d);
        }
        m.finalize().into_bytes().into()
    };
    let mut u = mac(&[salt, &1u32.to_be_bytes()]);
    let mut out = Zeroizing::new(u);
    for _ in 1..rounds {
        u = mac(&[&u]);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

fn passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the passphrase file {}", f.display()))?;
        let p = text.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(
            !p.is_empty(),
            "the passphrase file {} is empty",
            f.display()
        );
        return Ok(Zeroizing::new(p));
    }
    if let Ok(p) = std::env::var("FUSE_EXPORT_PASSPHRASE")
        && !p.is_empty()
    {
        return Ok(Zeroizing::new(p));
    }
    use std::io::IsTerminal;
    anyhow::ensure!(
        std::io::stdin().is_terminal(),
        crate::Error::Setting(
            "an export passphrase is needed for the credentials: give --passphrase-file FILE or set FUSE_EXPORT_PASSPHRASE".into()
        )
    );
    let mut prompt = dialoguer::Password::new().with_prompt("Export passphrase");
    if confirm {
        prompt = prompt.with_confirmation("Again", "the two passphrases differ");
    }
    Ok(Zeroizing::new(
        prompt.interact().context("no passphrase typed")?,
    ))
}

fn add_bytes<W: Write>(tar: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, path, bytes)
        .with_context(|| format!("cannot add {path} to the archive"))
}

pub fn export(globals: &Globals, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    // Workflows and credentials where the store is (PostgreSQL with store.url).
    let store = home.open_db()?;
    use std::io::IsTerminal;
    if args.output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!(crate::Error::Setting(
            "the archive is binary: redirect it (`fuse export > home.tar.zst`) or give -o FILE"
                .into()
        ));
    }
    let mut workflows = Vec::new();
    for row in store.list_workflows()? {
        let mut versions = Vec::new();
        for v in store.workflow_versions(&row.name)?.unwrap_or_default() {
            if let Some((_, definition)) = store.workflow_version(&row.name, v.version)? {
                versions.push(ExportedVersion {
                    version: v.version,
                    definition,
                });
            }
        }
        versions.sort_by_key(|v| v.version);
        workflows.push(ExportedWorkflow {
            name: row.name,
            enabled: row.enabled,
            versions,
            current: row.version,
        });
    }
    let vault = crate::secrets::vault::Vault::open(&home)?;
    let mut plain = Vec::new();
    for info in vault.list()? {
        let c = vault.get(&info.name)?;
        plain.push(PlainCredential {
            name: c.name.clone(),
            kind: c.kind.clone(),
            fields: c
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().to_string()))
                .collect(),
        });
    }
    let sealed = if plain.is_empty() {
        None
    } else {
        let pass = passphrase(args.passphrase_file.as_deref(), true)?;
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        let key = derive(pass.as_bytes(), &salt, ROUNDS);
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(key.as_ref())
            .map_err(|e| anyhow::anyhow!("cannot seal the credentials: {e}"))?;
        let text = Zeroizing::new(serde_json::to_vec(&plain)?);
        let ciphertext = cipher
            .encrypt(&nonce.into(), text.as_slice())
            .map_err(|e| anyhow::anyhow!("cannot seal the credentials: {e}"))?;
        Some(SealedCredentials {
            kdf: "pbkdf2-hmac-sha256".into(),
            rounds: ROUNDS,
            salt: hex(&salt),
            nonce: hex(&nonce),
            ciphertext: hex(&ciphertext),
        })
    };
    let manifest = Manifest {
        format: FORMAT,
        fuse_version: env!("CARGO_PKG_VERSION").into(),
        created_at: jiff::Timestamp::now().to_string(),
        runs: args.runs,
        workflows: workflows.len(),
        credentials: plain.len(),
    };
    drop(plain);

    let sink: Box<dyn Write> = match &args.output {
        Some(f) => Box::new(
            std::fs::File::create(f).with_context(|| format!("cannot write {}", f.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let encoder = zstd::Encoder::new(sink, 3)?.auto_finish();
    let mut tar = tar::Builder::new(encoder);
    add_bytes(
        &mut tar,
        "fuse-export.json",
        &serde_json::to_vec_pretty(&manifest)?,
    )?;
    add_bytes(
        &mut tar,
        "workflows.json",
        &serde_json::to_vec_pretty(&workflows)?,
    )?;
    if let Some(s) = &sealed {
        add_bytes(&mut tar, "credentials.json", &serde_json::to_vec_pretty(s)?)?;
    }
    for (dir, name) in [
        (home.node_packages_dir(), "node_packages"),
        (home.plugin_packages_dir(), "plugin_packages"),
    ] {
        if dir.is_dir() {
            tar.append_dir_all(name, &dir)
                .with_context(|| format!("cannot add {} to the archive", dir.display()))?;
        }
    }
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    if args.runs {
        let copy = scratch.path().join("history.db");
        let check = crate::store::Store::open_reader(&home.db_path())?.backup_to(&copy)?;
        anyhow::ensure!(
            check == "ok",
            "the history copy does not pass quick_check ({check})"
        );
        tar.append_path_with_name(&copy, "history.db")
            .context("cannot add the history to the archive")?;
        let blobs = home.blobs_dir();
        if blobs.is_dir() {
            tar.append_dir_all("blobs", &blobs)
                .context("cannot add the history's payload files to the archive")?;
        }
    }
    tar.into_inner()?.flush()?;
    if !globals.quiet {
        eprintln!(
            "exported {} workflow(s), {} credential(s){}{}",
            manifest.workflows,
            manifest.credentials,
            if args.runs {
                " and the run history"
            } else {
                ""
            },
            args.output
                .as_ref()
                .map(|f| format!(" to {}", f.display()))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A path inside the archive that stays inside where it is unpacked.
fn safe(path: &Path) -> bool {
    path.components().all(|c| matches!(c, Component::Normal(_)))
}

pub fn import(globals: &Globals, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let home = Home::resolve(globals.home.clone())?;
    let store = home.open_db()?;
    let vault = crate::secrets::vault::Vault::open(&home)?;
    if !args.force {
        let workflows = store.list_workflows()?.len();
        let credentials = vault.list()?.len();
        anyhow::ensure!(
            workflows == 0 && credentials == 0,
            crate::Error::Setting(format!(
                "this home already has {workflows} workflow(s) and {credentials} credential(s); import into a new home (`fuse init`), or add --force to merge (same names are replaced)"
            ))
        );
    }
    // Unpack into a scratch folder first: nothing changes unless all of it reads.
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let decoder = zstd::Decoder::new(file)
        .with_context(|| format!("{} is not a fuse export (.tar.zst)", args.file.display()))?;
    let mut archive = tar::Archive::new(decoder);
    for entry in archive
        .entries()
        .with_context(|| format!("{} is not a fuse export (.tar.zst)", args.file.display()))?
    {
        let mut entry = entry.with_context(|| format!("{} is damaged", args.file.display()))?;
        let path = entry.path()?.into_owned();
        anyhow::ensure!(
            safe(&path),
            crate::Error::Setting(format!(
                "{} holds an unsafe path {}; refusing to unpack it",
                args.file.display(),
                path.display()
            ))
        );
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        entry
            .unpack_in(scratch.path())
            .with_context(|| format!("cannot unpack {}", path.display()))?;
    }
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(scratch.path().join(name))
            .with_context(|| {
                format!(
                    "{} has no {name}: is it a fuse export?",
                    args.file.display()
                )
            })?
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let manifest: Manifest = serde_json::from_slice(&read("fuse-export.json")?)
        .context("the archive's fuse-export.json is not valid")?;
    anyhow::ensure!(
        manifest.format <= FORMAT,
        "the archive has format {}, newer than this fuse reads ({FORMAT}); upgrade fuse",
        manifest.format
    );
    let workflows: Vec<ExportedWorkflow> =
        serde_json::from_slice(&read("workflows.json")?).context("workflows.json is not valid")?;
    let credentials: Vec<PlainCredential> = if scratch.path().join("credentials.json").exists() {
        let sealed: SealedCredentials = serde_json::from_slice(&read("credentials.json")?)
            .context("credentials.json is not valid")?;
        let pass = passphrase(args.passphrase_file.as_deref(), false)?;
        let key = derive(pass.as_bytes(), &unhex(&sealed.salt)?, sealed.rounds);
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new_from_slice(key.as_ref())
            .map_err(|e| anyhow::anyhow!("cannot open the credentials: {e}"))?;
        let nonce: [u8; 12] = unhex(&sealed.nonce)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("the archive's credentials are damaged (nonce)"))?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(&nonce.into(), unhex(&sealed.ciphertext)?.as_slice())
                .map_err(|_| {
                    crate::Error::Setting(
                        "the passphrase does not open the archive's credentials; give the one used for `fuse export`".into(),
                    )
                })?,
        );
        serde_json::from_slice(&plain).context("the archive's credentials are damaged")?
    } else {
        Vec::new()
    };

    // Workflows: every version in order, then which is current and enabled.
    for wf in &workflows {
        let mut numbers = BTreeMap::new();
        for v in &wf.versions {
            let (n, _) = store.store_version(&wf.name, &v.definition, None)?;
            numbers.insert(v.version, n);
        }
        if let Some(current) = wf.current.and_then(|c| numbers.get(&c))
            && Some(current) != numbers.values().last()
        {
            store.rollback_workflow(&wf.name, *current)?;
        }
        store.set_workflow_enabled(&wf.name, wf.enabled)?;
    }
    // Packages first: a credential type a plugin declares must be known.
    for (name, dir) in [
        ("node_packages", home.node_packages_dir()),
        ("plugin_packages", home.plugin_packages_dir()),
    ] {
        let from = scratch.path().join(name);
        if from.is_dir() {
            copy_tree(&from, &dir)?;
        }
    }
    let types = crate::secrets::types::known(&home);
    for c in &credentials {
        let fields: BTreeMap<String, Zeroizing<String>> = c
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Zeroizing::new(v.clone())))
            .collect();
        let spec = types.iter().find(|t| t.name == c.kind).with_context(|| {
            format!(
                "credential {} is of type {:?}, which this home does not know (a plugin's type? its package did not load)",
                c.name, c.kind
            )
        })?;
        vault
            .set_typed(&c.name, spec, &fields)
            .with_context(|| format!("cannot store credential {}", c.name))?;
    }
    let mut runs = 0;
    if manifest.runs {
        let history = scratch.path().join("history.db");
        if history.exists() {
            let mut writer = crate::store::Store::open_reader(&home.db_path())?;
            runs = writer.copy_history_from(&history)?;
        }
        let blobs = scratch.path().join("blobs");
        if blobs.is_dir() {
            copy_tree(&blobs, &home.blobs_dir())?;
        }
    }
    if !globals.quiet {
        eprintln!(
            "imported {} workflow(s), {} credential(s){} from {}",
            workflows.len(),
            credentials.len(),
            if manifest.runs {
                format!(" and {runs} run(s)")
            } else {
                String::new()
            },
            args.file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn copy_tree(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot write {}", target.display()))?;
        }
    }
    Ok(())
}
