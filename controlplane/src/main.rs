//! `furiwake`: the load-balancer appliance.
//!
//! ```text
//! furiwake run --config FILE [--last-good FILE] [--bind-nics] [--log-level LEVEL]
//!                                  run the appliance (console on stdin/stdout)
//! furiwake check-config FILE       validate a configuration and exit
//! furiwake console [--socket PATH | --config FILE] [-c COMMAND]
//!                                  attach to a running appliance's console
//! furiwake nics bind --config FILE | furiwake nics release
//!                                  the PCI data NICs to DPDK and back
//! furiwake version
//! ```
//!
//! Exit status: 0 done; 1 a bad configuration, a failed start or a failed
//! console command; 2 a usage error or an unreachable appliance.

use clap::{Parser, Subcommand};
use furiwake::appliance::Appliance;
use furiwake::config::Config;
use furiwake::out::say;
use furiwake::service::notify::Notifier;
use furiwake::service::{lastgood, nics};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The usage of every command, as `furiwake --help` and a usage error show it.
const USAGE: &str = "furiwake run --config FILE [--last-good FILE] [--bind-nics] [--log-level error|warn|info|debug|trace]
       furiwake check-config FILE
       furiwake console [--socket PATH | --config FILE] [-c COMMAND]
       furiwake nics bind --config FILE | furiwake nics release
       furiwake version";

#[derive(Debug, Parser)]
#[command(
    name = "furiwake",
    version,
    about = "The Furiwake load-balancer appliance",
    override_usage = USAGE,
    arg_required_else_help = true,
    after_help = "Signals to `furiwake run`: SIGUSR1 prints counters; SIGTERM or SIGINT stops cleanly."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the appliance (its console on stdin/stdout when that is a terminal)
    Run {
        /// The configuration file
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
        /// error, warn, info, debug or trace: overrides RUST_LOG and the
        /// config's `[logging] level`
        #[arg(long = "log-level", value_name = "LEVEL", value_parser = log_level)]
        log_level: Option<log::LevelFilter>,
        /// Start from this file when FILE fails validation (saying why);
        /// every configuration that served is kept there
        #[arg(long = "last-good", value_name = "FILE")]
        last_good: Option<PathBuf>,
        /// Bind the PCI data NICs to `[platform] pci_driver` before DPDK
        /// starts and give them back at exit
        #[arg(long = "bind-nics")]
        bind_nics: bool,
    },
    /// Validate a configuration and exit (1 with FILE:LINE:COL: reason)
    CheckConfig {
        /// The configuration file
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// The console of a running appliance
    Console {
        /// The console socket [default: /run/furiwake/console.sock]
        #[arg(short = 's', long = "socket", value_name = "PATH", conflicts_with = "config")]
        socket: Option<PathBuf>,
        /// Take the socket from this configuration's `[console] socket`
        #[arg(long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Run one command, print its answer and exit (1 when it failed)
        #[arg(short = 'c', long = "command", value_name = "COMMAND")]
        command: Option<String>,
    },
    /// The PCI data NICs: bound to a userspace I/O driver, or given back
    Nics {
        #[command(subcommand)]
        action: NicsAction,
    },
    /// Print the version
    Version,
}

#[derive(Debug, Subcommand)]
enum NicsAction {
    /// Bind the configuration's PCI NICs to `[platform] pci_driver`,
    /// recording the drivers they had
    Bind {
        /// The configuration file
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: PathBuf,
    },
    /// Give every NIC recorded by `bind` back to its kernel driver
    Release,
}

