#!/usr/bin/env bash
# Furiwake demo: builds, creates the lab (client, the appliance's namespace
# with two DPDK-owned veths, three nginx backends), starts `furiwake run`
# with configs/two-arm-nat.toml, drives traffic at the VIP from the client,
# and shows what the appliance did. Everything it starts is stopped (by PID)
# and removed at the end. Run as root.
#
#   scripts/demo.sh [--af-packet | --af-xdp]
#
# The ports' driver: configs/two-arm-nat.toml's (see its header: the faster
# of the two in bench/results/e2e.md), or the other one on the same veths.
set -euo pipefail
cd "$(dirname "$0")/.."
DRIVER=
case "${1:-}" in
  "") ;;
  --af-packet) DRIVER=af_packet ;;
  --af-xdp) DRIVER=af_xdp ;;
  *) echo "usage: $0 [--af-packet | --af-xdp]" >&2; exit 2 ;;
esac
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bins
BIN=$PWD/target/release/furiwake
P=demo
WORK=$(mktemp -d /tmp/furiwake-demo.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  scripts/netns.sh down $P
  rm -rf "$WORK" /var/run/dpdk/furiwake-demo
}
trap cleanup EXIT
CONFIG=configs/two-arm-nat.toml
case "$DRIVER" in
  af_xdp)
    sed -e 's/net_af_packet\([01]\),iface=\(lb-[a-z]*\)"/net_af_xdp\1,iface=\2,start_queue=0,queue_count=1"/' $CONFIG > "$WORK/furiwake.toml"
    CONFIG=$WORK/furiwake.toml ;;
  af_packet)
    sed -e 's/net_af_xdp\([01]\),iface=\(lb-[a-z]*\)[^"]*"/net_af_packet\1,iface=\2"/' $CONFIG > "$WORK/furiwake.toml"
    CONFIG=$WORK/furiwake.toml ;;
esac

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "lab: client 192.0.2.10 -- [lb-out | furiwake | lb-in] -- srv1..3 198.51.100.11-13"
scripts/netns.sh up $P 3 1
for i in 1 2 3; do
  scripts/backend.sh nginx-conf "srv$i" "$WORK/srv$i"
  ip netns exec $P-srv$i nginx -p "$WORK/srv$i" -c "$WORK/srv$i/nginx.conf" &
  pids+=($!)
done

say "furiwake run --config $CONFIG (in namespace $P-lb; ports on $(grep -o 'net_af_[a-z]*' $CONFIG | head -n 1))"
ip netns exec $P-lb "$BIN" run --config "$CONFIG" > "$WORK/furiwake.log" 2>&1 &
fw=$!
pids+=($fw)
for _ in $(seq 1 100); do grep -q "furiwake: ready" "$WORK/furiwake.log" && break; sleep 0.1; done
say "health checks (http GET /health, expect OK) bring the servers up"
for _ in $(seq 1 100); do [ "$(grep -c '^health: server .* up' "$WORK/furiwake.log")" -ge 3 ] && break; sleep 0.1; done
grep -E "^(furiwake|port|virtual-server|health)" "$WORK/furiwake.log"

say "client: who has the self IP and the VIP? (answered by the appliance's ARP)"
for ip in 192.0.2.2 192.0.2.100; do
  ip netns exec $P-client python3 -c "import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('$ip', 9))"
done
sleep 0.5
ip -n $P-client neigh show dev eth0

say "client: curl http://192.0.2.100/id, ten times"
for i in $(seq 1 10); do
  printf 'request %2d: ' "$i"
  ip netns exec $P-client curl -s -m 1 http://192.0.2.100/id || echo "(no answer)"
done

CONSOLE=("$BIN" console --config "$CONFIG" -c)
say "console: furiwake console -c 'show servers'"
"${CONSOLE[@]}" "show servers"
say "console: server web 198.51.100.11:80 drain; then six more requests (none to srv1)"
"${CONSOLE[@]}" "server web 198.51.100.11:80 drain"
for i in $(seq 1 6); do
  printf 'request %2d: ' "$i"
  ip netns exec $P-client curl -s -m 1 http://192.0.2.100/id || echo "(no answer)"
done
"${CONSOLE[@]}" "server web 198.51.100.11:80 enable"
say "console: show virtual-servers"
"${CONSOLE[@]}" "show virtual-servers"
say "counters (SIGUSR1)"
kill -USR1 $fw; sleep 0.5
sed -n '/== furiwake counters ==/,$p' "$WORK/furiwake.log"

say "stopping (SIGTERM)"
kill -TERM $fw; wait $fw && echo "furiwake exited 0"
