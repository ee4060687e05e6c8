#!/usr/bin/env python3
"""Sends what a router inside a dsr-tunnel would send about a tunnel
packet: ICMP fragmentation needed (RFC 1191) to the packet's outer source
(an address of tunnel_source, routed to the box), quoting the outer
header, the tunnel's, and the client's packet inside (RFC 2003 §4).

    tunnel_frag_needed.py --packet HEX --overhead 20 --router 198.51.100.254 --mtu 1000

--packet is a tunnel packet as captured (its outer IPv4 header on). The
client's segment inside it is quoted with the sequence number of the
client's next byte (its seq + payload length: what the client has not
had acknowledged yet, as its TCP checks) and its TCP header only.
Run with Debian's /usr/bin/python3 (scapy). Prints "sent HEX" (the
error's IPv4 packet).
"""

import argparse

from scapy.all import ICMP, IP, conf, raw, send


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--packet", required=True)
    p.add_argument("--overhead", type=int, required=True)
    p.add_argument("--router", required=True)
    p.add_argument("--mtu", type=int, default=1000)
    a = p.parse_args()
    conf.verb = 0
    q = bytearray(bytes.fromhex(a.packet))
    inner = a.overhead
    hl = (q[inner] & 0x0F) * 4
    tcp = inner + hl
    total = int.from_bytes(q[inner + 2 : inner + 4], "big")
    data = total - hl - (q[tcp + 12] >> 4) * 4
    seq = (int.from_bytes(q[tcp + 4 : tcp + 8], "big") + data) & 0xFFFFFFFF
    q[tcp + 4 : tcp + 8] = seq.to_bytes(4, "big")
    quote = bytes(q[: tcp + 20])
    outer_src = ".".join(str(b) for b in q[12:16])
    err = IP(src=a.router, dst=outer_src, tos=0xC0, id=1) / ICMP(type=3, code=4, nexthopmtu=a.mtu) / quote
    wire = raw(err)
    send(IP(wire))
    print("sent " + wire.hex(), flush=True)


if __name__ == "__main__":
    main()
