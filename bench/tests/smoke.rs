//! Runs every harness scenario for a fraction of a second on real DPDK
//! (`net_ring`, `--no-huge`) and checks that it measured a working path:
//! the harness validates every output packet (rewritten addresses and
//! ports, TTL, MACs, IPv4 and TCP checksums recomputed) and exits non-zero
//! on any wrong packet or on a scenario that forwarded nothing.

// An integration test: its helpers fail the test by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic, reason = "test code")]

use std::process::Command;

#[test]
fn every_scenario_forwards_correct_packets() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI=true and not root: DPDK cannot start");
        eprintln!("SKIPPED (not CI): the DPDK harness needs root");
        return;
    }
    let out_dir = std::env::temp_dir().join(format!("furiwake-bench-smoke-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_furiwake-bench"))
        .args(["--smoke", "--out", out_dir.to_str().unwrap()])
        .output()
        .expect("run furiwake-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "harness failed ({}):\n{stdout}\n{stderr}", out.status);
    let json = std::fs::read_to_string(out_dir.join("harness.json")).expect("harness.json");
    let _ = std::fs::remove_dir_all(&out_dir);
    for needle in [
        "\"name\": \"bare\"",
        "\"name\": \"established\", \"forwarding\": \"nat\", \"direction\": \"original\", \"flows\": 1000, \"distribution\": \"uniform\"",
        "\"distribution\": \"zipf\"",
        "\"name\": \"established\", \"forwarding\": \"nat\", \"direction\": \"reply\"",
        "\"name\": \"new-connections\"",
        "\"name\": \"teardown (rst)\"",
        "\"name\": \"mixed 89/10/1\"",
        "\"name\": \"established\", \"forwarding\": \"full-nat\", \"direction\": \"original\"",
        "\"name\": \"established\", \"forwarding\": \"full-nat\", \"direction\": \"reply\"",
        "\"name\": \"established\", \"forwarding\": \"dsr-l2\", \"direction\": \"original\"",
        "\"name\": \"established\", \"forwarding\": \"dsr-tunnel\", \"direction\": \"original\"",
    ] {
        assert!(json.contains(needle), "{needle} missing from:\n{json}");
    }
    assert!(!json.contains("\"errors\": 1") && json.matches("\"errors\": 0").count() >= 15, "{json}");
    assert!(stdout.contains("| established | nat | original | 1000 | uniform |"), "{stdout}");
    // Two workers: placed on the RX queue the NIC's RSS would choose under
    // the keys and RETA Furiwake programs, no packet is handed between
    // them, NAT and full-NAT, both directions; placed regardless of the
    // hash, about half are.
    for fwd in ["nat", "full-nat"] {
        let row = |dist: &str| {
            let at = json.find(&format!("\"name\": \"2 workers established\", \"forwarding\": \"{fwd}\", \"direction\": \"both\", \"flows\": 1000, \"distribution\": \"{dist}\"")).unwrap_or_else(|| panic!("2 workers {fwd} {dist} missing:\n{json}"));
            let rest = &json[at..];
            let num = |key: &str| -> u64 {
                let k = rest.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key}")) + key.len() + 4;
                rest[k..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
            };
            (num("packets"), num("handed_over"))
        };
        let (packets, handed) = row("rss-steered");
        assert!(packets > 0 && handed == 0, "{fwd}, RSS-steered: {handed} of {packets} handed over");
        let (packets, handed) = row("unsteered");
        assert!(handed * 4 > packets, "{fwd}, unsteered: only {handed} of {packets} handed over");
    }
}
