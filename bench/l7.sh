#!/usr/bin/env bash
# The L7 engine against HAProxy, in one run, on the same lab and CPUs
# (scripts/netns.sh: client, switch, PREFIX-lb, 3 nginx).
#
#   bench/l7.sh [--duration S] [--connections N]     (defaults 8 and 32)
#
# 1. furiwake (release build) in PREFIX-lb with an `http` virtual server on
#    VIP:80 and an `https` one on VIP:443 over the three servers, round
#    robin, `[l7] threads = 1` on CPU 0 (the worker lcore on CPU 1);
#    wrk from the client: keep-alive and a new connection per request
#    ("Connection: close"), HTTP and HTTPS; then a bulk HTTPS download.
# 2. The same namespace without furiwake: the kernel routes, HAProxy 2.6
#    (Debian's) with `nbthread 1` pinned to CPU 0, `mode http`, roundrobin,
#    http-reuse always, the same certificate (ECDSA P-256), h2/http1.1 by
#    ALPN; the same wrk runs and the same download.
# 3. A table: requests/s, p50 and p99 latency (wrk --latency), the ratio
#    furiwake/HAProxy; the CPU each side used per request (furiwake's
#    engine thread and its worker, which carries the exception path both
#    ways; HAProxy's thread and the kernel's forwarding are not split);
#    TLS handshakes per second of engine CPU and bulk MB/s per core.
#    In bench/results/l7.json and bench/results/l7.md.
#
# Prints figures and never fails on speed; fails (exit 1) when something
# does not work (nothing starts, a VIP does not answer, wrk sees more
# errors than one per connection). Everything it starts is stopped by PID
# and its namespaces (fwl7-*) deleted at exit. Run as root; about 90 s.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T0=$(date +%s)

DURATION=8 CONNS=32 THREADS=2
usage() { echo "usage: $0 [--duration S] [--connections N]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) [ $# -ge 2 ] || usage; DURATION=$2; shift 2 ;;
    --connections) [ $# -ge 2 ] || usage; CONNS=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "$0: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 3 ] || { echo "$0: --duration must be an integer >= 3" >&2; exit 2; }
[[ $CONNS =~ ^[0-9]+$ ]] && [ "$CONNS" -ge "$THREADS" ] || { echo "$0: --connections must be >= $THREADS" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "$0: run as root (the lab lives in network namespaces)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "l7: FAIL: $*" >&2; exit 1; }

missing=()
for c in wrk:wrk nginx:nginx-light haproxy:haproxy curl:curl openssl:openssl ethtool:ethtool; do
  command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts its own HAProxy service on install: not ours.
  systemctl disable --now haproxy >/dev/null 2>&1 || true
fi
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bins -q
BIN=$ROOT/target/release/furiwake

LOCK=/run/lock/furiwake-bench-e2e.lock   # shared with bench/e2e.sh: one lab at a time
exec 9>"$LOCK"
flock -w 300 9 || die "lock $LOCK still held after 300 s"

P=fwl7
FP=furiwake-l7b-$$
WORK=$(mktemp -d /tmp/furiwake-l7b.XXXXXX)
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
"$ROOT/scripts/netns.sh" down $P

say "lab $P; certificates"
"$ROOT/scripts/netns.sh" up $P 3 1
ip netns exec $P-client sysctl -qw net.ipv4.tcp_tw_reuse=1 net.ipv4.ip_local_port_range="1024 65535"
"$ROOT/tests/scripts/mkcerts.sh" "$WORK/certs"
cat "$WORK/certs/a.pem" "$WORK/certs/a.key" > "$WORK/certs/haproxy.pem"
nginx_pids=()
for i in 1 2 3; do
  "$ROOT/scripts/backend.sh" nginx-conf "srv$i" "$WORK/srv$i" 64
  sed -i -e 's|^  access_log .*|  access_log off;|' -e 's|^http {|http {\n  keepalive_requests 1000000;|' "$WORK/srv$i/nginx.conf"
  ip netns exec $P-srv$i nginx -p "$WORK/srv$i" -c "$WORK/srv$i/nginx.conf" 2>>"$WORK/srv$i/nginx.err" 9>&- &
  pids+=($!); nginx_pids+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 50); do
    [ "$(ip netns exec $P-srv$i curl -s -m 1 http://127.0.0.1/id 2>/dev/null)" = "srv$i" ] && continue 2
    sleep 0.1
  done
  die "nginx on $P-srv$i does not answer"
done
CA=$WORK/certs/ca.pem
CURL="ip netns exec $P-client curl -sf -m 5 --cacert $CA --resolve a.example:443:192.0.2.100"

# ticks PID: utime+stime of every thread of PID, as "TID COMM TICKS" lines.
ticks() { cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{ c = $0; sub(/\) .*$/, "", c); c = substr(c, index(c, "(") + 1); gsub(/ /, "_", c); r = $0; sub(/^.*\) /, "", r); split(r, f, " "); print $1, c, f[12] + f[13] }'; }
# cpu_ms A B PATTERN: CPU milliseconds threads whose name matches PATTERN used between snapshots A and B.
cpu_ms() { awk -v pat="$3" -v hz="$(getconf CLK_TCK)" 'FNR == NR { a[$1] = $3; next } $2 ~ pat { s += $3 - a[$1] } END { printf "%.0f", 1000 * s / hz }' "$1" "$2"; }

