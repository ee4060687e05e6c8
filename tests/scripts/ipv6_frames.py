#!/usr/bin/env python3
"""IPv6 frames for the box's IPv6 tests, sent from the client namespace.

    ipv6_frames.py malformed --mac BOX_MAC --self ADDR [--iface eth0] [--count 3]
    ipv6_frames.py ns-flood --self ADDR [--iface eth0] [--count 12000]
    ipv6_frames.py dad --self ADDR [--iface eth0]

`malformed` sends each kind `count` times (fragment, routing header with
segments left, a chain with hop-by-hop second, UDP checksum zero, NS with
hop limit 64, an IPv4-mapped destination). `ns-flood` sends solicitations
for ADDR to its solicited-node group, each from its own made-up source
address and MAC, paced to at most 2000 a second (500 at once, then a
quarter second). `dad` sends a duplicate address detection probe for ADDR
(from ::, no link-layer option). Run with Debian's /usr/bin/python3.
Prints "sent N".
"""

import argparse
import random
import time

from scapy.all import (ICMPv6EchoRequest, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, UDP, Ether, conf, get_if_hwaddr, in6_getnsma, in6_getnsmac, inet_pton,
                       inet_ntop, sendp, socket)


def solicited(addr):
    group = inet_ntop(socket.AF_INET6, in6_getnsma(inet_pton(socket.AF_INET6, addr)))
    return group, in6_getnsmac(inet_pton(socket.AF_INET6, group))


def malformed(a, mac):
    src = "2001:db8:1::10"
    group, gmac = solicited(a.self)
    to_box = Ether(dst=a.mac, src=mac)
    echo = ICMPv6EchoRequest(id=1, seq=1, data=b"x" * 16)
    udp = IPv6(src=src, dst=a.self) / UDP(sport=5000, dport=9, chksum=0) / b"zero"
    kinds = [
        to_box / IPv6(src=src, dst=a.self) / IPv6ExtHdrFragment(offset=0, m=1, id=7) / echo,
        to_box / IPv6(src=src, dst=a.self) / IPv6ExtHdrRouting(type=4, segleft=1, addresses=["2001:db8:9::1"]) / echo,
        to_box / IPv6(src=src, dst=a.self) / IPv6ExtHdrDestOpt() / IPv6ExtHdrHopByHop() / echo,
        to_box / udp,
        Ether(dst=gmac, src=mac) / IPv6(src=src, dst=group, hlim=64) / ICMPv6ND_NS(tgt=a.self) / ICMPv6NDOptSrcLLAddr(lladdr=mac),
        to_box / IPv6(src=src, dst="::ffff:192.0.2.2") / echo,
    ]
    frames = [bytes(k) for k in kinds]
    # scapy would fill a zero UDP checksum in: put it back.
    u = bytearray(frames[3])
    u[14 + 40 + 6:14 + 40 + 8] = b"\x00\x00"
    frames[3] = bytes(u)
    n = 0
    for _ in range(a.count):
        for f in frames:
            sendp(Ether(f), iface=a.iface)
            n += 1
    return n


def flood(a):
    group, gmac = solicited(a.self)
    rnd = random.Random(24)
    frames = []
    for i in range(a.count):
        src = "2001:db8:1::%x:%x" % (0x100 + i // 0x10000, i % 0x10000)
        smac = "02:%02x:%02x:%02x:%02x:%02x" % tuple(rnd.randrange(256) for _ in range(5))
        frames.append(Ether(dst=gmac, src=smac) / IPv6(src=src, dst=group, hlim=255) / ICMPv6ND_NS(tgt=a.self) / ICMPv6NDOptSrcLLAddr(lladdr=smac))
    sock = conf.L2socket(iface=a.iface)
    n = 0
    for at in range(0, len(frames), 500):
        t0 = time.monotonic()
        for f in frames[at:at + 500]:
            sock.send(f)
            n += 1
        time.sleep(max(0.0, 0.25 - (time.monotonic() - t0)))
    sock.close()
    return n


def dad(a, mac):
    group, gmac = solicited(a.self)
    sendp(Ether(dst=gmac, src=mac) / IPv6(src="::", dst=group, hlim=255) / ICMPv6ND_NS(tgt=a.self), iface=a.iface)
    return 1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["malformed", "ns-flood", "dad"])
    p.add_argument("--self", required=True)
    p.add_argument("--mac")
    p.add_argument("--iface", default="eth0")
    p.add_argument("--count", type=int, default=0)
    a = p.parse_args()
    conf.verb = 0
    mac = get_if_hwaddr(a.iface)
    if a.kind == "malformed":
        a.count = a.count or 3
        n = malformed(a, mac)
    elif a.kind == "ns-flood":
        a.count = a.count or 12000
        n = flood(a)
    else:
        n = dad(a, mac)
    print("sent %d" % n, flush=True)


if __name__ == "__main__":
    main()
