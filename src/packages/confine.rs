//! File-system confinement of package processes with Landlock (Linux ≥ 5.13).
//!
//! A package may read and run everything on the machine **except the fuse
//! home** (its database, master key, credentials, other packages); it may read
//! and write only its own folder, a private temporary folder (`TMPDIR`),
//! `/dev`, and the paths its manifest lists in `permissions.write` (plus read
//! `permissions.read`). The rules are prepared in fuse and applied in the child
//! between fork and exec, so they cover everything the package starts.

use std::path::{Path, PathBuf};

/// What a package process may touch.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The fuse home: hidden from the package, except `own`.
    pub home: Option<PathBuf>,
    /// The package folder (read and write).
    pub own: PathBuf,
    pub read: Vec<PathBuf>,
    pub write: Vec<PathBuf>,
    pub tmp: Option<PathBuf>,
}

/// Paths under `root` a package may read: every entry of each ancestor of
/// `hidden` except the one leading to it, so `hidden` alone is left out.
fn readable_around(hidden: &Path) -> Vec<PathBuf> {
    let mut allowed = Vec::new();
    let mut current = PathBuf::from("/");
    for component in hidden.components().skip(1) {
        let next = current.join(component);
        if let Ok(entries) = std::fs::read_dir(&current) {
            for entry in entries.flatten() {
                let path = entry.path();
                if path != next {
                    allowed.push(path);
                }
            }
        }
        current = next;
    }
    allowed
}

#[cfg(target_os = "linux")]
mod imp {
    use super::*;
    use landlock::{
        ABI, Access, AccessFs, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
        RulesetCreated, RulesetCreatedAttr, RulesetStatus,
    };

    const ABI_WANTED: ABI = ABI::V5;

    /// A ruleset ready to apply in a child.
    pub struct Prepared(Option<RulesetCreated>);

    fn add(
        mut ruleset: RulesetCreated,
        paths: &[PathBuf],
        access: landlock::BitFlags<AccessFs>,
    ) -> Option<RulesetCreated> {
        for path in paths {
            // Paths that do not exist (or vanished) need no rule.
            let Ok(fd) = PathFd::new(path) else { continue };
            let rights = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(ABI_WANTED)
            };
            ruleset = match ruleset.add_rule(PathBeneath::new(fd, rights)) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("cannot confine a package to {}: {e}", path.display());
                    return None;
                }
            };
        }
        Some(ruleset)
    }

    /// Builds the rules of `policy`; `None` when Landlock is not available.
    pub fn prepare(policy: &Policy) -> Option<Prepared> {
        if !supported() {
            return None;
        }
        let ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(ABI_WANTED))
            .and_then(|r| r.create())
            .ok()?;
        let read = AccessFs::from_read(ABI_WANTED);
        let all = AccessFs::from_all(ABI_WANTED);
        let readable: Vec<PathBuf> = match &policy.home {
            Some(home) => readable_around(home),
            None => vec![PathBuf::from("/")],
        };
        let ruleset = add(ruleset, &readable, read)?;
        let ruleset = add(ruleset, &policy.read, read)?;
        let mut writable = vec![policy.own.clone(), PathBuf::from("/dev")];
        writable.extend(policy.tmp.clone());
        writable.extend(policy.write.iter().cloned());
        let ruleset = add(ruleset, &writable, all)?;
        Some(Prepared(Some(ruleset)))
    }

    impl Prepared {
        /// A second handle on the same rules (a `dup` of the ruleset fd).
        pub fn try_clone(&self) -> Option<Prepared> {
            match &self.0 {
                Some(r) => r.try_clone().ok().map(|r| Prepared(Some(r))),
                None => Some(Prepared(None)),
            }
        }

        /// Applies the rules to the calling process (the child, before exec).
        pub fn apply(&mut self) -> std::io::Result<()> {
            let Some(ruleset) = self.0.take() else {
                return Ok(());
            };
            match ruleset.restrict_self() {
                Ok(status) if status.ruleset != RulesetStatus::NotEnforced => Ok(()),
                Ok(_) => Err(std::io::Error::other("landlock is not enforced")),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        }
    }

    /// Whether this kernel enforces Landlock.
    pub fn supported() -> bool {
        abi_version().is_some()
    }

    /// The kernel's Landlock ABI version, if any.
    pub fn abi_version() -> Option<i64> {
        // landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
        // SAFETY: the version query takes no pointers and has no side effects.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                1u32,
            )
        };
        (abi >= 1).then_some(abi)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub struct Prepared;

    pub fn prepare(_policy: &Policy) -> Option<Prepared> {
        None
    }

    impl Prepared {
        pub fn try_clone(&self) -> Option<Prepared> {
            Some(Prepared)
        }

        pub fn apply(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub fn supported() -> bool {
        false
    }

    pub fn abi_version() -> Option<i64> {
        None
    }
}

pub use imp::{Prepared, abi_version, prepare, supported};

/// How long prepared rules are reused: the folders around the home are listed
/// again after this, so entries created since then become readable.
const REUSE: std::time::Duration = std::time::Duration::from_secs(5);

/// Confines the processes of one package, preparing its rules at most every
/// few seconds (listing folders and opening one fd per rule is most of the cost).
pub struct Confiner {
    policy: Policy,
    cached: std::sync::Mutex<Option<(std::time::Instant, Prepared)>>,
}

impl Confiner {
    pub fn new(policy: Policy) -> Confiner {
        Confiner {
            policy,
            cached: std::sync::Mutex::new(None),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn prepared(&self) -> Option<Prepared> {
        let mut cached = self.cached.lock().ok()?;
        if let Some((at, prepared)) = cached.as_ref()
            && at.elapsed() < REUSE
        {
            return prepared.try_clone();
        }
        let fresh = prepare(&self.policy)?;
        let copy = fresh.try_clone();
        *cached = Some((std::time::Instant::now(), fresh));
        copy
    }

    /// Applies the policy to a command about to be spawned (no-op where Landlock
    /// is not available; `fuse nodes doctor` says which).
    pub fn confine(&self, cmd: &mut tokio::process::Command) {
        let Some(mut prepared) = self.prepared() else {
            return;
        };
        // SAFETY: the closure runs in the forked child before exec; it only calls
        // prctl and landlock_restrict_self (no allocation on the success path) on
        // rules prepared in the parent.
        unsafe {
            cmd.pre_exec(move || prepared.apply());
        }
    }
}
