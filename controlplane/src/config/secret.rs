//! Secret files (the sync key, TLS private keys): read only if nobody but
//! their owner, root, can read them, as sshd refuses a private key others
//! can read.

use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// A secret file's bytes (the sync key, a TLS private key), if nobody but
/// its owner, root, can read it: an absolute path, not a symbolic link, a
/// regular file of mode 0600 or stricter, at most `max` bytes (`what` it
/// holds, for the refusal).
pub(super) fn read_secret(path: &Path, max: u64, what: &str) -> Result<Vec<u8>, String> {
    if !path.is_absolute() {
        return Err("must be an absolute path".into());
    }
    // O_NOFOLLOW: a symbolic link is refused, not followed; the checks
    // below are of the file opened (fstat), not of a name that could be
    // swapped meanwhile.
    let mut file = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP) => "is a symbolic link".to_string(),
        _ => e.to_string(),
    })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!("owned by uid {}: must be owned by root", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!("mode {:04o}: others may read it; chmod 600", meta.mode() & 0o7777));
    }
    if meta.len() > max {
        return Err(format!("{} bytes: {what}", meta.len()));
    }
    // No more than `max` even if it grew since the fstat.
    let mut bytes = Vec::new();
    (&mut file).take(max + 1).read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("more than {max} bytes: {what}"));
    }
    Ok(bytes)
}
