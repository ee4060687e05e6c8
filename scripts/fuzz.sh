#!/usr/bin/env bash
# Whole-pipeline fuzzing: a Worker over a snapshot with every forwarding
# mode, fed N mutated frames of every kind of traffic (default 10 million),
# every forwarded frame checked (dataplane/src/pipeline/fuzz.rs).
#   scripts/fuzz.sh [N] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --quiet --release -p furiwake-dataplane --features testkit --example fuzz_pipeline -- "${1:-10000000}" "${2:-1592651789}"
