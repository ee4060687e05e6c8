#!/usr/bin/env bash
# New connections per second through Furiwake with the SYN proxy on,
# beside off, in one run on one lab (scripts/netns.sh: client, switch,
# PREFIX-lb, 3 nginx).
#
#   bench/synproxy.sh [--duration S] [--connections N] [--rounds R]   (defaults 8, 32, 3)
#
# One furiwake (release build, configs/two-arm-nat.toml's lab) serves two
# virtual servers over the same three nginx: 192.0.2.100:80 with
# syn_proxy = "off" to their port 80, and 192.0.2.100:8080 with
# syn_proxy = "on" to their port 8080. wrk from the client sends a
# new connection per request ("Connection: close") to one, then the other,
# R rounds alternating, so the two are measured under the same conditions;
# requests/s are new connections/s. Prints each run, the means and the
# ratio, the worker's SYN proxy counters, and writes
# bench/results/synproxy.{md,json}.
#
# Fails only when something does not work (nothing starts, curl fails, wrk
# sees more errors than one per connection); never on speed. Everything it
# starts is stopped by PID and its namespaces (fwsyn-*) are deleted. Run as
# root; about R x 2 x S seconds plus 15.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=8 CONNS=32 ROUNDS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --connections) CONNS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: $0 [--duration S] [--connections N] [--rounds R]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root" >&2; exit 1; }
die() { echo "synproxy: FAIL: $*" >&2; exit 1; }
missing=()
for c in wrk:wrk nginx:nginx-light curl:curl ethtool:ethtool; do
  command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
