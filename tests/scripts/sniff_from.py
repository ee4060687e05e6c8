#!/usr/bin/env python3
"""Prints the IPv4 packets that arrive on IFACE (incoming only) from SRC
and/or to DST, one line each, until COUNT were printed or TIMEOUT passes.

    sniff_from.py --iface eth0 [--src IP] [--dst IP] [--count 1] [--timeout 10]

Lines:
    tcp SRC:SPORT > DST:DPORT flags=RA seq=N ack=N   (flags: letters of FSRPAU set)
    udp SRC:SPORT > DST:DPORT len=N
    icmp SRC > DST type=T code=C [inner=tcp|udp IDST:IDPORT from ISRC:ISPORT]
    ip SRC > DST proto=P
(inner: the IPv4 header and first 8 bytes an ICMP error embeds.)

Prints "ready" once its AF_PACKET socket is open; exits 0 after COUNT
packets, 1 at the timeout. Only the Python standard library is used.
"""

import argparse
import select
import socket
import struct
import sys
import time

ETH_P_IP = 0x0800
PACKET_OUTGOING = 4


def ip4(b):
    return socket.inet_ntoa(b)


def ports(proto, l4):
    if proto in (6, 17) and len(l4) >= 4:
        return struct.unpack("!HH", l4[:4])
    return None


def describe(pkt):
    if len(pkt) < 20 or pkt[0] >> 4 != 4:
        return None
    ihl = (pkt[0] & 0xF) * 4
    proto = pkt[9]
    src, dst = ip4(pkt[12:16]), ip4(pkt[16:20])
    l4 = pkt[ihl:]
    if proto == 6 and len(l4) >= 14:
        sport, dport, seq, ack = struct.unpack("!HHII", l4[:12])
        flags = "".join(c for i, c in enumerate("FSRPAU") if l4[13] & (1 << i))
        return src, dst, f"tcp {src}:{sport} > {dst}:{dport} flags={flags} seq={seq} ack={ack}"
    if proto == 17 and len(l4) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", l4[:6])
        return src, dst, f"udp {src}:{sport} > {dst}:{dport} len={ulen}"
    if proto == 1 and len(l4) >= 8:
        typ, code = l4[0], l4[1]
        line = f"icmp {src} > {dst} type={typ} code={code}"
        inner = l4[8:]
        if typ in (3, 11, 12) and len(inner) >= 20 and inner[0] >> 4 == 4:
            iihl = (inner[0] & 0xF) * 4
            iproto = inner[9]
            p = ports(iproto, inner[iihl:])
            name = {6: "tcp", 17: "udp"}.get(iproto)
            if p and name:
                line += f" inner={name} {ip4(inner[16:20])}:{p[1]} from {ip4(inner[12:16])}:{p[0]}"
        return src, dst, line
    return src, dst, f"ip {src} > {dst} proto={proto}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--src")
    p.add_argument("--dst")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    s.bind((a.iface, 0))
    print("ready", flush=True)
    seen = 0
    end = time.monotonic() + a.timeout
    while seen < a.count:
        left = end - time.monotonic()
        if left <= 0:
            print(f"timeout after {seen} packet(s)", flush=True)
            sys.exit(1)
        r, _, _ = select.select([s], [], [], left)
        if not r:
            continue
        frame, addr = s.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING:
            continue
        d = describe(frame[14:])
        if d is None:
            continue
        src, dst, line = d
        if (a.src and src != a.src) or (a.dst and dst != a.dst):
            continue
        print(line, flush=True)
        seen += 1


if __name__ == "__main__":
    main()
