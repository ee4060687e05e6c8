#!/usr/bin/env bash
# End-to-end HTTP throughput: Furiwake against the kernel's nftables DNAT,
# on the same lab (scripts/netns.sh: client, switch, PREFIX-lb, 3 nginx).
#
#   bench/e2e.sh [--duration S] [--connections N]     (defaults 10 and 32)
#
# 1. furiwake run (configs/two-arm-nat.toml, a file prefix of its own) in
#    PREFIX-lb, its ports on net_af_packet, then on net_af_xdp (AF_XDP
#    sockets on the same veths); curl the VIP; wrk from the client at
#    http://192.0.2.100/id, keep-alive, then a new connection per request
#    ("Connection: close"); SIGTERM (exit 0 expected) and its final counters.
# 2. The same namespace without furiwake: the kernel routes between lb-out
#    and lb-in and an nftables round-robin DNAT (numgen inc mod 3) spreads
#    the VIP over the servers; the same two wrk runs.
# 3. A table furiwake/nftables per mode, also in bench/results/e2e.json and
#    bench/results/e2e.md.
#
# Prints figures and never fails on speed: it fails (exit 1) only when
# something does not work (nothing starts, curl fails or the VIP does not
# rotate over the servers, wrk sees more errors than one per connection,
# furiwake does not exit 0). Everything it starts is stopped by PID and its
# namespaces (fwe2e-*) are deleted at exit. Run as root; takes about 50 s.
#
# For each wrk run it also prints the CPU use of its middle (per CPU, and of
# furiwake's threads, wrk and each nginx) and where the limit is: on 2 CPUs,
# wrk, nginx, the kernel's veth/bridge/TCP work and the balancer share them.
# Other processes on the machine (builds, other benchmarks) are named, and a
# run they took >= 15% of a CPU from is flagged as disturbed.
#
# The backends are scripts/backend.sh's nginx (worker_processes 1, master
# process off, access log on). E2E_NGINX=tuned writes a variant without the
# access log and with keepalive_requests 1000000, E2E_NGINX=tuned2 the same
# with a master and worker_processes 2 (on this 2-CPU VM they measured the
# same as stock within run-to-run noise: nginx is not the bottleneck).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)

DURATION=10 CONNS=32 THREADS=2
NGINX=${E2E_NGINX:-stock}
usage() { echo "usage: $0 [--duration S] [--connections N]   (env E2E_NGINX=stock|tuned|tuned2)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --duration=*) DURATION=${1#*=}; shift ;;
    --connections) [ $# -ge 2 ] || usage; CONNS=$2; shift 2 ;;
    --connections=*) CONNS=${1#*=}; shift ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 3 ] || { echo "$0: --duration must be an integer >= 3" >&2; exit 2; }
[[ $CONNS =~ ^[0-9]+$ ]] && [ "$CONNS" -ge "$THREADS" ] || { echo "$0: --connections must be an integer >= $THREADS" >&2; exit 2; }
case "$NGINX" in stock|tuned|tuned2) ;; *) echo "$0: E2E_NGINX must be stock, tuned or tuned2" >&2; exit 2 ;; esac
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (the lab lives in network namespaces)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "e2e: FAIL: $*" >&2; exit 1; }

# What it needs, installed only when missing.
missing=()
for c in wrk:wrk nginx:nginx-light nft:nftables curl:curl ethtool:ethtool; do
  command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bins -q
BIN=$ROOT/target/release/furiwake

# One run at a time: the lab prefix is fixed (so a run killed hard is cleaned
# up by the next one) and two runs would share the two CPUs anyway.
LOCK=/run/lock/furiwake-bench-e2e.lock
exec 9>"$LOCK"
flock -n 9 || { echo "e2e: another bench/e2e.sh runs; waiting for it"; flock -w 300 9 || die "lock $LOCK still held after 300 s"; }

P=fwe2e                                  # namespaces fwe2e-*; <= 6 characters
FP=furiwake-e2e-$$                       # DPDK --file-prefix, unique per run
WORK=$(mktemp -d /tmp/furiwake-e2e.XXXXXX)
RESULTS=$ROOT/bench/results
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
forget() { local keep=() p; for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; pids=("${keep[@]}"); }

# Leftovers of an earlier run that was killed hard (we hold the lock).
"$ROOT/scripts/netns.sh" down $P
rm -rf /var/run/dpdk/furiwake-e2e-*
for d in /tmp/furiwake-e2e.*; do [ "$d" = "$WORK" ] || rm -rf "$d"; done

