#!/usr/bin/env python3
"""Sends exactly COUNT malformed Ethernet frames out of IFACE to DST_MAC.

    malformed.py --iface eth0 --dst-mac MAC --count 10000
                 [--only CATEGORY ...] [--skip CATEGORY ...]
                 [--src 192.0.2.10] [--vip 192.0.2.100] [--tcp-port 80]
                 [--udp-port 5353] [--burst 64] [--pause-ms 1] [--seed 1]

Frames go through an AF_PACKET SOCK_RAW socket, cycling through the
categories below (frame i is of category i % len(CATEGORIES); --only and
--skip narrow the cycle). None of them
is a packet a load balancer may forward: each must be dropped and counted.
Every frame is at least 14 bytes long (the kernel refuses shorter ones).

Fragments and DPDK's net_af_packet: its sockets join a PACKET_FANOUT group
with PACKET_FANOUT_FLAG_DEFRAG (not configurable in DPDK 22.11), so the
receiving kernel reassembles IPv4 fragments before the PMD sees them and
holds incomplete ones until they time out (net.ipv4.ipfrag_time): the two
fragment categories never reach an af_packet port. Use --skip for them when
counting what arrives there.

Linux bridges on the way: with br_netfilter loaded (or built in) and
net.bridge.bridge-nf-call-iptables=1 (the default in a new namespace), a
bridge validates bridged IPv4 headers and silently drops malformed ones.
Set it to 0 in the switch's namespace.

Frames are sent in bursts of --burst with --pause-ms between bursts, so that
the receiver's af_packet ring (512 frames by default in DPDK's PMD) is not
overrun when the receiving worker shares a small VM with the sender.

Prints one line per category ("CATEGORY: N") and then "total: N".
Exits 1 if the kernel refused any frame.

Only the Python standard library is used: the frames are built by hand.
"""

import argparse
import os
import random
import socket
import struct
import sys
import time

ETH_P_IPV4 = 0x0800


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_header(src, dst, proto, payload_len, *, version=4, ihl=5, total_len=None,
              flags_frag=0, ident=0, checksum=None, options=b""):
    """An IPv4 header; every field can be made wrong on purpose. The checksum
    is correct (over the bytes emitted) unless given."""
    if total_len is None:
        total_len = ihl * 4 + payload_len
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        (version << 4) | (ihl & 0xF), 0, total_len & 0xFFFF, ident & 0xFFFF, flags_frag,
        64, proto, 0, socket.inet_aton(src), socket.inet_aton(dst),
    ) + options
    if checksum is None:
        checksum = csum(hdr)
    return hdr[:10] + struct.pack("!H", checksum) + hdr[12:]


def l4_checksum(src, dst, proto, segment: bytes) -> int:
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(segment))
    return csum(pseudo + segment)


def tcp_segment(src, dst, sport, dport, *, doff=5, payload=b"", flags=0x02):
    seg = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, (doff & 0xF) << 4, flags, 64240, 0, 0) + payload
    c = l4_checksum(src, dst, 6, seg)
    return seg[:16] + struct.pack("!H", c) + seg[18:]


def udp_datagram(src, dst, sport, dport, payload, *, length=None):
    if length is None:
        length = 8 + len(payload)
    dgram = struct.pack("!HHHH", sport, dport, length & 0xFFFF, 0) + payload
    c = l4_checksum(src, dst, 17, dgram) or 0xFFFF
    return dgram[:6] + struct.pack("!H", c) + dgram[8:]


def icmp_echo(payload=b"abcdefgh"):
    msg = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1) + payload
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


