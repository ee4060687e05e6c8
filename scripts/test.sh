#!/usr/bin/env bash
# Furiwake's whole test suite, from a fresh Debian 12 machine: installs what
# is missing, builds, and runs unit, DPDK platform and end-to-end tests.
# Run as root (the end-to-end tests create network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# The dataplane tests Miri runs (the rest take hours under it or need
# nothing Miri adds): wire formats, the connection table, the shared cells,
# bursts and the rewrites (not the full-NAT port pools: 60,000 ports a test).
MIRI_TESTS="wire:: conntrack:: state:: ctl:: io:: forward:: region:: --skip local_ports"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() { echo "+ $*"; local t=$SECONDS; "$@" 2>&1 | tee -a "$log"; echo "  ($((SECONDS - t)) s)"; }

# 1. The dataplane builds and passes its tests with no DPDK in sight:
#    pkg-config is pointed at nothing, so any dpdk-sys dependency would fail.
run env PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
  cargo test -p furiwake-dataplane --target-dir target/no-dpdk

# 2. The house rules, mechanically: the workspace lints (SAFETY comments on
#    every unsafe block, no unwrap/expect/panic outside tests, no panicking
#    index in the dataplane), no warnings; the structure (no module cycle,
#    no #[path], no non-test file over 600 lines).
run cargo clippy --workspace --all-targets -- -D warnings
run python3 scripts/check-structure.py

# 2b. The cells shared between the control plane and the workers, model
#     checked with loom (every interleaving), and the wire, table, cell and
#     rewrite tests under Miri (undefined behaviour, out-of-bounds, races).
run env RUSTFLAGS="--cfg loom" cargo test -p furiwake-dataplane --release --lib --target-dir target/loom loom
run env PROPTEST_CASES=4 MIRIFLAGS=-Zmiri-disable-isolation PKG_CONFIG_LIBDIR=/nonexistent PKG_CONFIG_PATH= \
  cargo +nightly miri test -p furiwake-dataplane --lib --target-dir target/miri -- $MIRI_TESTS

# 3. Everything else: unit tests, DPDK platform tests (net_ring/net_null),
#    the CLI, then end-to-end tests one at a time (each owns the CPU's
#    worker lcore and its own namespaces).
run cargo build --workspace --bins
run cargo test --workspace --exclude furiwake-e2e
# 3b. Fuzzing: 10 million mutated frames of every kind of traffic through
#     a worker with every forwarding mode and the SYN proxy, every forwarded
#     frame and the table checked (dataplane/src/pipeline/fuzz.rs); 200,000
#     mutated config files and 1 million console lines through their
#     parsers (controlplane/src/fuzz.rs); then the same three targets
#     under libFuzzer, guided by coverage (fuzz/, cargo-fuzz on nightly).
#     VRRP adverts under libFuzzer: 200,000 frames (controlplane/src/fuzz/vrrp.rs).
#     Longer: scripts/fuzz.sh N, README "Tests".
run scripts/fuzz.sh 10000000
run scripts/fuzz.sh config 200000
run scripts/fuzz.sh console 1000000
run scripts/fuzz.sh libfuzzer pipeline 200000
run scripts/fuzz.sh libfuzzer vrrp 200000
run scripts/fuzz.sh libfuzzer config 100000
run scripts/fuzz.sh libfuzzer console 300000
# The sync datagram's parsers (frame, then decode under a fixed key).
run scripts/fuzz.sh libfuzzer sync 300000
# 3c. The appliance: the statically linked release build (feature
#     `static`: DPDK archives with +whole-archive, PMDs built in), its
#     Debian package, and the disk image with the package installed into
#     a fresh Debian 12 (the boot test's configuration and its test-only
#     passwords baked in, so in target/image-test, never where image.sh
#     puts an operator's); tests/appliance.rs boots it under QEMU with the
#     e2e tests.
run cargo build --release -p furiwake --features static --target-dir target/static
run bash scripts/deb.sh --binary target/static/release/furiwake
run bash scripts/image.sh --deb "$(ls target/deb/furiwake_*_amd64.deb | head -n 1)" --out target/image-test \
  --config tests/appliance/furiwake.toml --password-file tests/appliance/admin.password \
  --root-password-file tests/appliance/root.password
run cargo test -p furiwake-e2e -- --test-threads=1

# 4. The statically linked build passes the foundation tests too.
run env FURIWAKE_BIN="$PWD/target/static/release/furiwake" cargo test -p furiwake-e2e --test foundation -- --test-threads=1

awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