read -r load1 _ < /proc/loadavg
echo "e2e: wrk -t$THREADS -c$CONNS -d${DURATION}s; $(nproc) CPUs; load average $load1 before start"

# ---------------------------------------------------------------- the lab
say "lab $P: client 192.0.2.10 -- [lb-out | $P-lb | lb-in] -- srv1..3 198.51.100.11-13"
"$ROOT/scripts/netns.sh" up $P 3 1
# The client is a load generator: wrk sometimes closes first after
# "Connection: close", which leaves its side in TIME-WAIT; without reuse the
# ~14,000 ports connect() picks from fill up within one new-connection run,
# and connect() then burns the CPUs searching for a free port (and the next
# run inherits the full table).
ip netns exec $P-client sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
nginx_pids=()
for i in 1 2 3; do
  "$ROOT/scripts/backend.sh" nginx-conf "srv$i" "$WORK/srv$i"
  case "$NGINX" in
    stock) ;;
    tuned|tuned2)
      # backend.sh's server, minus the per-request access log, and keep-alive
      # connections that are not closed every 1000 requests (nginx's default).
      sed -i -e 's|^  access_log .*|  access_log off;|' -e 's|^http {|http {\n  keepalive_requests 1000000;|' "$WORK/srv$i/nginx.conf"
      if [ "$NGINX" = tuned2 ]; then
        sed -i -e 's/^master_process off;/master_process on;/' -e 's/^worker_processes 1;/worker_processes 2;/' "$WORK/srv$i/nginx.conf"
      fi
      ;;
  esac
  ip netns exec $P-srv$i nginx -p "$WORK/srv$i" -c "$WORK/srv$i/nginx.conf" 2>>"$WORK/srv$i/logs/stderr" 9>&- &
  pids+=($!); nginx_pids+=($!)
done
for i in 1 2 3; do
  ok=
  for _ in $(seq 1 50); do
    if [ "$(ip netns exec $P-srv$i curl -s -m 1 http://127.0.0.1/id 2>/dev/null)" = "srv$i" ]; then ok=1; break; fi
    kill -0 "${nginx_pids[$((i - 1))]}" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ok" ] || { cat "$WORK/srv$i/logs/"* >&2 || true; die "nginx on $P-srv$i does not answer"; }
done
case "$NGINX" in
  stock) NGINX_DESC="scripts/backend.sh's config: worker_processes 1, master_process off, access log on" ;;
  tuned) NGINX_DESC="scripts/backend.sh's config with access_log off and keepalive_requests 1000000; worker_processes 1" ;;
  tuned2) NGINX_DESC="scripts/backend.sh's config with access_log off and keepalive_requests 1000000; master + worker_processes 2" ;;
esac
echo "nginx up on srv1..3 ($NGINX_DESC)"

