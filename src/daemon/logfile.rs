//! The daemon log (`logs/daemon.log`): standard output and error point at it;
//! past `log.max_size` bytes it is renamed `daemon.log.1` (older ones move up
//! to `daemon.log.<keep>`, the oldest goes) and a fresh file takes its place,
//! its descriptor moved onto standard output and error so every writer (log
//! lines, panics) follows.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the size is looked at.
const EVERY: Duration = Duration::from_secs(1);

/// The rotated file `n` (1 = newest) of `log`.
pub fn rotated(log: &Path, n: usize) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Checks the log's size every second and rotates it when it is too big.
pub(super) async fn rotate_loop(log: PathBuf, max_size: u64, keep: usize) {
    loop {
        tokio::time::sleep(EVERY).await;
        let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        if size > max_size
            && let Err(e) = rotate(&log, keep)
        {
            // Said once per check; the log keeps growing rather than losing lines.
            tracing::warn!("cannot rotate {}: {e}", log.display());
        }
    }
}

/// Shifts the rotated files up, renames the log to `.1`, and points standard
/// output and error at a new, empty log.
pub fn rotate(log: &Path, keep: usize) -> std::io::Result<()> {
    if keep == 0 {
        std::fs::remove_file(log)?;
    } else {
        let _ = std::fs::remove_file(rotated(log, keep));
        for n in (1..keep).rev() {
            let from = rotated(log, n);
            if from.exists() {
                std::fs::rename(&from, rotated(log, n + 1))?;
            }
        }
        std::fs::rename(log, rotated(log, 1))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    use std::os::fd::AsRawFd;
    for fd in [1, 2] {
        // SAFETY: dup2 onto this process's standard descriptors; `file` stays
        // open for the call and the duplicates outlive it.
        if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    tracing::info!(
        "log rotated: the previous lines are in {}",
        rotated(log, 1).display()
    );
    Ok(())
}
