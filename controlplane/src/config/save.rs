//! `config save`: the running configuration, secrets and all, written as
//! a secret is written: only inside one directory (`[console] save_dir`,
//! by default the running configuration file's, as BIG-IP and VyOS save
//! only to their configuration directory), never through a symbolic link,
//! mode 0600, atomically (a new temporary file under an unpredictable
//! name, fsync, rename over the target, fsync of the directory), so a
//! crash leaves the old file or the new one and no reader ever sees a
//! secret with looser permissions.

use super::model::Config;
use super::{ConfigError, Source};
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

impl Config {
    /// `[console] save_dir` must be an absolute path without `..`.
    pub(super) fn validate_console(&self, src: &Source<'_>) -> Result<(), ConfigError> {
        let Some(d) = &self.console.save_dir else { return Ok(()) };
        let p = Path::new(d.get_ref());
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(src.error(Some(d.span()), format!("console: save_dir {:?} must be an absolute path without `..`", d.get_ref())));
        }
        Ok(())
    }
}

/// The directory `config save` may write to: `[console] save_dir`, else
/// the directory of `config_path` (the file the appliance runs from).
pub fn save_dir(cfg: &Config, config_path: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(d) = &cfg.console.save_dir {
        return Ok(PathBuf::from(d.get_ref()));
    }
    let file = config_path.ok_or("no directory to save to: the appliance was not started from a file and [console] save_dir is not set")?;
    let file = std::path::absolute(file).map_err(|e| format!("{}: {e}", file.display()))?;
    file.parent().map(Path::to_path_buf).ok_or_else(|| format!("{}: no directory", file.display()))
}

/// Where `path` (relative: to `dir`) may be written: the file inside
/// `dir` (or a directory below it), its directory resolved. Refused: a
/// `..` component, a directory outside `dir`, a target that is a symbolic
/// link or not a regular file.
pub fn target(path: &Path, dir: &Path) -> Result<PathBuf, String> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{}: `..` is not allowed", path.display()));
    }
    let full = if path.is_absolute() { path.to_path_buf() } else { dir.join(path) };
    let (Some(parent), Some(name)) = (full.parent(), full.file_name()) else { return Err(format!("{}: not a file name", path.display())) };
    let parent = fs::canonicalize(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    let allowed = fs::canonicalize(dir).map_err(|e| format!("save directory {}: {e}", dir.display()))?;
    if parent != allowed {
        return Err(format!("{}: not directly in the save directory {} (set [console] save_dir to save elsewhere)", path.display(), allowed.display()));
    }
    // Only configuration files: a name ending in `.toml`, not hidden (the
    // save directory may hold other files the console must not replace).
    let n = name.to_string_lossy();
    if !n.ends_with(".toml") || n.starts_with('.') || n.len() <= ".toml".len() {
        return Err(format!("{}: only a NAME.toml file is saved", path.display()));
    }
    let file = parent.join(name);
    match fs::symlink_metadata(&file) {
        Ok(m) if m.file_type().is_symlink() => Err(format!("{}: is a symbolic link; refused", file.display())),
        Ok(m) if !m.is_file() => Err(format!("{}: not a regular file", file.display())),
        Ok(_) => Ok(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(file),
        Err(e) => Err(format!("{}: {e}", file.display())),
    }
}

/// Writes `text` to `file` (a path `target` returned): a new file of
/// mode 0600 (`create_new`: an existing name or a symbolic link there is
/// an error, never followed) named `.NAME.RANDOM.tmp` beside it, fsynced,
/// renamed over `file`; then the directory fsynced, so the rename itself
/// survives a crash. Nothing is left behind on failure.
pub fn write_secret_file(file: &Path, text: &str) -> io::Result<()> {
    let dir = file.parent().ok_or_else(|| io::Error::other("no directory"))?;
    let mut tmp_name = OsString::from(".");
    tmp_name.push(file.file_name().ok_or_else(|| io::Error::other("no file name"))?);
    tmp_name.push(format!(".{}.tmp", random_hex()?));
    let tmp = dir.join(tmp_name);
    let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&tmp)?;
    let written = f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).and_then(|()| fs::rename(&tmp, file));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

/// Before `config save` replaces `file`: its current text kept as
/// `FILE.prev` (0600, atomically), so one bad save can be undone. None
/// when there was no file.
pub fn keep_previous(file: &Path) -> Result<Option<PathBuf>, String> {
    let old = match fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", file.display())),
    };
    let mut name = file.as_os_str().to_os_string();
    name.push(".prev");
    let prev = PathBuf::from(name);
    if fs::symlink_metadata(&prev).is_ok_and(|m| !m.is_file()) {
        return Err(format!("{}: not a regular file; refused", prev.display()));
    }
    write_secret_file(&prev, &old).map_err(|e| format!("{}: {e}", prev.display()))?;
    Ok(Some(prev))
}