declare -A R
# run NAME MODE PROTO PID: wrk, filling R[NAME,MODE,PROTO,{rps,p50,p99,reqs}] and the CPU
# of PID's threads (engine: fw-l7 or haproxy; worker: lcore threads).
run() {
  local name=$1 mode=$2 proto=$3 pid=$4 out=$WORK/wrk-$1-$2-$3.txt hdr=() url
  [ "$mode" = new-connection ] && hdr=(-H "Connection: close")
  if [ "$proto" = https ]; then url=https://192.0.2.100/id; else url=http://192.0.2.100/id; fi
  ticks "$pid" > "$WORK/t-a"
  ip netns exec $P-client wrk -t$THREADS -c"$CONNS" -d"${DURATION}s" --latency "${hdr[@]}" "$url" > "$out" 2>&1 9>&- || { cat "$out" >&2; die "$name $mode $proto: wrk failed"; }
  ticks "$pid" > "$WORK/t-b"
  local rps reqs p50 p99 errs
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  reqs=$(awk '/ requests in / { print $1 }' "$out")
  p50=$(awk '$1 == "50%" { print $2 }' "$out"); p99=$(awk '$1 == "99%" { print $2 }' "$out")
  errs=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
  [ "${reqs:-0}" -gt 0 ] || { cat "$out" >&2; die "$name $mode $proto: no request completed"; }
  [ "$errs" -le "$CONNS" ] || { cat "$out" >&2; die "$name $mode $proto: $errs errors"; }
  local eng wrk_
  if [ "$name" = furiwake ]; then eng=$(cpu_ms "$WORK/t-a" "$WORK/t-b" '^fw-l7'); wrk_=$(cpu_ms "$WORK/t-a" "$WORK/t-b" '^rte-worker'); else eng=$(cpu_ms "$WORK/t-a" "$WORK/t-b" '.'); wrk_=0; fi
  R[$name,$mode,$proto,rps]=$rps R[$name,$mode,$proto,p50]=$p50 R[$name,$mode,$proto,p99]=$p99 R[$name,$mode,$proto,reqs]=$reqs
  R[$name,$mode,$proto,eng_us]=$(awk -v c="$eng" -v n="$reqs" 'BEGIN { printf "%.1f", 1000 * c / n }')
  R[$name,$mode,$proto,wrk_us]=$(awk -v c="$wrk_" -v n="$reqs" 'BEGIN { printf "%.1f", 1000 * c / n }')
  printf '%-9s %-15s %-5s %10s req/s  p50 %-8s p99 %-8s  engine %s us/req  worker %s us/req\n' "$name" "$mode" "$proto" "$rps" "$p50" "$p99" "${R[$name,$mode,$proto,eng_us]}" "${R[$name,$mode,$proto,wrk_us]}"
  sleep 1
}
# bulk NAME PID: one HTTPS download of 64 MiB: MB/s and the engine's CPU per MB.
bulk() {
  local name=$1 pid=$2 pat='.' mbs cpu
  [ "$name" = furiwake ] && pat='^fw-l7'
  ticks "$pid" > "$WORK/t-a"
  mbs=$($CURL -o /dev/null -w '%{speed_download}' https://a.example/big | awk '{ printf "%.1f", $1 / 1e6 }')
  ticks "$pid" > "$WORK/t-b"
  cpu=$(cpu_ms "$WORK/t-a" "$WORK/t-b" "$pat")
  R[$name,bulk,mbs]=$mbs
  R[$name,bulk,per_core]=$(awk -v c="$cpu" -v s="$mbs" 'BEGIN { t = 67.108864 / s; printf "%.0f", (c > 0 ? 67.108864 / (c / 1000) : 0) }')
  echo "$name bulk HTTPS download 64 MiB: $mbs MB/s; ${R[$name,bulk,per_core]} MB per second of its CPU"
}

# ---------------------------------------------------------------- furiwake
say "1. furiwake: http VIP:80, https VIP:443, [l7] threads 1 on CPU 0"
pool='servers = [ { address = "198.51.100.11:80" }, { address = "198.51.100.12:80" }, { address = "198.51.100.13:80" } ]'
cat > "$WORK/furiwake.toml" <<EOF
[platform]
eal_args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", "$FP"]
control_lcore = 0
worker_lcores = [1]
mbufs = 16383
idle_sleep_us = 20

[l7]
threads = 1
cpus = [0]

[[interface]]
name = "outside"
device = "net_af_packet0,iface=lb-out"
address = "192.0.2.2/24"

[[interface]]
name = "inside"
device = "net_af_packet1,iface=lb-in"
address = "198.51.100.1/24"

[[pool]]
name = "web"
$pool

[[virtual_server]]
name = "web"
address = "192.0.2.100:80"
protocol = "http"
pool = "web"

[[virtual_server]]
name = "secure"
address = "192.0.2.100:443"
protocol = "https"
pool = "web"
tls = { certificates = [ { cert = "$WORK/certs/a.pem", key = "$WORK/certs/a.key" } ] }
EOF
"$BIN" check-config "$WORK/furiwake.toml" >/dev/null || die "check-config refuses the bench's config"
ip netns exec $P-lb "$BIN" run --config "$WORK/furiwake.toml" > "$WORK/furiwake.log" 2>&1 9>&- &
fw=$!; pids+=($fw)
for _ in $(seq 1 300); do grep -q "furiwake: ready" "$WORK/furiwake.log" && break; kill -0 $fw 2>/dev/null || break; sleep 0.1; done
grep -q "furiwake: ready" "$WORK/furiwake.log" || { cat "$WORK/furiwake.log" >&2; die "furiwake not ready"; }
for _ in $(seq 1 50); do $CURL https://a.example/id >/dev/null 2>&1 && break; sleep 0.2; done
$CURL https://a.example/id >/dev/null || die "furiwake: https://a.example/id does not answer"
echo "worker threads: $(ticks $fw | awk '{ print $2 }' | sort | uniq -c | tr '\n' ' ')"
for proto in http https; do for mode in keep-alive new-connection; do run furiwake $mode $proto $fw; done; done
bulk furiwake $fw
kill -TERM $fw; wait $fw 2>/dev/null || true; forget $fw

# ---------------------------------------------------------------- haproxy
say "2. HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'): nbthread 1 on CPU 0, the kernel routing in $P-lb"
L="ip netns exec $P-lb"
$L ip link set lb-out up; $L ip link set lb-in up
$L ip addr add 192.0.2.2/24 dev lb-out; $L ip addr add 192.0.2.100/32 dev lb-out; $L ip addr add 198.51.100.1/24 dev lb-in
$L ethtool -K lb-out tx off >/dev/null; $L ethtool -K lb-in tx off >/dev/null
ip -n $P-client neigh flush all; for i in 1 2 3; do ip -n $P-srv$i neigh flush all; done
cat > "$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  cpu-map 1/1 0
  maxconn 8000
  tune.ssl.default-dh-param 2048
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 60s
  timeout http-request 10s
frontend fe
  bind 192.0.2.100:80
  bind 192.0.2.100:443 ssl crt $WORK/certs/haproxy.pem alpn h2,http/1.1 ssl-min-ver TLSv1.2
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  source 198.51.100.1
  server s1 198.51.100.11:80
  server s2 198.51.100.12:80
  server s3 198.51.100.13:80
EOF
$L haproxy -c -f "$WORK/haproxy.cfg" >/dev/null || die "haproxy -c refuses the bench's config"
$L haproxy -db -f "$WORK/haproxy.cfg" > "$WORK/haproxy.log" 2>&1 9>&- &
hp=$!; pids+=($hp)
for _ in $(seq 1 50); do $CURL https://a.example/id >/dev/null 2>&1 && break; sleep 0.2; done
$CURL https://a.example/id >/dev/null || { cat "$WORK/haproxy.log" >&2; die "haproxy: https://a.example/id does not answer"; }
for proto in http https; do for mode in keep-alive new-connection; do run haproxy $mode $proto $hp; done; done
bulk haproxy $hp

# ---------------------------------------------------------------- results
say "3. results"
date_iso=$(date -Iseconds)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
rows=() json=()
for proto in http https; do for mode in keep-alive new-connection; do
  f=${R[furiwake,$mode,$proto,rps]} h=${R[haproxy,$mode,$proto,rps]}
  rows+=("| $proto | $mode | $f | ${R[furiwake,$mode,$proto,p50]} / ${R[furiwake,$mode,$proto,p99]} | $h | ${R[haproxy,$mode,$proto,p50]} / ${R[haproxy,$mode,$proto,p99]} | $(ratio "$f" "$h") | ${R[furiwake,$mode,$proto,eng_us]} + ${R[furiwake,$mode,$proto,wrk_us]} | ${R[haproxy,$mode,$proto,eng_us]} |")
  json+=("{\"proto\": \"$proto\", \"mode\": \"$mode\", \"furiwake_rps\": $f, \"furiwake_p99\": \"${R[furiwake,$mode,$proto,p99]}\", \"haproxy_rps\": $h, \"haproxy_p99\": \"${R[haproxy,$mode,$proto,p99]}\", \"ratio\": $(ratio "$f" "$h"), \"furiwake_engine_us_per_req\": ${R[furiwake,$mode,$proto,eng_us]}, \"furiwake_worker_us_per_req\": ${R[furiwake,$mode,$proto,wrk_us]}, \"haproxy_us_per_req\": ${R[haproxy,$mode,$proto,eng_us]}}")
done; done
hs_f=$(awk -v r="${R[furiwake,new-connection,https,rps]}" -v u="${R[furiwake,new-connection,https,eng_us]}" 'BEGIN { printf "%.0f", (u > 0 ? 1e6 / u : 0) }')
hs_h=$(awk -v u="${R[haproxy,new-connection,https,eng_us]}" 'BEGIN { printf "%.0f", (u > 0 ? 1e6 / u : 0) }')
{
  echo "| proto | mode | furiwake req/s | p50 / p99 | HAProxy req/s | p50 / p99 | ratio | furiwake CPU us/req (engine + worker) | HAProxy CPU us/req |"
  echo "| --- | --- | ---: | --- | ---: | --- | ---: | ---: | ---: |"
  printf '%s\n' "${rows[@]}"
} > "$WORK/table.md"
cat "$WORK/table.md"
echo "HTTPS new connections per second of one core (full handshake + one request): furiwake $hs_f, HAProxy $hs_h"
echo "bulk HTTPS (64 MiB): furiwake ${R[furiwake,bulk,mbs]} MB/s (${R[furiwake,bulk,per_core]} MB per core-second), HAProxy ${R[haproxy,bulk,mbs]} MB/s (${R[haproxy,bulk,per_core]} MB per core-second)"
mkdir -p "$RESULTS"
printf '{"date": "%s", "duration_s": %s, "connections": %s, "results": [%s], "https_handshakes_per_core_s": {"furiwake": %s, "haproxy": %s}, "bulk_mb_s": {"furiwake": %s, "haproxy": %s}, "bulk_mb_per_core_s": {"furiwake": %s, "haproxy": %s}}\n' \
  "$date_iso" "$DURATION" "$CONNS" "$(IFS=,; echo "${json[*]}")" "$hs_f" "$hs_h" "${R[furiwake,bulk,mbs]}" "${R[haproxy,bulk,mbs]}" "${R[furiwake,bulk,per_core]}" "${R[haproxy,bulk,per_core]}" > "$RESULTS/l7.json"
{
  echo "# The L7 engine against HAProxy"
  echo
  echo "$date_iso, \`bench/l7.sh\`: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency from the client namespace"
  echo "at VIP/id (HTTP :80, HTTPS :443 with an ECDSA P-256 certificate), 3 nginx backends (access log off),"
  echo "$(nproc) CPUs shared by wrk, nginx, the kernel and the balancer. furiwake: \`[l7] threads = 1\` on"
  echo "CPU 0, its worker lcore on CPU 1 (the exception path: client packets to the TAP and the engine's"
  echo "connections out, both through the worker). HAProxy $(haproxy -v | awk 'NR == 1 { print $3 }'): nbthread 1 on CPU 0, the"
  echo "kernel forwarding in the same namespace, http-reuse always. new-connection sends \`Connection: close\`."
  echo
  cat "$WORK/table.md"
  echo
  echo "CPU per request: furiwake's engine thread, plus its worker lcore (the exception path's cost: each"
  echo "client packet and each engine packet crosses it once); HAProxy's thread (the kernel's forwarding is"
  echo "softirq time not counted)."
  echo
  echo "TLS, per core: $hs_f (furiwake) and $hs_h (HAProxy) HTTPS new connections (full ECDHE-ECDSA handshake,"
  echo "one request) per second of the proxy's CPU; bulk HTTPS download of 64 MiB: furiwake ${R[furiwake,bulk,mbs]} MB/s"
  echo "(${R[furiwake,bulk,per_core]} MB per second of engine CPU), HAProxy ${R[haproxy,bulk,mbs]} MB/s (${R[haproxy,bulk,per_core]} MB per second of its CPU)."
} > "$RESULTS/l7.md"
echo "wrote $RESULTS/l7.json and $RESULTS/l7.md"
echo "l7: done in $(($(date +%s) - T0)) s"
