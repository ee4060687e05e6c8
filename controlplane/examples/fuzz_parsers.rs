//! Runs the parser fuzz targets (`furiwake::fuzz`) on stable for N inputs:
//! mutations of a seed corpus (the shipped `configs/*.toml`, console
//! command lines), each checked, and prints how many ran.
//! `scripts/fuzz.sh` runs it; cargo-fuzz runs the same targets guided by
//! coverage (`fuzz/`).
//!
//!     fuzz_parsers config|console N [SEED]
#![allow(clippy::print_stdout, reason = "a command-line tool")]

use std::process::ExitCode;
use std::time::Instant;

/// Console lines the mutations start from: every command, valid and not.
const LINES: &[&str] = &[
    "help",
    "help show",
    "show virtual-servers",
    "show virtual-servers www",
    "show pools",
    "show servers web",
    "show connections 20",
    "show connections vs www server 198.51.100.11:80 state ESTABLISHED",
    "show stats",
    "show arp",
    "show routes",
    "show health",
    "show workers",
    "show config",
    "show sync",
    "show vrrp",
    "server web 198.51.100.11:80 drain",
    "server web 198.51.100.11:80 enable",
    "server web 198.51.100.11:80 disable",
    "server web 198.51.100.11:80 weight 3",
    "pool web add-server 198.51.100.14:80 weight 2",
    "pool web remove-server 198.51.100.14:80",
    "virtual-server add api 192.0.2.101:80 pool web",
    "virtual-server add api 192.0.2.101:53 pool dns udp full-nat",
    "virtual-server add t 192.0.2.102:80 pool web dsr-tunnel gue",
    "virtual-server add d 192.0.2.103:80 pool web dsr-dscp 46",
    "virtual-server remove api",
    "config reload",
    "config save",
    "log level debug",
    "vrrp release",
    "quit",
    "sh vi",
    "",
];

/// A fuzz target: one input, `Err` for a broken invariant.
type Target = fn(&[u8]) -> Result<(), String>;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Tokens mutations insert: the syntax and the values parsers trip on.
const TOKENS: &[&str] = &[
    "=", "[", "]", "[[", "]]", "{", "}", "\"", "'", ",", ".", ":", "\n", " ", "#", "0", "-1", "4294967296", "99999999999999999999", "1e9", "true", "\u{fe0f}", "\\u0000", "0.0.0.0", "255.255.255.255", "192.0.2.100:80", "/33", "[[virtual_server]]\n", "[[pool]]\n", "[[interface]]\n", "[defence]\n", "[defence.punt]\n", "syn_proxy = \"on\"\n", "forwarding = \"dsr-l2\"\n", "weight", "vs", "all", "udp", "gue",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(6) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 if !b.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                b.drain(at.min(end)..end);
            }
            2 if !b.is_empty() => {
                let from = rng.below(b.len());
                let end = (from + 1 + rng.below(32)).min(b.len());
                let piece = b[from..end].to_vec();
                b.splice(at..at, piece);
            }
            _ => {
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                b.splice(at..at, t.iter().copied());
            }
        }
    }
    b
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_default();
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0x5eed_c0de);
    let (corpus, check): (Vec<Vec<u8>>, Target) = match target.as_str() {
        "config" => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
            let mut files: Vec<Vec<u8>> = std::fs::read_dir(&dir).map(|d| d.filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect()).unwrap_or_default();
            files.sort();
            (files, furiwake::fuzz::config)
        }
        "console" => (LINES.iter().map(|l| l.as_bytes().to_vec()).collect(), furiwake::fuzz::console),
        _ => {
            eprintln!("usage: fuzz_parsers config|console N [SEED]");
            return ExitCode::FAILURE;
        }
    };
    if corpus.is_empty() {
        eprintln!("fuzz {target}: no seed corpus");
        return ExitCode::FAILURE;
    }
    let mut rng = Rng(seed | 1);
    let t0 = Instant::now();
    for (i, s) in corpus.iter().enumerate() {
        if let Err(e) = check(s) {
            eprintln!("fuzz {target}: seed {i} breaks an invariant: {e}");
            return ExitCode::FAILURE;
        }
    }
    for i in 0..n {
        let s = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, s);
        if let Err(e) = check(&input) {
            eprintln!("fuzz {target}: input {i} (seed {seed}) breaks an invariant: {e}\ninput: {:?}", String::from_utf8_lossy(&input));
            return ExitCode::FAILURE;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!("fuzz {target}: {n} inputs ran in {secs:.1} s ({:.0} per second), no panic, no broken invariant", n as f64 / secs);
    ExitCode::SUCCESS
}
