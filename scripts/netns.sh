#!/usr/bin/env bash
# Network-namespace topology for Furiwake's demo and end-to-end tests.
#
#   netns.sh up PREFIX [BACKENDS] [LBS]   create the topology below
#   netns.sh down PREFIX                  kill what runs in it, delete it
#   netns.sh ipv6 PREFIX [BACKENDS]       IPv6 in the client and servers too
#
#   PREFIX-client   eth0 192.0.2.10/24, default route via 192.0.2.2
#        |
#   PREFIX-sw: bridge br-out ----- lb-out (in PREFIX-lb, owned by DPDK)
#              bridge br-in  ----- lb-in  (in PREFIX-lb, owned by DPDK)
#        |
#   PREFIX-srvN    eth0 198.51.100.(10+N)/24, default route via 198.51.100.1
#
# LBS=2 adds PREFIX-lb2 with its own lb-out/lb-in on the same bridges.
# `ipv6` gives the client 2001:db8:1::10/64 (default route via
# 2001:db8:1::2) and server N 2001:db8:2::(10+N)/64 (via 2001:db8:2::1):
# no duplicate address detection, no router advertisements taken.
# DPDK-owned veths carry no IP address (the kernel's own ARP would leak into
# af_packet) and no IPv6. Kernel-side senders have TX checksum offload off:
# veths otherwise emit packets with unfinished checksums.
# Names stay within IFNAMSIZ: PREFIX must be at most 6 characters.
set -euo pipefail

cmd=${1:-}; P=${2:-}
[ -n "$cmd" ] && [ -n "$P" ] || { echo "usage: $0 up|down|ipv6 PREFIX [BACKENDS] [LBS]" >&2; exit 2; }
[ ${#P} -le 6 ] || { echo "$0: PREFIX '$P' longer than 6 characters" >&2; exit 2; }

n=0
# veth NS_A NAME_A NS_B NAME_B: a veth pair between two namespaces.
veth() {
  n=$((n + 1))
  local a="${P}v${n}a" b="${P}v${n}b"
  ip link add "$a" type veth peer name "$b"
  ip link set "$a" netns "$1"; ip -n "$1" link set "$a" name "$2"
  ip link set "$b" netns "$3"; ip -n "$3" link set "$b" name "$4"
  ip -n "$1" link set "$2" up
  ip -n "$3" link set "$4" up
}

quiet_ns() { # no IPv6 chatter, loopback up
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$1" link set lo up
}

up() {
  local backends=${1:-3} lbs=${2:-1}
  ip netns add "$P-sw"; quiet_ns "$P-sw"
  # A plain L2 switch: with br_netfilter in the kernel, bridged IPv4 would
  # pass the switch's netfilter, which silently eats malformed headers.
  local f
  for f in iptables ip6tables arptables; do
    [ -e /proc/sys/net/bridge/bridge-nf-call-$f ] && ip netns exec "$P-sw" sh -c "echo 0 > /proc/sys/net/bridge/bridge-nf-call-$f"
  done
  ip -n "$P-sw" link add br-out type bridge; ip -n "$P-sw" link set br-out up
  ip -n "$P-sw" link add br-in type bridge; ip -n "$P-sw" link set br-in up

  ip netns add "$P-client"; quiet_ns "$P-client"
  veth "$P-client" eth0 "$P-sw" c0
  ip -n "$P-sw" link set c0 master br-out
  ip -n "$P-client" addr add 192.0.2.10/24 dev eth0
  ip -n "$P-client" route add default via 192.0.2.2
  ip netns exec "$P-client" ethtool -K eth0 tx off >/dev/null

  local l
  for l in $(seq 1 "$lbs"); do
    local ns="$P-lb"; [ "$l" -gt 1 ] && ns="$P-lb$l"
    ip netns add "$ns"; quiet_ns "$ns"
    veth "$ns" lb-out "$P-sw" "l${l}o"; ip -n "$P-sw" link set "l${l}o" master br-out
    veth "$ns" lb-in "$P-sw" "l${l}i"; ip -n "$P-sw" link set "l${l}i" master br-in
  done

  local i
  for i in $(seq 1 "$backends"); do
    ip netns add "$P-srv$i"; quiet_ns "$P-srv$i"
    veth "$P-srv$i" eth0 "$P-sw" "s$i"
    ip -n "$P-sw" link set "s$i" master br-in
    ip -n "$P-srv$i" addr add "198.51.100.$((10 + i))/24" dev eth0
    ip -n "$P-srv$i" route add default via 198.51.100.1
    ip netns exec "$P-srv$i" ethtool -K eth0 tx off >/dev/null
  done
}

# ipv6_ns NS ADDRESS GATEWAY: IPv6 on NS's eth0, quiet but for what the
# test sends and Neighbor Discovery.
ipv6_ns() {
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 \
    net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.eth0.accept_ra=0 \
    net.ipv6.conf.eth0.disable_ipv6=0 net.ipv6.conf.eth0.accept_dad=0 net.ipv6.conf.eth0.router_solicitations=0
  ip -n "$1" -6 addr add "$2" dev eth0 nodad
  ip -n "$1" -6 route add default via "$3"
}

ipv6() {
  local backends=${1:-3} i
  ipv6_ns "$P-client" 2001:db8:1::10/64 2001:db8:1::2
  for i in $(seq 1 "$backends"); do
    ipv6_ns "$P-srv$i" "2001:db8:2::$((10 + i))/64" 2001:db8:2::1
  done
}

down() {
  local ns pid
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  sleep 0.2
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^$P-" || true); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

case "$cmd" in
  up) down; shift 2; up "$@" ;;
  down) down ;;
  ipv6) shift 2; ipv6 "$@" ;;
  *) echo "usage: $0 up|down|ipv6 PREFIX [BACKENDS] [LBS]" >&2; exit 2 ;;
esac
