#!/usr/bin/env bash
# Before and after, in one sitting (as root): builds the DPDK harness of
# BASE (a git revision) and of the working tree, then runs them in turn,
# A B B A ..., ROUNDS times over the same scenarios, so that the VM's drift
# between runs (1.5x here) falls on both alike. Reports each scenario's
# median Mpps and cycles/packet for both and their ratio, and writes
# bench/results/compare.md and compare.json. Prints figures; never fails on
# speed (only on a harness error).
#
#   bench/compare.sh BASE [ROUNDS] [FLOWS] [SECONDS]
#   bench/compare.sh f276bee 3 1000,1000000 1
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:?usage: bench/compare.sh BASE [ROUNDS] [FLOWS] [SECONDS]}
rounds=${2:-3}
flows=${3:-1000,1000000}
seconds=${4:-1}
scripts/setup.sh >/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

rev=$(git rev-parse --short "$base")
tree=$(mktemp -d /tmp/fw-compare-XXXXXX)
cleanup() { git worktree remove --force "$tree/base" >/dev/null 2>&1 || true; rm -rf "$tree"; }
trap cleanup EXIT
git worktree add --detach "$tree/base" "$rev" >/dev/null
echo "== building the harness at $rev (base) and of the working tree (new)"
(cd "$tree/base" && cargo build -q --release -p furiwake-bench --bin furiwake-bench --target-dir "$tree/target")
base_bin="$tree/target/release/furiwake-bench"
cargo build -q --release -p furiwake-bench --bin furiwake-bench
new_bin="$PWD/target/release/furiwake-bench"

run() { # which round
  local which=$1 r=$2 bin
  bin=$([ "$which" = base ] && echo "$base_bin" || echo "$new_bin")
  mkdir -p "$tree/$which-$r"
  echo "-- round $r: $which"
  "$bin" --flows "$flows" --seconds "$seconds" --out "$tree/$which-$r" >/dev/null
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) -eq 1 ]; then run base "$r"; run new "$r"; else run new "$r"; run base "$r"; fi
done

date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
/usr/bin/python3 - "$tree" "$rounds" "$rev" "$(git rev-parse --short HEAD)" "$date" "$seconds" <<'EOF'
import json, statistics, sys, os
tree, rounds, rev, head, date, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
def load(which):
    out = {}
    for r in range(1, rounds + 1):
        for s in json.load(open(os.path.join(tree, f"{which}-{r}", "harness.json")))["scenarios"]:
            if s["name"].startswith("open"):
                continue  # prefill: too short to time
            k = (s["name"], s["forwarding"], s["direction"], s["flows"], s["distribution"])
            out.setdefault(k, []).append(s)
    return out
b, n = load("base"), load("new")
rows, js = [], []
for k in b:
    if k not in n:
        continue
    bm = statistics.median(x["mpps"] for x in b[k]); nm = statistics.median(x["mpps"] for x in n[k])
    bc = statistics.median(x["cycles_per_packet"] for x in b[k]); nc = statistics.median(x["cycles_per_packet"] for x in n[k])
    spread = max(x["mpps"] for x in b[k] + n[k]) / max(min(x["mpps"] for x in b[k] + n[k]), 1e-9)
    # Each run's Mpps over the bare loop of the same run: the machine's
    # drift between runs cancels.
    bb = statistics.median(x["ratio_to_bare"] for x in b[k]); nb = statistics.median(x["ratio_to_bare"] for x in n[k])
    rows.append((k, bm, nm, nm / bm if bm else 0, bc, nc, spread, bb, nb, nb / bb if bb else 0))
    js.append({"scenario": k[0], "forwarding": k[1], "direction": k[2], "flows": k[3], "distribution": k[4], "base_mpps": bm, "new_mpps": nm, "ratio": nm / bm if bm else 0, "base_cycles": bc, "new_cycles": nc, "spread": spread, "base_x_bare": bb, "new_x_bare": nb, "ratio_x_bare": nb / bb if bb else 0})
lines = [f"# Before and after: {rev} (base) and {head} + working tree (new)", "",
         f"{date}, {rounds} rounds of each, alternating (A B B A ...), {seconds} s per phase; medians.", "",
         "| scenario | forwarding | direction | flows | distribution | base Mpps | new Mpps | new/base | base cycles/pkt | new cycles/pkt | max/min over all runs | base x bare | new x bare | new/base of x bare |",
         "|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
for k, bm, nm, ratio, bc, nc, spread, bb, nb, rb in rows:
    lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {k[4]} | {bm:.2f} | {nm:.2f} | {ratio:.3f} | {bc:.0f} | {nc:.0f} | {spread:.2f} | {bb:.3f} | {nb:.3f} | {rb:.3f} |")
ratios = [r[3] for r in rows if r[0][0] != "bare"]
xbare = [r[9] for r in rows if r[0][0] != "bare"]
lines += ["", f"Geometric mean of new/base over the {len(ratios)} forwarding scenarios: {statistics.geometric_mean(ratios):.3f} in Mpps, {statistics.geometric_mean(xbare):.3f} in Mpps over each run's bare loop."]
text = "\n".join(lines) + "\n"
print(text)
os.makedirs("bench/results", exist_ok=True)
open("bench/results/compare.md", "w").write(text)
json.dump({"date": date, "base": rev, "new": head, "rounds": rounds, "seconds": float(seconds), "rows": js}, open("bench/results/compare.json", "w"), indent=1)
EOF
