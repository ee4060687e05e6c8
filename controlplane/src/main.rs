//! `furiwake`: the load-balancer appliance.
//!
//! ```text
//! furiwake run --config FILE [--log-level LEVEL]
//!                                  run the appliance (console on stdin/stdout)
//! furiwake check-config FILE       validate a configuration and exit
//! furiwake console [--socket PATH | --config FILE] [-c COMMAND]
//!                                  attach to a running appliance's console
//! furiwake version
//! ```

use furiwake::appliance::Appliance;
use furiwake::config::Config;
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const USAGE: &str = "usage:
  furiwake run --config FILE [--log-level error|warn|info|debug|trace]
                                 run the appliance (the level overrides [logging])
  furiwake check-config FILE     validate FILE and exit (non-zero on error)
  furiwake console [--socket PATH | --config FILE] [-c COMMAND]
                                 the console of a running appliance (default socket
                                 /run/furiwake/console.sock); -c runs one command and
                                 exits non-zero when it fails
  furiwake version               print the version
signals: SIGUSR1 prints counters; SIGTERM or SIGINT stops cleanly";

fn main() -> ExitCode {
    // Everything reaches the logger; the level is `[logging] level` (set
    // once the config is read) unless RUST_LOG says otherwise.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("trace")).format_target(false).init();
    log::set_max_level(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["run", "--config" | "-c", file] => run(Path::new(file), None),
        ["run", "--config" | "-c", file, "--log-level", level] | ["run", "--log-level", level, "--config" | "-c", file] => {
            match level.parse::<log::LevelFilter>() {
                Ok(l) if l != log::LevelFilter::Off => run(Path::new(file), Some(l)),
                _ => {
                    eprintln!("error: --log-level {level:?}: expected error, warn, info, debug or trace");
                    ExitCode::from(2)
                }
            }
        }
        ["check-config", file] => check(Path::new(file)),
        ["console", rest @ ..] => console(rest),
        ["version"] | ["--version"] | ["-V"] => {
            println!("furiwake {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn console(args: &[&str]) -> ExitCode {
    let mut socket: Option<String> = None;
    let mut command: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (*a, it.next()) {
            ("--socket" | "-s", Some(p)) => socket = Some(p.to_string()),
            ("--config", Some(f)) => match Config::load(Path::new(f)) {
                Ok(cfg) => socket = Some(cfg.console.socket),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            },
            ("-c" | "--command", Some(c)) => command = Some(c.to_string()),
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let socket = socket.unwrap_or_else(|| furiwake::config::DEFAULT_CONSOLE_SOCKET.to_string());
    furiwake::console::client::main(Path::new(&socket), command.as_deref())
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

fn run(path: &Path, level: Option<log::LevelFilter>) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    // The command line's level, else RUST_LOG's, else the config's.
    match level {
        Some(l) => log::set_max_level(l),
        None if std::env::var_os("RUST_LOG").is_none() => log::set_max_level(cfg.logging.level.filter()),
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
    let mut app = match Appliance::start(cfg) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    app.set_config_path(path);
    app.run(&stop, &dump);
    app.shutdown();
    ExitCode::SUCCESS
}
