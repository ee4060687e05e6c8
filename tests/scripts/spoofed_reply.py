#!/usr/bin/env python3
"""The server's side of a connection, spoofed from the clients' segment
(review S9): resets with the source address and port of each server,
toward the client's address and port, in frames addressed to the box's
MAC on the clients' link. Only the server that holds the connection
matches it; the box must tell by the link that it did not come from there.

    spoofed_reply.py --via 192.0.2.100 --client 192.0.2.10 --cport 40123 \
        --servers 198.51.100.11,198.51.100.12 [--sport 80] [--count 5]

Run with Debian's /usr/bin/python3 (scapy), inside the client namespace.
Prints `sent N` on success.
"""

import argparse
import random

from scapy.all import IP, TCP, Ether, conf, get_if_hwaddr, getmacbyip, sendp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--via", required=True)
    p.add_argument("--client", required=True)
    p.add_argument("--cport", type=int, required=True)
    p.add_argument("--servers", required=True)
    p.add_argument("--sport", type=int, default=80)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--iface", default="eth0")
    a = p.parse_args()
    conf.verb = 0
    mac = getmacbyip(a.via)
    if mac is None:
        raise SystemExit(f"no MAC for {a.via}")
    # The interface's own MAC: scapy would take the route to the (local)
    # destination's, all zeros, which a bridge drops.
    src = get_if_hwaddr(a.iface)
    frames = []
    for srv in a.servers.split(","):
        for _ in range(a.count):
            seq = random.randrange(2**32)
            frames.append(Ether(src=src, dst=mac) / IP(src=srv, dst=a.client) / TCP(sport=a.sport, dport=a.cport, flags="R", seq=seq))
    sendp(frames, iface=a.iface, inter=0.005)
    print(f"sent {len(frames)}", flush=True)


if __name__ == "__main__":
    main()
