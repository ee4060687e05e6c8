#!/usr/bin/env bash
# Fuzzing (README, "Tests"). Each run prints how many inputs ran.
#
#   scripts/fuzz.sh [N] [SEED]              the whole pipeline: a Worker over a
#                                           snapshot with every forwarding mode,
#                                           N mutated frames of every kind of
#                                           traffic (default 10 million), every
#                                           forwarded frame and the table checked
#                                           (dataplane/src/pipeline/fuzz.rs)
#   scripts/fuzz.sh config|console N [SEED] the config file / console command
#                                           parsers: N mutations of configs/*.toml
#                                           or of console lines
#                                           (controlplane/src/fuzz.rs)
#   scripts/fuzz.sh libfuzzer TARGET N      TARGET (pipeline, config, console) under
#                                           libFuzzer: coverage-guided with
#                                           `cargo +nightly fuzz` when cargo-fuzz and
#                                           a nightly toolchain are there, else the
#                                           same target built on stable and run
#                                           unguided (fuzz/)
#   scripts/fuzz.sh libfuzzer vrrp N        VRRP adverts as punted frames: the frame
#                                           checks, the wire parser, the instances'
#                                           checks and state machine
#                                           (controlplane/src/fuzz/vrrp.rs)
#
# The first three are deterministic for a seed and run on stable; the suite
# runs them (scripts/test.sh step 3b). Run longer with a bigger N, or with
# other seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  config|console)
    exec cargo run --quiet --release -p furiwake --example fuzz_parsers -- "$1" "${2:-100000}" "${3:-1592651789}" ;;
  libfuzzer)
    target=${2:?usage: $0 libfuzzer pipeline|config|console N}; runs=${3:-1000000}
    if command -v cargo-fuzz >/dev/null && cargo +nightly --version >/dev/null 2>&1; then
      cd fuzz
      # The pipeline's IPv6 seeds (dataplane/fuzz/corpus/pipeline) join its
      # corpus; libFuzzer writes what it finds into the first directory,
      # fuzz/corpus/pipeline (ignored by git).
      seeds=""
      if [ "$target" = pipeline ]; then mkdir -p corpus/pipeline; seeds="corpus/pipeline ../dataplane/fuzz/corpus/pipeline"; fi
      cargo +nightly fuzz run "$target" $seeds -- -runs="$runs" -max_len=4096 2>&1 | tail -n 3
    else
      echo "fuzz: cargo-fuzz or nightly missing: $target built on stable and run without coverage guidance"
      cargo build --quiet --release --manifest-path fuzz/Cargo.toml --bin "$target"
      fuzz/target/release/"$target" -runs="$runs" -max_len=4096 2>&1 | tail -n 2
    fi
    echo "fuzz libfuzzer $target: $runs inputs ran" ;;
  *)
    exec cargo run --quiet --release -p furiwake-dataplane --features testkit --example fuzz_pipeline -- "${1:-10000000}" "${2:-1592651789}" ;;
esac