class Builder:
    def __init__(self, a, rng):
        self.a = a
        self.rng = rng
        self.n = 0
        self.udp_n = 0

    def sport(self):
        # A different client port per frame: each would be a new flow.
        self.n += 1
        return 1024 + (self.n % 60000)

    def syn(self):
        return tcp_segment(self.a.src, self.a.vip, self.sport(), self.a.tcp_port)

    # Each category returns the L3 payload (after the Ethernet header) and
    # the EtherType.

    def ipv4_truncated(self):
        # Shorter than the 20-byte IPv4 header: frame < 14 + 20.
        full = ip_header(self.a.src, self.a.vip, 6, 20) + self.syn()
        return full[:19], ETH_P_IPV4

    def bad_version(self):
        seg = self.syn()
        return ip_header(self.a.src, self.a.vip, 6, len(seg), version=6) + seg, ETH_P_IPV4

    def bad_ihl(self):
        seg = self.syn()
        return ip_header(self.a.src, self.a.vip, 6, len(seg), ihl=4, total_len=20 + len(seg)) + seg, ETH_P_IPV4

    def ihl_beyond_frame(self):
        # IHL 15 (60 bytes) but only 20 + 8 bytes of IP in the frame.
        return ip_header(self.a.src, self.a.vip, 6, 8, ihl=15, total_len=28) + b"\0" * 8, ETH_P_IPV4

    def total_length_beyond_frame(self):
        seg = self.syn()
        return ip_header(self.a.src, self.a.vip, 6, len(seg), total_len=1000) + seg, ETH_P_IPV4

    def total_length_below_header(self):
        seg = self.syn()
        return ip_header(self.a.src, self.a.vip, 6, len(seg), total_len=12) + seg, ETH_P_IPV4

    def bad_ip_checksum(self):
        seg = self.syn()
        good = ip_header(self.a.src, self.a.vip, 6, len(seg))
        bad = struct.unpack("!H", good[10:12])[0] ^ 0x5A5A
        return ip_header(self.a.src, self.a.vip, 6, len(seg), checksum=bad) + seg, ETH_P_IPV4

    def fragment_more_fragments(self):
        # First fragment (MF set, offset 0) of a TCP segment to the VIP.
        seg = self.syn()
        return ip_header(self.a.src, self.a.vip, 6, len(seg), flags_frag=0x2000, ident=self.n) + seg, ETH_P_IPV4

    def fragment_offset(self):
        # Last fragment (MF clear, offset 1480 bytes) of a datagram to the VIP.
        body = bytes(self.rng.getrandbits(8) for _ in range(24))
        return ip_header(self.a.src, self.a.vip, 6, len(body), flags_frag=185, ident=self.n) + body, ETH_P_IPV4

    def tcp_bad_data_offset(self):
        seg = tcp_segment(self.a.src, self.a.vip, self.sport(), self.a.tcp_port, doff=4)
        return ip_header(self.a.src, self.a.vip, 6, len(seg)) + seg, ETH_P_IPV4

    def tcp_truncated(self):
        # 12 bytes of TCP: shorter than the 20-byte TCP header.
        seg = self.syn()[:12]
        return ip_header(self.a.src, self.a.vip, 6, len(seg)) + seg, ETH_P_IPV4

    def udp_bad_length(self):
        # Alternates a UDP length beyond the IP payload and one below 8.
        payload = b"malformed!"
        self.udp_n += 1
        length = 200 if self.udp_n % 2 else 4
        dg = udp_datagram(self.a.src, self.a.vip, self.sport(), self.a.udp_port, payload, length=length)
        return ip_header(self.a.src, self.a.vip, 17, len(dg)) + dg, ETH_P_IPV4

    def icmp_short(self):
        # 4 bytes of ICMP to the VIP: shorter than an echo header.
        msg = icmp_echo()[:4]
        return ip_header(self.a.src, self.a.vip, 1, len(msg)) + msg, ETH_P_IPV4

    def garbage_ethertype(self):
        return os.urandom(46), 0x88B5

    def runt(self):
        # Nothing after the Ethernet header (the frame is 14 bytes).
        return b"", ETH_P_IPV4


CATEGORIES = [
    ("ipv4-truncated", Builder.ipv4_truncated),
    ("bad-version", Builder.bad_version),
    ("bad-ihl", Builder.bad_ihl),
    ("ihl-beyond-frame", Builder.ihl_beyond_frame),
    ("total-length-beyond-frame", Builder.total_length_beyond_frame),
    ("total-length-below-header", Builder.total_length_below_header),
    ("bad-ip-checksum", Builder.bad_ip_checksum),
    ("fragment-mf", Builder.fragment_more_fragments),
    ("fragment-offset", Builder.fragment_offset),
    ("tcp-bad-data-offset", Builder.tcp_bad_data_offset),
    ("tcp-truncated", Builder.tcp_truncated),
    ("udp-bad-length", Builder.udp_bad_length),
    ("icmp-short", Builder.icmp_short),
    ("garbage-ethertype", Builder.garbage_ethertype),
    ("runt", Builder.runt),
]


def mac_bytes(mac: str) -> bytes:
    b = bytes(int(x, 16) for x in mac.split(":"))
    if len(b) != 6:
        raise SystemExit(f"bad MAC {mac!r}")
    return b


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--src", default="192.0.2.10", help="source IPv4 address")
    p.add_argument("--vip", default="192.0.2.100")
    p.add_argument("--tcp-port", type=int, default=80)
    p.add_argument("--udp-port", type=int, default=5353)
    p.add_argument("--burst", type=int, default=64)
    p.add_argument("--pause-ms", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", action="append", default=[], metavar="CATEGORY",
                   help="send only these categories (repeatable); default: all")
    p.add_argument("--skip", action="append", default=[], metavar="CATEGORY",
                   help="leave these categories out (repeatable)")
    a = p.parse_args()
    names = [n for n, _ in CATEGORIES]
    for o in a.only + a.skip:
        if o not in names:
            raise SystemExit(f"unknown category {o!r}; known: {', '.join(names)}")
    cats = [(n, f) for n, f in CATEGORIES if (not a.only or n in a.only) and n not in a.skip]
    if not cats:
        raise SystemExit("no category left to send")

    with open(f"/sys/class/net/{a.iface}/address") as f:
        src_mac = mac_bytes(f.read().strip())
    dst_mac = mac_bytes(a.dst_mac)
    b = Builder(a, random.Random(a.seed))

    frames = []
    for i in range(a.count):
        name, build = cats[i % len(cats)]
        l3, ethertype = build(b)
        frame = dst_mac + src_mac + struct.pack("!H", ethertype) + l3
        assert len(frame) >= 14
        frames.append((name, frame))

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    sent = {name: 0 for name, _ in cats}
    total = failed = 0
    for i, (name, frame) in enumerate(frames):
        try:
            n = s.send(frame)
        except OSError as e:
            failed += 1
            print(f"send of a {name} frame failed: {e}", file=sys.stderr)
            continue
        if n != len(frame):
            failed += 1
            print(f"short send of a {name} frame: {n} of {len(frame)}", file=sys.stderr)
            continue
        sent[name] += 1
        total += 1
        if a.burst and (i + 1) % a.burst == 0 and a.pause_ms > 0:
            time.sleep(a.pause_ms / 1000)
    s.close()
    for name, _ in cats:
        print(f"{name}: {sent[name]}")
    print(f"total: {total}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