/// 16 hex digits from the kernel's random source: a temporary name
/// nobody can create in advance.
fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    /// A fresh directory under the system's temporary one.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("furiwake-save-{name}-{}-{}", std::process::id(), random_hex().unwrap()));
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn entries(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_saved_file_is_0600_replaces_the_old_one_and_leaves_no_temporary() {
        let d = scratch("mode");
        let old = d.join("lb.toml");
        fs::write(&old, "old").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        let file = target(Path::new("lb.toml"), &d).unwrap();
        write_secret_file(&file, "key = \"secret\"\n").unwrap();
        assert_eq!(fs::read_to_string(&old).unwrap(), "key = \"secret\"\n");
        assert_eq!(fs::metadata(&old).unwrap().permissions().mode() & 0o777, 0o600, "the new file's mode, not the old one's");
        assert_eq!(entries(&d), vec!["lb.toml"], "no temporary file left");
        let other = target(&d.join("other.toml"), &d).unwrap();
        write_secret_file(&other, "x").unwrap();
        assert_eq!(fs::metadata(&other).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn targets_outside_the_directory_through_dotdot_or_a_symlink_are_refused() {
        let d = scratch("refuse");
        let outside = scratch("outside");
        let victim = outside.join("passwd");
        fs::write(&victim, "root:x:0:0").unwrap();
        let e = target(&victim, &d).unwrap_err();
        assert!(e.contains("not directly in the save directory"), "{e}");
        let e = target(Path::new("/etc/passwd"), &d).unwrap_err();
        assert!(e.contains("not directly in the save directory"), "{e}");
        let e = target(&d.join("../x.toml"), &d).unwrap_err();
        assert!(e.contains("`..` is not allowed"), "{e}");
        let e = target(Path::new("sub/../../x.toml"), &d).unwrap_err();
        assert!(e.contains("`..` is not allowed"), "{e}");
        // A symbolic link named as the target: refused, its target untouched.
        symlink(&victim, d.join("lb.toml")).unwrap();
        let e = target(Path::new("lb.toml"), &d).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        // A symbolic link to a directory outside, used as the directory.
        symlink(&outside, d.join("sub")).unwrap();
        let e = target(Path::new("sub/passwd"), &d).unwrap_err();
        assert!(e.contains("not directly in the save directory"), "{e}");
        // A directory is not a file.
        fs::create_dir(d.join("dir.toml")).unwrap();
        assert!(target(Path::new("dir.toml"), &d).unwrap_err().contains("not a regular file"));
        // Only NAME.toml, directly in the directory (review: a console user
        // must not replace /etc/profile.d/x.sh when the config is in /etc).
        for name in ["profile.sh", ".hidden.toml", ".toml", "sudoers"] {
            assert!(target(Path::new(name), &d).unwrap_err().contains("only a NAME.toml"), "{name}");
        }
        fs::create_dir(d.join("keep")).unwrap();
        assert!(target(Path::new("keep/a.toml"), &d).unwrap_err().contains("not directly in the save directory"));
        assert_eq!(target(Path::new("a.toml"), &d).unwrap(), fs::canonicalize(&d).unwrap().join("a.toml"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "root:x:0:0");
        fs::remove_dir_all(&d).unwrap();
        fs::remove_dir_all(&outside).unwrap();
    }

    #[test]
    fn the_save_directory_is_the_configured_one_or_the_files() {
        let text = |extra: &str| format!("[platform]\nworker_lcores = [1]\n[console]\nsocket = \"\"\n{extra}");
        let c = Config::parse("t.toml", &text("")).unwrap();
        assert_eq!(save_dir(&c, Some(Path::new("/etc/furiwake/lb.toml"))).unwrap(), PathBuf::from("/etc/furiwake"));
        assert!(save_dir(&c, None).unwrap_err().contains("[console] save_dir is not set"));
        let c = Config::parse("t.toml", &text("save_dir = \"/var/lib/furiwake\"\n")).unwrap();
        assert_eq!(save_dir(&c, Some(Path::new("/etc/furiwake/lb.toml"))).unwrap(), PathBuf::from("/var/lib/furiwake"));
        let e = Config::parse("t.toml", &text("save_dir = \"relative/dir\"\n")).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.message.contains("must be an absolute path"), "{e}");
        let e = Config::parse("t.toml", &text("save_dir = \"/etc/../tmp\"\n")).unwrap_err();
        assert!(e.message.contains("without `..`"), "{e}");
    }
}
