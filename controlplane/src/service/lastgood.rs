//! The configuration `furiwake run` starts from. With `--last-good
//! FILE`, a box whose configuration on disk fails validation at boot
//! starts on the last configuration that ran, and says why on its
//! console and in the journal, rather than not forwarding at all (as
//! BIG-IP and VyOS load their last saved configuration). The last good
//! file is written (0600, atomically) once a configuration has brought
//! the appliance up, and again after each `config reload` or `config
//! save` that succeeded.

use crate::config::{write_secret_file, Config};
use std::path::{Path, PathBuf};

/// The configuration chosen, its text and why it is not the operator's.
#[derive(Debug)]
pub struct Chosen {
    pub config: Config,
    /// The file it came from.
    pub path: PathBuf,
    /// Its text, as read (what the last good file will hold).
    pub text: String,
    /// Set when `path` is the last good file: the operator's file's error.
    pub fallback: Option<String>,
}

/// Reads and validates one file.
fn load(path: &Path) -> Result<(Config, String), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let cfg = Config::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
    Ok((cfg, text))
}

/// `main`, else (when given) `last_good` with the reason `main` failed.
pub fn choose(main: &Path, last_good: Option<&Path>) -> Result<Chosen, String> {
    let err = match load(main) {
        Ok((config, text)) => return Ok(Chosen { config, path: main.to_path_buf(), text, fallback: None }),
        Err(e) => e,
    };
    let Some(good) = last_good else { return Err(err) };
    match load(good) {
        Ok((config, text)) => Ok(Chosen {
            config,
            path: good.to_path_buf(),
            text,
            fallback: Some(format!("running on the last good configuration {}: {err}", good.display())),
        }),
        Err(e) => Err(format!("{err}\n(and the last good configuration: {e})")),
    }
}

/// Says that the box runs on the last good configuration, and why: in
/// the journal (stderr), and, when systemd started it, on the system
/// console (the serial line an operator watches), where the service's
/// other lines do not go.
pub fn announce(why: &str) {
    eprintln!("warning: {why}");
    if std::env::var_os("INVOCATION_ID").is_some() {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // O_NOCTTY: the console must not become this process's terminal.
        if let Ok(mut c) = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK).open("/dev/console") {
            let _ = write!(c, "\r\nfuriwake: WARNING: {}\r\n", why.replace('\n', "\r\n"));
        }
    }
}

/// Records `text` (a configuration that brought the appliance up) as the
/// last good one.
pub fn remember(last_good: &Path, text: &str) -> Result<(), String> {
    if let Some(d) = last_good.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    write_secret_file(last_good, text).map_err(|e| format!("{}: {e}", last_good.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "[platform]\nworker_lcores = [1]\n\n[[interface]]\nname = \"a\"\ndevice = \"net_null0\"\naddress = \"192.0.2.1/24\"\n";

    #[test]
    fn a_broken_file_falls_back_to_the_last_good_one_with_its_place_and_reason() {
        let d = std::env::temp_dir().join(format!("furiwake-lastgood-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let (main, good) = (d.join("furiwake.toml"), d.join("last-good.toml"));
        std::fs::write(&main, GOOD).unwrap();
        let c = choose(&main, Some(&good)).unwrap();
        assert!(c.fallback.is_none() && c.path == main);
        remember(&good, &c.text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&good).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(&main, GOOD.replace("worker_lcores = [1]", "worker_lcores = [1]\nfrobnicate = 1")).unwrap();
        let c = choose(&main, Some(&good)).unwrap();
        assert_eq!(c.path, good);
        let why = c.fallback.unwrap();
        assert!(why.contains(&format!("{}:3:1: unknown field `frobnicate`", main.display())), "{why}");
        assert!(choose(&main, None).unwrap_err().contains(":3:1:"));
        std::fs::remove_file(&good).unwrap();
        let e = choose(&main, Some(&good)).unwrap_err();
        assert!(e.contains(":3:1:") && e.contains("last good"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
