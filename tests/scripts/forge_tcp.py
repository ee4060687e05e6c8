#!/usr/bin/env python3
"""TCP segments with whatever addresses the caller names, in frames
addressed to the box's MAC on this namespace's link: the spoofer of the
exception path's e2e test (a server's answer from the clients' side, a
connection to the kernel's ephemeral ports, a client of an L7 VIP from
the servers' side).

    forge_tcp.py --via 192.0.2.2 --src 198.51.100.11 --sport 80 \
        --dst 198.51.100.1 --dport 50000 --flags R [--seq N] [--count 5]

Run with Debian's /usr/bin/python3 (scapy), inside a lab namespace.
Prints `sent N` on success.
"""

import argparse
import random

from scapy.all import IP, TCP, Ether, conf, get_if_hwaddr, getmacbyip, sendp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--via", required=True, help="the box's address on this link (its MAC is the frames' destination)")
    p.add_argument("--src", required=True)
    p.add_argument("--sport", type=int, required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--dport", type=int, required=True)
    p.add_argument("--flags", default="S")
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--iface", default="eth0")
    a = p.parse_args()
    conf.verb = 0
    mac = getmacbyip(a.via)
    if mac is None:
        raise SystemExit(f"no MAC for {a.via}")
    src = get_if_hwaddr(a.iface)
    frames = []
    for _ in range(a.count):
        seq = a.seq if a.seq is not None else random.randrange(2**32)
        frames.append(Ether(src=src, dst=mac) / IP(src=a.src, dst=a.dst) / TCP(sport=a.sport, dport=a.dport, flags=a.flags, seq=seq))
    sendp(frames, iface=a.iface, inter=0.005)
    print(f"sent {len(frames)}", flush=True)


if __name__ == "__main__":
    main()