# ---------------------------------------------------------------- helpers
# cpu_snap: "cpuN user nice system idle iowait irq softirq steal" per CPU
# and "task LABEL TID COMM TICKS" per thread of the watched processes.
watch=()   # "label pid" entries: wrk, nginx, furiwake
cpu_snap() {
  grep -E '^cpu[0-9]+ ' /proc/stat
  local w
  for w in "${watch[@]}"; do
    cat /proc/"${w#* }"/task/*/stat 2>/dev/null | awk -v l="${w% *}" '{
      c = $0; sub(/\) .*$/, "", c); c = substr(c, index(c, "(") + 1); gsub(/ /, "_", c)
      r = $0; sub(/^.*\) /, "", r); split(r, f, " "); print "task", l, $1, c, f[12] + f[13] }'
  done
}
# proc_snap: "proc PID COMM PPID TICKS" per process of the machine.
proc_snap() {
  cat /proc/[0-9]*/stat 2>/dev/null | awk '{
    c = $0; sub(/\) .*$/, "", c); c = substr(c, index(c, "(") + 1); gsub(/ /, "_", c)
    r = $0; sub(/^.*\) /, "", r); split(r, f, " "); print "proc", $1, c, f[2], f[12] + f[13] }'
}
# cpu_report BEFORE AFTER PROCS SECONDS: per-CPU user/sys/softirq/idle, the
# CPU% (of one CPU) of the watched processes, and of the other processes of
# the machine (other sessions' builds and benchmarks: PROCS holds a
# proc_snap per second of the interval, so processes that come and go count).
cpu_report() {
  local mine=" $$ " w
  for w in "${watch[@]}"; do mine+="${w#* } "; done
  awk -v secs="$4" -v hz="$(getconf CLK_TCK)" -v mine="$mine" '
    FILENAME == ARGV[1] {
      if ($1 ~ /^cpu/) for (i = 2; i <= 9; i++) a[$1, i] = $i
      else if ($1 == "task") ta[$2 " " $3] = $5
      next
    }
    FILENAME == ARGV[2] {
      if ($1 ~ /^cpu/) {
        tot = 0; for (i = 2; i <= 9; i++) { d[i] = $i - a[$1, i]; tot += d[i] }
        if (tot <= 0) tot = 1
        cpus = cpus sprintf("  %s: user %2.0f%% sys %2.0f%% softirq %2.0f%% idle %2.0f%%;", $1,
          100 * (d[2] + d[3]) / tot, 100 * (d[4] + d[7]) / tot, 100 * d[8] / tot, 100 * (d[5] + d[6]) / tot)
        ncpu++; if (100 * (d[5] + d[6]) / tot < 5) busy = busy " " $1; else spare = spare sprintf(" %s %.0f%% idle", $1, 100 * (d[5] + d[6]) / tot)
      } else if ($1 == "task") {
        k = $2 " " $3; v = $5 - ((k in ta) ? ta[k] : 0); t[$2] += v
        if ($2 == "furiwake") th[$4] += v
      }
      next
    }
    $1 == "proc" {   # first sighting is the base (0 for a process born in the interval)
      if (index(mine, " " $2 " ") || $2 == 2 || $4 == 2) next     # ours, kernel threads
      if (!($2 in first)) { first[$2] = $5; born[$2] = (samples > 1); name[$2] = $3 }
      last[$2] = $5
      next
    }
    $1 == "sample" { samples++; next }
    END {
      print "  cpu" cpus
      s = "  cpu of (% of one CPU):"
      n = split("furiwake wrk srv1 srv2 srv3", order, " ")
      for (j = 1; j <= n; j++) if (order[j] in t) s = s sprintf(" %s %.0f%%", order[j], 100 * t[order[j]] / hz / secs)
      print s
      f = ""; for (c in th) if (th[c] * 100 / hz / secs >= 1) f = f sprintf(" %s %.0f%%", c, 100 * th[c] / hz / secs)
      if (f != "") print "  furiwake threads:" f
      for (p in last) {
        v = 100 * (last[p] - (born[p] ? 0 : first[p])) / hz / secs
        osum += v; if (v >= 3) others = others sprintf(" %s(%s) %.0f%%", name[p], p, v)
      }
      # Where the limit is: saturated CPUs, and processes at a full CPU.
      lim = ""
      if (busy != "" && spare == "") lim = "all CPUs busy (" substr(busy, 2) "): the machine is CPU-bound"
      else if (busy != "") lim = substr(busy, 2) " busy," spare
      else lim = "no CPU saturated: latency-bound (round trips per request)"
      for (j = 3; j <= n; j++) if (order[j] in t && 100 * t[order[j]] / hz / secs >= 85)
        lim = lim sprintf("; nginx on %s at %.0f%% of a CPU: the backends are the bottleneck", order[j], 100 * t[order[j]] / hz / secs)
      for (c in th) if (c ~ /worker/ && 100 * th[c] / hz / secs >= 85) lim = lim sprintf("; furiwake %s at %.0f%% of its CPU", c, 100 * th[c] / hz / secs)
      print "  limit: " lim
      if (osum >= 15) printf "  WARNING: other processes used %.0f%% of a CPU during this run, the figures are disturbed:%s\n", osum, others
      else printf "  other processes: %.0f%%%s\n", osum, others
    }' "$1" "$2" "$3"
}

