//! Files written by fuse: atomically (temporary name, then rename, so a file is
//! either whole or absent) and with the permissions asked for. Files read from
//! users (workflows, manifests, inputs): only regular files, and only up to a
//! limit, so a link to `/dev/zero` or a FIFO cannot hang or exhaust memory.

use std::path::Path;

use crate::error::{IoContext, Result};

/// Prefix of files and folders being written; `init` removes left-overs.
pub const TMP_PREFIX: &str = ".tmp-";

/// Writes `bytes` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!("{TMP_PREFIX}{name}"));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp).io_context("write", &tmp)?;
        std::io::Write::write_all(&mut file, bytes).io_context("write", &tmp)?;
        file.sync_all().io_context("write", &tmp)?;
    }
    if let Some(mode) = mode {
        set_mode(&tmp, mode)?;
    }
    std::fs::rename(&tmp, path).io_context("move into place", path)
}

pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .io_context("set permissions on", path)?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Creates a folder only this user can use (0700), if it does not exist.
pub fn create_private_dir(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).io_context("create folder", path)?;
    set_mode(path, 0o700)
}

/// Reads a regular file of at most `limit` bytes. A device, a pipe, a folder
/// or a larger file is refused before anything is read.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let (file, len) = open_regular(path, limit)?;
    read_opened(file, len, limit)
}

/// Reads a file [`open_regular`] opened (`len`: its length then); one that
/// grew past `limit` since is refused.
pub fn read_opened(file: std::fs::File, len: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64, limit));
    }
    Ok(bytes)
}

/// Opens a plain file of at most `limit` bytes (as [`read_regular`] checks
/// it), with its length; a reader should still stop after `limit` bytes.
pub fn open_regular(path: &Path, limit: u64) -> std::io::Result<(std::fs::File, u64)> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, a pipe or a socket)"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is {kind}; give the path of a plain file"),
        ));
    }
    if meta.len() > limit {
        return Err(too_big(meta.len(), limit));
    }
    Ok((std::fs::File::open(path)?, meta.len()))
}

fn too_big(size: u64, limit: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("it is {size} bytes; the limit is {limit} bytes"),
    )
}
