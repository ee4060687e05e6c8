//! `[sync] key_file`: the sync key kept out of the configuration file, in
//! a file only root can read (as sshd refuses a private key others can
//! read): an absolute path, not a symbolic link, a regular file of mode
//! 0600 or stricter, owned by root (or by the user furiwake runs as).
//! Anything else is refused at the `key_file` line. Its text is hex, as
//! `key`, and goes through the same checks.

use super::model::Config;
use super::{ConfigError, Source};
use std::path::Path;

/// More than any hex key (128 digits) with a newline.
const MAX_LEN: u64 = 1024;

impl Config {
    /// Reads `[sync] key_file` into the configuration (`SyncConfig::file_key`).
    pub(super) fn read_key_file(&mut self, src: &Source<'_>) -> Result<(), ConfigError> {
        let Some(s) = self.sync.as_mut() else { return Ok(()) };
        let Some(f) = &s.key_file else { return Ok(()) };
        let text = read(Path::new(f.get_ref())).map_err(|why| src.error(Some(f.span()), format!("sync: key_file {:?}: {why}", f.get_ref())))?;
        s.file_key = Some(text);
        Ok(())
    }
}

/// The file's text, trimmed, if nobody but its owner, root, can read it.
fn read(path: &Path) -> Result<String, String> {
    let bytes = super::secret::read_secret(path, MAX_LEN, "a key file holds one hex key")?;
    String::from_utf8(bytes).map(|t| t.trim().to_string()).map_err(|_| "not text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::path::PathBuf;

    const KEY: &str = "ac07e2b1f609af731d8373168d0240f7288bebc9b72c14e5c91499b7a8ffc345";

    fn scratch() -> PathBuf {
        let d = std::env::temp_dir().join(format!("furiwake-keyfile-{}-{:?}", std::process::id(), std::thread::current().id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn config(sync_key: &str) -> String {
        format!(
            "[platform]\nworker_lcores = [1]\n[[interface]]\nname = \"inside\"\ndevice = \"net_null0\"\naddress = \"198.51.100.3/24\"\n[sync]\ninterface = \"inside\"\npeer = \"198.51.100.4\"\n{sync_key}\n"
        )
    }

    fn key_file(path: &Path, mode: u32) {
        fs::write(path, format!("{KEY}\n")).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_private_key_file_gives_the_key_and_stays_out_of_every_rendering() {
        let d = scratch();
        let path = d.join("sync.key");
        key_file(&path, 0o600);
        let c = Config::parse("t.toml", &config(&format!("key_file = {:?}", path.to_str().unwrap()))).unwrap();
        let s = c.sync.as_ref().unwrap();
        assert_eq!(s.key_bytes(), (0..32).map(|i| u8::from_str_radix(&KEY[2 * i..2 * i + 2], 16).unwrap()).collect::<Vec<u8>>());
        for text in [crate::config::render(&c), crate::config::render_with_secrets(&c), format!("{c:?}")] {
            assert!(!text.contains(KEY), "{text}");
        }
        let saved = crate::config::render_with_secrets(&c);
        assert!(saved.contains(&format!("key_file = {:?}", path.to_str().unwrap())), "{saved}");
        assert_eq!(Config::parse("saved.toml", &saved).unwrap().sync, c.sync);
        key_file(&path, 0o400);
        Config::parse("t.toml", &config(&format!("key_file = {:?}", path.to_str().unwrap()))).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn loose_key_files_are_refused_at_their_line() {
        let d = scratch();
        let path = d.join("sync.key");
        let link = d.join("link.key");
        key_file(&path, 0o640);
        symlink(&path, &link).unwrap();
        let line = config("key_file = \"x\"").lines().position(|l| l.starts_with("key_file")).unwrap() + 1;
        let weak = d.join("weak.key");
        fs::write(&weak, "00".repeat(32)).unwrap();
        fs::set_permissions(&weak, fs::Permissions::from_mode(0o600)).unwrap();
        let other = d.join("other.key");
        key_file(&other, 0o600);
        // Only root can give a file away; as another user that case is left out.
        let given_away = std::os::unix::fs::chown(&other, Some(4242), None).is_ok();
        let p = |p: &Path| format!("key_file = {:?}", p.to_str().unwrap());
        let mut cases = vec![
            (p(&path), "mode 0640: others may read it"),
            (p(&link), "is a symbolic link"),
            (p(&d.join("missing.key")), "No such file"),
            (p(&d), "not a regular file"),
            ("key_file = \"sync.key\"".to_string(), "must be an absolute path"),
            (p(&weak), "sync: key_file refused: too few distinct bytes"),
        ];
        if given_away {
            cases.push((p(&other), "owned by uid 4242: must be owned by root"));
        }
        for (sync, why) in cases {
            let e = Config::parse("t.toml", &config(&sync)).unwrap_err();
            assert_eq!(e.line, line, "{sync}: {e}");
            assert!(e.message.contains(why), "{sync}: want {why:?}: {e}");
        }
        key_file(&path, 0o600);
        let both = Config::parse("t.toml", &config(&format!("key = \"{KEY}\"\n{}", p(&path)))).unwrap_err();
        assert!(both.message.contains("key and key_file: give one"), "{both}");
        let neither = Config::parse("t.toml", &config("")).unwrap_err();
        assert!(neither.message.contains("key (or key_file) is required"), "{neither}");
        fs::remove_dir_all(&d).unwrap();
    }
}