# run_wrk NAME MODE: wrk from the client at the VIP; sets RPS and ERRS and
# prints the CPU use of the middle of the run.
run_wrk() {
  local name=$1 mode=$2 out=$WORK/wrk-$1-$2.txt hdr=()
  [ "$mode" = new-connection ] && hdr=(-H "Connection: close")
  ip netns exec $P-client wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" "${hdr[@]}" http://192.0.2.100/id > "$out" 2>&1 9>&- &
  local wpid=$!
  pids+=($wpid)
  watch+=("wrk $wpid")
  sleep 1
  # CPU use over the middle of the run (it is busy from 1 s to D-1 s).
  local win=$((DURATION - 2)) k t_a t_b
  t_a=$(date +%s.%N)
  cpu_snap > "$WORK/cpu-a"
  for k in $(seq 0 "$win"); do
    [ "$k" -eq 0 ] || sleep 1
    echo sample; proc_snap
  done > "$WORK/procs"
  cpu_snap > "$WORK/cpu-b"
  t_b=$(date +%s.%N)
  local rc=0; wait "$wpid" || rc=$?
  local tw; tw=$(ip netns exec $P-client ss -Htan state time-wait | wc -l)
  [ "$rc" -eq 0 ] || { cat "$out" >&2; die "$name $mode: wrk exited $rc"; }
  RPS=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  local reqs non2xx sock lat
  reqs=$(awk '/ requests in / { print $1 }' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out"); non2xx=${non2xx:-0}
  sock=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$out"); sock=${sock:-0}
  ERRS=$((non2xx + sock))
  lat=$(awk '$1 == "Latency" { print $2 }' "$out")
  printf '%-9s %-15s %10s req/s  %9s requests  latency avg %s  non-2xx %s  socket errors %s%s\n' "$name" "$mode" "$RPS" "$reqs" \
    "${lat:-?}" "$non2xx" "$sock" "$(grep -o 'connect [0-9]*, read [0-9]*, write [0-9]*, timeout [0-9]*' "$out" | sed 's/^/ (/; s/$/)/')"
  echo "  client sockets in TIME-WAIT after the run: $tw"
  local cpu; cpu=$(cpu_report "$WORK/cpu-a" "$WORK/cpu-b" "$WORK/procs" "$(awk -v a="$t_a" -v b="$t_b" 'BEGIN { print b - a }')")
  echo "$cpu"
  if grep -q WARNING <<<"$cpu"; then DISTURBED+=("$name $mode"); fi
  if grep -q "the backends are the bottleneck" <<<"$cpu"; then NGINX_BOUND+=("$name $mode"); fi
  CPU_NOTES+=("$name $mode: $RPS req/s" "$cpu")
  forget "$wpid"; unset 'watch[${#watch[@]}-1]'
  [ -n "$RPS" ] && [ "${reqs:-0}" -gt 0 ] || { cat "$out" >&2; die "$name $mode: wrk completed no request"; }
  # A run cut at its deadline may leave at most one error per connection.
  [ "$ERRS" -le "$CONNS" ] || { cat "$out" >&2; die "$name $mode: $ERRS errors (more than one per connection)"; }
}

# check_vip NAME: curl the VIP until it answers, then 6 requests must reach
# all three servers (both balancers are round robin).
check_vip() {
  local ok= got=()
  for _ in $(seq 1 50); do
    ip netns exec $P-client curl -sf -m 1 http://192.0.2.100/id >/dev/null 2>&1 && { ok=1; break; }
    sleep 0.1
  done
  [ -n "$ok" ] || die "$1: curl http://192.0.2.100/id gets no answer"
  local i r
  for i in 1 2 3 4 5 6; do
    r=$(ip netns exec $P-client curl -sf -m 2 http://192.0.2.100/id) || die "$1: curl http://192.0.2.100/id failed"
    got+=("$r")
  done
  echo "curl http://192.0.2.100/id x6: ${got[*]}"
  local distinct; distinct=$(printf '%s\n' "${got[@]}" | sort -u | tr '\n' ' ')
  [ "$distinct" = "srv1 srv2 srv3 " ] || die "$1: the VIP did not rotate over srv1..3 (got: $distinct)"
}

for i in 1 2 3; do
  for pid in ${nginx_pids[$((i - 1))]} $(pgrep -P "${nginx_pids[$((i - 1))]}" || true); do watch+=("srv$i $pid"); done
done
declare -A R
DISTURBED=() NGINX_BOUND=() CPU_NOTES=()

# ---------------------------------------------------------------- 1. furiwake
# run_furiwake NAME CONFIG: furiwake on CONFIG in $P-lb, the VIP checked, the
# two wrk runs (R[NAME,mode]), SIGTERM and its final counters.
run_furiwake() {
  local name=$1 cfg=$2
  "$BIN" check-config "$cfg" >/dev/null || die "furiwake check-config refuses $cfg"
  ip netns exec $P-lb "$BIN" run --config "$cfg" > "$WORK/$name.log" 2>&1 9>&- &
  fw=$!
  pids+=($fw)
  for _ in $(seq 1 200); do
    grep -q "furiwake: ready" "$WORK/$name.log" && break
    kill -0 $fw 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited before ready"; }
    sleep 0.1
  done
  grep -q "furiwake: ready" "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; die "$name not ready after 20 s"; }
  grep -E "^(furiwake|port)" "$WORK/$name.log" | sed 's/^/  /'
  # The health checks bring the three servers up, each at its own probe.
  for _ in $(seq 1 100); do
    [ "$(grep -c '^health: server .* up' "$WORK/$name.log")" -ge 3 ] && break
    sleep 0.1
  done
  watch+=("furiwake $fw")
  check_vip "$name"
  for mode in keep-alive new-connection; do
    run_wrk "$name" $mode; R[$name,$mode]=$RPS
    sleep 1
  done
  kill -TERM $fw
  for _ in $(seq 1 100); do kill -0 $fw 2>/dev/null || break; sleep 0.1; done
  if kill -0 $fw 2>/dev/null; then die "$name still running 10 s after SIGTERM"; fi
  rc=0; wait $fw || rc=$?
  forget $fw; unset 'watch[${#watch[@]}-1]'
  [ "$rc" -eq 0 ] || { cat "$WORK/$name.log" >&2; die "$name exited $rc after SIGTERM (0 expected)"; }
  echo "$name exited 0 after SIGTERM; final counters:"
  grep -E '^virtual-server www: conns' "$WORK/$name.log" | tail -1 | sed 's/^/  /' \
    || die "no virtual-server line in $name's final counters"
  sed -n '/== furiwake counters ==/,$p' "$WORK/$name.log" | sed 's/^/    /'
  # The kernel keeps the veths' neighbours; start each balancer clean.
  ip -n $P-client neigh flush all
  for i in 1 2 3; do ip -n $P-srv$i neigh flush all; done
}

# The demo's configuration names its ports' driver; the other one is the
# same file with the devices swapped (net_af_packet <-> net_af_xdp on the
# same veths, one queue each).
grep -q '"furiwake-demo"' configs/two-arm-nat.toml || die "configs/two-arm-nat.toml has no \"furiwake-demo\" file prefix to replace"
sed 's/"furiwake-demo"/"'"$FP"'"/' configs/two-arm-nat.toml > "$WORK/demo.toml"
if grep -q 'net_af_xdp0' "$WORK/demo.toml"; then
  cp "$WORK/demo.toml" "$WORK/af_xdp.toml"
  sed -e 's/net_af_xdp\([01]\),iface=\(lb-[a-z]*\)[^"]*"/net_af_packet\1,iface=\2"/' "$WORK/demo.toml" > "$WORK/af_packet.toml"
else
  cp "$WORK/demo.toml" "$WORK/af_packet.toml"
  sed -e 's/net_af_packet\([01]\),iface=\(lb-[a-z]*\)"/net_af_xdp\1,iface=\2,start_queue=0,queue_count=1"/' "$WORK/demo.toml" > "$WORK/af_xdp.toml"
fi
grep -q 'net_af_packet1,iface=lb-in"' "$WORK/af_packet.toml" && grep -q 'net_af_xdp1,iface=lb-in,' "$WORK/af_xdp.toml" \
  || die "configs/two-arm-nat.toml: cannot derive the af_packet and af_xdp variants"
say "1. furiwake run --config configs/two-arm-nat.toml (file prefix $FP) in $P-lb, on net_af_packet"
run_furiwake furiwake "$WORK/af_packet.toml"
say "1b. the same on net_af_xdp (AF_XDP sockets on the same veths)"
run_furiwake fw-xdp "$WORK/af_xdp.toml"

# ---------------------------------------------------------------- 2. kernel
say "2. kernel baseline in $P-lb: ip_forward + nftables DNAT numgen inc mod 3"
L="ip netns exec $P-lb"
$L ip link set lb-out up; $L ip link set lb-in up
$L ip addr flush dev lb-out; $L ip addr flush dev lb-in
$L ip addr add 192.0.2.2/24 dev lb-out
$L ip addr add 192.0.2.100/32 dev lb-out      # the kernel answers ARP for the VIP
$L ip addr add 198.51.100.1/24 dev lb-in
$L sysctl -qw net.ipv4.ip_forward=1
$L ethtool -K lb-out tx off >/dev/null; $L ethtool -K lb-in tx off >/dev/null
$L nft -f - <<'NFT'
flush ruleset
table ip lb {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr 192.0.2.100 tcp dport 80 dnat to numgen inc mod 3 map { 0 : 198.51.100.11, 1 : 198.51.100.12, 2 : 198.51.100.13 }
  }
}
NFT
$L nft list ruleset | sed 's/^/  /'
check_vip nftables
for mode in keep-alive new-connection; do
  run_wrk nftables $mode; R[nftables,$mode]=$RPS
  sleep 1
done
echo "conntrack entries in $P-lb after the runs: $($L cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo '?')"

# ---------------------------------------------------------------- 3. results
say "3. results (wrk -t$THREADS -c$CONNS -d${DURATION}s, http://192.0.2.100/id)"
mkdir -p "$RESULTS"
date_iso=$(date -Iseconds)
join() { local IFS=,; echo "$*" | sed 's/,/, /g'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }'; }
rows=() json=()
for mode in keep-alive new-connection; do
  f=${R[furiwake,$mode]} x=${R[fw-xdp,$mode]} k=${R[nftables,$mode]}
  rf=$(ratio "$f" "$k") rx=$(ratio "$x" "$k")
  best=af_packet; awk -v a="$x" -v b="$f" 'BEGIN { exit !(a > b) }' && best=af_xdp
  rows+=("| $mode | $f | $x | $k | $rf | $rx | $best |")
  json+=("{\"mode\": \"$mode\", \"furiwake_rps\": $f, \"furiwake_af_xdp_rps\": $x, \"nftables_rps\": $k, \"ratio\": $rf, \"ratio_af_xdp\": $rx, \"faster\": \"$best\"}")
done
{
  echo "| mode | furiwake af_packet req/s | furiwake af_xdp req/s | nftables req/s | af_packet/nftables | af_xdp/nftables | faster furiwake |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
  printf '%s\n' "${rows[@]}"
} > "$WORK/table.md"
column -t -s '|' -o '|' "$WORK/table.md" 2>/dev/null | grep -v -- '---' || cat "$WORK/table.md"
printf '{"date": "%s", "duration_s": %s, "connections": %s, "threads": %s, "results": [%s, %s]}\n' \
  "$date_iso" "$DURATION" "$CONNS" "$THREADS" "${json[0]}" "${json[1]}" > "$RESULTS/e2e.json"
{
  echo "# End-to-end throughput: furiwake vs nftables DNAT"
  echo
  echo "$date_iso, \`bench/e2e.sh\`: wrk -t$THREADS -c$CONNS -d${DURATION}s from the client namespace at"
  echo "http://192.0.2.100/id, 3 nginx backends ($NGINX_DESC),"
  echo "$(nproc) CPUs shared by wrk, nginx, the kernel and the balancer. new-connection sends"
  echo "\`Connection: close\`. furiwake: configs/two-arm-nat.toml (worker on CPU 1, idle_sleep_us 20), on"
  echo "net_af_packet and on net_af_xdp (one queue per veth), one after the other; nftables: ip_forward +"
  echo "\`dnat to numgen inc mod 3\` in the same namespace."
  echo
  cat "$WORK/table.md"
  echo
  if [ ${#NGINX_BOUND[@]} -gt 0 ]; then
    echo "**nginx was the bottleneck** (a backend process at a full CPU) during: $(join "${NGINX_BOUND[@]}")."
  else
    echo "No nginx process reached a full CPU: the backends were not the bottleneck."
  fi
  if [ ${#DISTURBED[@]} -gt 0 ]; then
    echo
    echo "**Other processes took CPU** during: $(join "${DISTURBED[@]}"); those figures are disturbed."
  fi
  echo
  echo "CPU during the middle of each run (% of one CPU for processes):"
  echo
  echo '```'
  printf '%s\n' "${CPU_NOTES[@]}"
  echo '```'
} > "$RESULTS/e2e.md"
if [ ${#NGINX_BOUND[@]} -gt 0 ]; then
  echo "WARNING: nginx was the bottleneck (a backend process at a full CPU) during: $(join "${NGINX_BOUND[@]}")"
else
  echo "nginx was not the bottleneck: no backend process reached a full CPU"
fi
[ ${#DISTURBED[@]} -eq 0 ] || echo "WARNING: other processes took CPU during: $(join "${DISTURBED[@]}"); those figures are disturbed"
echo "wrote $RESULTS/e2e.json and $RESULTS/e2e.md"
echo "e2e: done in $(($(date +%s) - T0)) s"
