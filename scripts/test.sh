#!/usr/bin/env bash
# Furiwake's whole test suite, from a fresh Debian 12 machine: installs what
# is missing, builds, and runs unit, DPDK platform and end-to-end tests.
# Run as root (the end-to-end tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { echo "+ $*"; "$@" 2>&1 | tee -a "$log"; }

# 1. The dataplane builds and passes its tests with no DPDK in sight:
#    pkg-config is pointed at nothing, so any dpdk-sys dependency would fail.
run env PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
  cargo test -p furiwake-dataplane --target-dir target/no-dpdk

# 2. The hot-path rules, mechanically: no unwrap/expect/panic outside tests
#    in dataplane/ and platform/ (their [lints] deny them), no warnings.
run cargo clippy --workspace --all-targets -- -D warnings

# 3. Everything else: unit tests, DPDK platform tests (net_ring/net_null),
#    the CLI, then end-to-end tests one at a time (each owns the CPU's
#    worker lcore and its own namespaces).
run cargo build --workspace --bins
run cargo test --workspace --exclude furiwake-e2e
run cargo test -p furiwake-e2e -- --test-threads=1

# 4. The statically linked build (feature `static`: DPDK archives with
#    +whole-archive, PMDs built in) passes the foundation tests too.
run cargo build -p furiwake --features static --target-dir target/static
run env FURIWAKE_BIN="$PWD/target/static/debug/furiwake" cargo test -p furiwake-e2e --test foundation -- --test-threads=1

awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