done
[ ${#missing[@]} -eq 0 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bins -q
BIN=$ROOT/target/release/furiwake

P=fwsyn FP=furiwake-syn-$$
WORK=$(mktemp -d /tmp/furiwake-syn.XXXXXX)
pids=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  "$ROOT/scripts/netns.sh" down $P || true
  rm -rf "$WORK" "/var/run/dpdk/$FP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$ROOT/scripts/netns.sh" down $P

"$ROOT/scripts/netns.sh" up $P 3 1
ip netns exec $P-client sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
for i in 1 2 3; do
  "$ROOT/scripts/backend.sh" nginx-conf "srv$i" "$WORK/srv$i"
  # A second port: each virtual server its own server port, so their
  # connections never share a server-side address pair (a client port
  # reused across the two would meet the other's TIME-WAIT on the server).
  sed -i -e 's|^  access_log .*|  access_log off;|' -e 's|^    listen 80;|    listen 80;\n    listen 8080;|' "$WORK/srv$i/nginx.conf"
  ip netns exec $P-srv$i nginx -p "$WORK/srv$i" -c "$WORK/srv$i/nginx.conf" 2>>"$WORK/srv$i/stderr" &
  pids+=($!)
done
sed -e "s/\"--file-prefix\", \"furiwake-demo\"/\"--file-prefix\", \"$FP\", \"--no-telemetry\"/" configs/two-arm-nat.toml > "$WORK/lb.toml"
grep -q "$FP" "$WORK/lb.toml" || die "cannot set the file prefix in configs/two-arm-nat.toml"
sed -i -e '/^\[\[virtual_server\]\]/,$d' "$WORK/lb.toml"
cat >> "$WORK/lb.toml" <<'EOF'
[[pool]]
name = "web8080"
algorithm = "round-robin"
health_check = "web-ok"
servers = [ { address = "198.51.100.11:8080" }, { address = "198.51.100.12:8080" }, { address = "198.51.100.13:8080" } ]

[[virtual_server]]
name = "plain"
address = "192.0.2.100:80"
pool = "web"
syn_proxy = "off"

[[virtual_server]]
name = "proxied"
address = "192.0.2.100:8080"
pool = "web8080"
syn_proxy = "on"

[console]
socket = ""
device = "none"
EOF
ip netns exec $P-lb "$BIN" run --config "$WORK/lb.toml" > "$WORK/furiwake.log" 2>&1 &
FW=$!; pids+=($FW)
for _ in $(seq 1 100); do grep -q "furiwake: ready" "$WORK/furiwake.log" && break; kill -0 $FW 2>/dev/null || break; sleep 0.1; done
grep -q "furiwake: ready" "$WORK/furiwake.log" || { cat "$WORK/furiwake.log" >&2; die "furiwake did not start"; }
for port in 80 8080; do
  ok=
  for _ in $(seq 1 60); do
    [ "$(ip netns exec $P-client curl -s -m 1 http://192.0.2.100:$port/id 2>/dev/null)" != "" ] && { ok=1; break; }
    sleep 0.5
  done
  [ -n "$ok" ] || { cat "$WORK/furiwake.log" >&2; die "no answer on 192.0.2.100:$port"; }
done

run() { # PORT -> requests/s
  local out rps err
  out=$(ip netns exec $P-client wrk -t2 -c"$CONNS" -d"${DURATION}s" -H "Connection: close" "http://192.0.2.100:$1/id" 2>&1)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  err=$(awk '/Socket errors:/ {gsub(",", ""); s = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+$/) s += $i; print s}' <<<"$out")
  [ -n "$rps" ] || { echo "$out" >&2; die "wrk gave no figure"; }
  [ "${err:-0}" -le "$CONNS" ] || { echo "$out" >&2; die "wrk saw $err socket errors"; }
  echo "$rps"
}
declare -a off on
for r in $(seq 1 "$ROUNDS"); do
  a=$(run 80); b=$(run 8080)
  off+=("$a"); on+=("$b")
  printf 'round %d: syn_proxy off %8.0f conn/s   on %8.0f conn/s\n' "$r" "$a" "$b"
done
mean() { printf '%s\n' "$@" | awk '{s += $1} END {printf "%.0f", s / NR}'; }
M_OFF=$(mean "${off[@]}") M_ON=$(mean "${on[@]}")
RATIO=$(awk -v a="$M_ON" -v b="$M_OFF" 'BEGIN {printf "%.2f", a / b}')
kill -USR1 $FW; sleep 0.5
COUNTERS=$(grep -E "^  syn-proxy:" "$WORK/furiwake.log" | tail -1 | sed 's/^ *//')
DROPS=$(awk '/^== furiwake counters ==/ {d = ""} /^  drop / {sub(/^  drop /, ""); d = d (d ? "; " : "") $0} END {print d}' "$WORK/furiwake.log")
echo "worker drops: ${DROPS:-none}"
echo "mean: off $M_OFF conn/s, on $M_ON conn/s, on/off $RATIO; $COUNTERS"

DATE=$(date -u +%Y-%m-%d)
mkdir -p bench/results
cat > bench/results/synproxy.json <<JSON
{"date": "$DATE", "duration_s": $DURATION, "connections": $CONNS, "rounds": $ROUNDS, "off": [$(IFS=,; echo "${off[*]}")], "on": [$(IFS=,; echo "${on[*]}")], "mean_off": $M_OFF, "mean_on": $M_ON, "ratio": $RATIO}
JSON
{
  echo "# SYN proxy: new connections per second, on beside off"
  echo
  echo "$DATE, \`bench/synproxy.sh\` (this file is its output). One furiwake (release, one worker,"
  echo "net_af_packet lab of scripts/netns.sh, 2-CPU VM shared with wrk and the three nginx),"
  echo "two virtual servers over the same three nginx: :80 with \`syn_proxy = \"off\"\` (to their port 80), :8080 with"
  echo "\`syn_proxy = \"on\"\` (to their port 8080). wrk -t2 -c$CONNS -d${DURATION}s, a new connection per request"
  echo "(\`Connection: close\`), the two alternating for $ROUNDS rounds."
  echo
  echo "| round | off (conn/s) | on (conn/s) |"
  echo "| ---: | ---: | ---: |"
  for i in $(seq 0 $((ROUNDS - 1))); do printf '| %d | %.0f | %.0f |\n' $((i + 1)) "${off[$i]}" "${on[$i]}"; done
  echo "| **mean** | **$M_OFF** | **$M_ON** |"
  echo
  echo "on/off: **$RATIO**. Worker counters after the runs: \`$COUNTERS\`; drops: ${DROPS:-none}."
  echo
  echo "A proxied connection costs the box three more segments (the cookie SYN-ACK, the SYN"
  echo "and the last ACK it writes, or the replayed first request) and a translation of every"
  echo "segment after; its handshake with the client completes without waiting for the server."
  echo "On this VM the limit is the two CPUs wrk, nginx and the kernel's veth work share with"
  echo "the worker, so the two measure alike; a ratio well under 1 would be the proxy's cost."
  echo "Another DPDK process pinned to the worker's CPU (a second lab left running) showed as"
  echo "a ratio of 0.1-0.3 in one run: run it on a quiet machine."
} > bench/results/synproxy.md
echo "wrote bench/results/synproxy.md"