/// `--log-level`: a level that logs something.
fn log_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.parse::<log::LevelFilter>() {
        Ok(l) if l != log::LevelFilter::Off => Ok(l),
        _ => Err("expected error, warn, info, debug or trace".into()),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr
            // with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    // Everything reaches the logger; the level is `[logging] level` (set
    // once the config is read) unless RUST_LOG says otherwise.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("trace")).format_target(false).init();
    log::set_max_level(log::LevelFilter::Info);
    match cli.command {
        Cmd::Run { config, log_level, last_good, bind_nics } => run(&config, &Options { level: log_level, last_good, bind_nics }),
        Cmd::CheckConfig { file } => check(&file),
        Cmd::Console { socket, config, command } => console(socket, config.as_deref(), command.as_deref()),
        Cmd::Nics { action } => nics(action),
        Cmd::Version => {
            println!("furiwake {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}

fn console(socket: Option<PathBuf>, config: Option<&Path>, command: Option<&str>) -> ExitCode {
    let socket = match (socket, config) {
        (Some(s), _) => s,
        (None, Some(f)) => match Config::load(f) {
            Ok(cfg) => PathBuf::from(cfg.console.socket),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        (None, None) => PathBuf::from(furiwake::config::DEFAULT_CONSOLE_SOCKET),
    };
    furiwake::console::client::main(&socket, command)
}

fn check(path: &Path) -> ExitCode {
    match Config::load(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} interfaces, {} pools, {} virtual servers)",
                path.display(),
                cfg.interfaces.len(),
                cfg.pools.len(),
                cfg.virtual_servers.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// `furiwake run`'s options beside the file.
struct Options {
    level: Option<log::LevelFilter>,
    last_good: Option<PathBuf>,
    bind_nics: bool,
}

/// `furiwake nics bind|release`.
fn nics(action: NicsAction) -> ExitCode {
    let sys = nics::Sysfs::new("/sys");
    let state = Path::new(nics::STATE);
    match action {
        NicsAction::Bind { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(1);
                }
            };
            match nics::bind(&cfg, &sys, state) {
                Ok(lines) => {
                    lines.iter().for_each(|l| println!("nics: {l}"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: nics: {e}");
                    ExitCode::from(1)
                }
            }
        }
        NicsAction::Release => {
            let (lines, ok) = nics::release(&sys, state);
            lines.iter().for_each(|l| println!("nics: {l}"));
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// Gives the NICs back when this run bound them.
fn release_nics(bound: bool) {
    if bound {
        let (lines, _) = nics::release(&nics::Sysfs::new("/sys"), Path::new(nics::STATE));
        lines.iter().for_each(|l| say(&format!("nics: {l}")));
    }
}

fn run(path: &Path, o: &Options) -> ExitCode {
    let mut notify = Notifier::from_env();
    let chosen = match lastgood::choose(path, o.last_good.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            notify.send(&format!("STATUS=refused: {}", e.lines().next().unwrap_or("")));
            return ExitCode::from(1);
        }
    };
    if let Some(why) = &chosen.fallback {
        lastgood::announce(why);
    }
    // The command line's level, else RUST_LOG's, else the config's.
    match o.level {
        Some(l) => log::set_max_level(l),
        None if std::env::var_os("RUST_LOG").is_none() => log::set_max_level(chosen.config.logging.level.filter()),
        None => {}
    }
    let stop = Arc::new(AtomicBool::new(false));
    let dump = Arc::new(AtomicBool::new(false));
    for (sig, flag) in [
        (signal_hook::consts::SIGTERM, &stop),
        (signal_hook::consts::SIGINT, &stop),
        (signal_hook::consts::SIGUSR1, &dump),
    ] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("error: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    if o.bind_nics {
        match nics::bind(&chosen.config, &nics::Sysfs::new("/sys"), Path::new(nics::STATE)) {
            Ok(lines) => lines.iter().for_each(|l| say(&format!("nics: {l}"))),
            Err(e) => {
                eprintln!("error: nics: {e}");
                release_nics(true);
                return ExitCode::from(1);
            }
        }
    }
    let mut app = match Appliance::start(chosen.config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            release_nics(o.bind_nics);
            return ExitCode::from(1);
        }
    };
    // `config reload` and `config save` work on the operator's file, also
    // when the box started on the last good one.
    // The file becomes the last good one once the appliance serves.
    app.set_config_path(path, o.last_good.as_deref(), chosen.fallback.as_deref(), &chosen.text);
    app.run(&stop, &dump, &mut notify);
    notify.stopping();
    app.shutdown();
    release_nics(o.bind_nics);
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_spelling_parses() {
        let p = |args: &[&str]| Cli::try_parse_from(std::iter::once("furiwake").chain(args.iter().copied())).map(|c| c.command);
        for args in [["run", "--config", "f.toml"], ["run", "-c", "f.toml"]] {
            assert!(matches!(p(&args), Ok(Cmd::Run { config, log_level: None, last_good: None, bind_nics: false }) if config == Path::new("f.toml")));
        }
        for args in [["run", "--config", "f.toml", "--log-level", "debug"], ["run", "--log-level", "DEBUG", "-c", "f.toml"]] {
            assert!(matches!(p(&args), Ok(Cmd::Run { log_level: Some(log::LevelFilter::Debug), .. })));
        }
        assert!(matches!(
            p(&["run", "-c", "f.toml", "--last-good", "g.toml", "--bind-nics"]),
            Ok(Cmd::Run { last_good: Some(g), bind_nics: true, .. }) if g == Path::new("g.toml")
        ));
        assert!(matches!(p(&["nics", "bind", "--config", "f.toml"]), Ok(Cmd::Nics { action: NicsAction::Bind { config } }) if config == Path::new("f.toml")));
        assert!(matches!(p(&["nics", "release"]), Ok(Cmd::Nics { action: NicsAction::Release })));
        assert!(matches!(p(&["check-config", "f.toml"]), Ok(Cmd::CheckConfig { file }) if file == Path::new("f.toml")));
        for args in [["console", "--socket", "/s", "-c", "show pools"], ["console", "-s", "/s", "--command", "show pools"]] {
            assert!(matches!(p(&args), Ok(Cmd::Console { socket: Some(s), config: None, command: Some(c) }) if s == Path::new("/s") && c == "show pools"));
        }
        assert!(matches!(p(&["console", "--config", "f.toml"]), Ok(Cmd::Console { socket: None, config: Some(_), command: None })));
        assert!(matches!(p(&["console"]), Ok(Cmd::Console { socket: None, config: None, command: None })));
        assert!(matches!(p(&["version"]), Ok(Cmd::Version)));
    }

    #[test]
    fn usage_errors_are_refused() {
        let kind = |args: &[&str]| Cli::try_parse_from(std::iter::once("furiwake").chain(args.iter().copied())).err().map(|e| e.kind());
        use clap::error::ErrorKind;
        assert_eq!(kind(&["console", "--socket", "/s", "--config", "f.toml"]), Some(ErrorKind::ArgumentConflict));
        assert_eq!(kind(&["run"]), Some(ErrorKind::MissingRequiredArgument));
        assert_eq!(kind(&["run", "--config", "f", "--log-level", "off"]), Some(ErrorKind::ValueValidation));
        assert_eq!(kind(&["run", "--config", "f", "--frobnicate"]), Some(ErrorKind::UnknownArgument));
        assert_eq!(kind(&["frobnicate"]), Some(ErrorKind::InvalidSubcommand));
        assert_eq!(kind(&["--version"]), Some(ErrorKind::DisplayVersion));
        assert_eq!(kind(&["run", "--help"]), Some(ErrorKind::DisplayHelp));
    }
}
