//! `furiwake check-config` as an operator runs it: no root, no DPDK.

// An integration test: its helpers fail the test by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn furiwake(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_furiwake")).args(args).output().expect("run furiwake");
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A config file in the temp dir, removed when dropped.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn scratch(name: &str, text: &str) -> Scratch {
    let p = std::env::temp_dir().join(format!("furiwake-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).expect("write");
    Scratch(p)
}

const BASE: &str = r#"[platform]
eal_args = ["--no-huge", "-m", "512", "--no-pci"]
control_lcore = 0
worker_lcores = [1]

[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[pool]]
name = "web"
servers = [ { address = "198.51.100.11:8080" } ]

[[virtual_server]]
name = "www"
address = "192.0.2.100:80"
pool = "web"
"#;

#[test]
fn good_config_passes() {
    let p = scratch("good.toml", BASE);
    let (code, out, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("ok (1 interfaces, 1 pools, 1 virtual servers)"), "{out}");
}

#[test]
fn typo_key_is_refused_with_its_line() {
    let p = scratch("typo.toml", &BASE.replace("worker_lcores = [1]", "worker_lcore = [1]"));
    let (code, _, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    // The first line of the error says where and what.
    let first = err.lines().next().unwrap_or_default();
    assert!(first.starts_with(&format!("error: {}:4:1:", p.display())), "{err}");
    assert!(first.contains("unknown field `worker_lcore`"), "{err}");
}

#[test]
fn bad_address_is_refused_with_its_line() {
    let p = scratch("addr.toml", &BASE.replace("198.51.100.11:8080", "198.51.100.311:8080"));
    let (code, _, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{}:13:", p.display())), "{err}");
    assert!(err.contains("invalid address \"198.51.100.311:8080\""), "{err}");

    let p = scratch("self.toml", &BASE.replace("192.0.2.2/24", "192.0.2/24"));
    let (code, _, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains(&format!("{}:9:", p.display())), "{err}");
}

/// A weight beyond the console's limit is refused at its place, with
/// the range (issue 11: it used to pass and then cost O(total weight)).
#[test]
fn out_of_range_weight_is_refused_with_its_place_and_range() {
    let p = scratch("weight.toml", &BASE.replace("{ address = \"198.51.100.11:8080\" }", "{ address = \"198.51.100.11:8080\", weight = 4000000000 }"));
    let (code, out, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_ne!(code, Some(0), "{out}");
    assert_eq!(code, Some(1), "{err}");
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(first, format!("error: {}:13:56: weight 4000000000 is out of range: allowed 0..=10000", p.display()), "{err}");
    assert!(first.contains("0..=10000"), "{err}");

    // The boundary passes.
    let p = scratch("weight-max.toml", &BASE.replace("{ address = \"198.51.100.11:8080\" }", "{ address = \"198.51.100.11:8080\", weight = 10000 }"));
    let (code, _, err) = furiwake(&["check-config", p.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn missing_file_and_bad_usage_fail() {
    let (code, _, err) = furiwake(&["check-config", "/nonexistent/furiwake.toml"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read"), "{err}");
    let (code, _, err) = furiwake(&["frobnicate"]);
    assert_eq!(code, Some(2));
    // clap's words: the error, then the usage of every command.
    assert!(err.contains("unrecognized subcommand 'frobnicate'"), "{err}");
    assert!(err.contains("Usage:") && err.contains("furiwake check-config FILE"), "{err}");
    let (code, _, err) = furiwake(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("Usage:"), "{err}");
}

/// Help for each command on stdout with status 0; an unknown flag or a
/// missing value is a usage error: status 2, the reason and the usage.
#[test]
fn help_and_usage_errors() {
    let (code, out, err) = furiwake(&["run", "--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Usage: furiwake run"), "{out}");
    assert!(out.contains("-c, --config <FILE>") && out.contains("--log-level <LEVEL>"), "{out}");
    for top in [&["--help"][..], &["help"], &["-h"]] {
        let (code, out, err) = furiwake(top);
        assert_eq!(code, Some(0), "{top:?}: {err}");
        for cmd in ["run --config FILE", "check-config FILE", "console [--socket PATH | --config FILE] [-c COMMAND]", "version"] {
            assert!(out.contains(&format!("furiwake {cmd}")), "{top:?}: {out}");
        }
    }
    let (code, out, err) = furiwake(&["console", "--help"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("-s, --socket <PATH>") && out.contains("-c, --command <COMMAND>") && out.contains("--config <FILE>"), "{out}");

    let (code, out, err) = furiwake(&["run", "--config", "x.toml", "--frobnicate"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(err.contains("unexpected argument '--frobnicate'") && err.contains("Usage: furiwake run"), "{err}");
    let (code, _, err) = furiwake(&["check-config", "--strict", "x.toml"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = furiwake(&["run"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--config <FILE>"), "{err}");
    let (code, _, err) = furiwake(&["console", "--socket", "/nonexistent/x.sock", "--config", "x.toml"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot be used with"), "{err}");
    for v in [&["version"][..], &["--version"], &["-V"]] {
        let (code, out, _) = furiwake(v);
        assert_eq!((code, out.trim()), (Some(0), concat!("furiwake ", env!("CARGO_PKG_VERSION"))), "{v:?}");
    }
}

/// `furiwake console` reaching no appliance: 2; a bad `--config`: 2.
#[test]
fn console_without_an_appliance_exits_2() {
    let (code, _, err) = furiwake(&["console", "-s", "/nonexistent/x.sock", "-c", "show pools"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("cannot connect to the console at /nonexistent/x.sock"), "{err}");
    let p = scratch("console-bad.toml", &BASE.replace("pool = \"web\"\n", "pool = \"nope\"\n"));
    let (code, _, err) = furiwake(&["console", "--config", p.to_str().unwrap(), "-c", "show pools"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no pool named \"nope\""), "{err}");
}

#[test]
fn run_refuses_bad_config_before_touching_dpdk() {
    let p = scratch("run-bad.toml", &BASE.replace("pool = \"web\"\n", "pool = \"nope\"\n"));
    let (code, out, err) = furiwake(&["run", "--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no pool named \"nope\""), "{err}");
    assert!(!out.contains("DPDK"), "EAL was not started: {out}");
}

/// Every example in configs/ is valid.
#[test]
fn example_configs_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let (code, out, err) = furiwake(&["check-config", p.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{}: {err}{out}", p.display());
        n += 1;
    }
    assert!(n >= 2, "configs/ holds the examples ({n} found)");
}

/// `run --log-level` takes the five levels; anything else is refused
/// before DPDK starts, with the choices.
#[test]
fn run_refuses_an_unknown_log_level() {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/two-arm-nat.toml");
    for bad in ["loud", "off", ""] {
        let (code, _, err) = furiwake(&["run", "--config", cfg.to_str().unwrap(), "--log-level", bad]);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        assert!(err.contains("expected error, warn, info, debug or trace"), "{err}");
    }
    let (code, out, _) = furiwake(&["help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--log-level"), "{out}");
}
