#!/usr/bin/env bash
# The whole benchmark, one command (as root): the DPDK harness over every
# scenario (bare, established at 1k/100k/1M/10M flows uniform and Zipf,
# replies, new connections and teardown, mixed, full-NAT), the criterion
# micro-benchmarks, the end-to-end comparison with nftables, and the plot.
# Writes bench/results/{harness.json,harness.md,mpps.dat,mpps.png,micro.txt,control.txt,
# e2e.json,e2e.md}. Prints figures; never fails on speed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
out=bench/results
mkdir -p "$out"
cargo build -q --release --bins

echo "== harness (DPDK net_ring, production worker on lcore 1)"
./target/release/furiwake-bench --out "$out"

echo "== plot"
gnuplot -e "dat='$out/mpps.dat'; png='$out/mpps.png'" bench/plot.gp && echo "$out/mpps.png"

echo "== micro-benchmarks (criterion)"
cargo bench -q -p furiwake-bench --bench micro 2>&1 | grep -E "^[a-z].*/|time:" | tee "$out/micro.txt"

echo "== the control plane at appliance scale (criterion)"
cargo bench -q -p furiwake-bench --bench control 2>&1 | grep -E "^[a-z].*/|time:|thrpt:" | tee "$out/control.txt"

echo "== end to end (wrk through furiwake and through nftables DNAT)"
bench/e2e.sh

echo "== SYN proxy: new connections per second, on beside off"
bench/synproxy.sh
