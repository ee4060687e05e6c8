#!/usr/bin/python3
"""A server's tunnel endpoint for the dsr-tunnel tests, in userspace (this
kernel has no IPIP or GRE devices): receives IPIP (protocol 4), GRE
(protocol 47, RFC 2784 with EtherType 0x0800) and GUE variant 1 (UDP to
--gue-port, the payload an IPv4 packet) addressed to --local, strips the
outer headers and writes the inner IPv4 packet to a TUN device, where the
kernel takes it as if it had arrived there (the VIP on lo, rp_filter off).

Prints "listening" once ready; on SIGTERM, the counts per kind.

Over IPv6 (--local an IPv6 address, RFC 2473): IPv6 in IPv6 (next header
41), GRE with EtherType 0x86DD and GUE over UDP, each holding an inner IPv6
packet; the raw sockets are bound to --local and hand over what follows
the outer header.

usage: decap.py --tun NAME --local ADDR [--gue-port N]
"""
import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tun", required=True)
    ap.add_argument("--local", required=True)
    ap.add_argument("--gue-port", type=int, default=6080)
    a = ap.parse_args()
    tun = open_tun(a.tun)
    v6 = ":" in a.local
    if v6:
        ipip = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 41)
        gre = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 47)
        for s in (ipip, gre):
            s.bind((a.local, 0))
        gue = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        local = None
    else:
        local = socket.inet_aton(a.local)
        ipip = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
        gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47)
        gue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gue.bind((a.local, a.gue_port))
    version, ethertype, least = (6, 0x86DD, 40) if v6 else (4, 0x0800, 20)
    counts = {"ipip": 0, "gre": 0, "gue": 0, "refused": 0}

    def stop(*_):
        print("decap: " + " ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("listening", flush=True)
    while True:
        ready, _, _ = select.select([ipip, gre, gue], [], [])
        for s in ready:
            data = s.recv(65535)
            if s is gue:
                inner, kind = data, "gue"
            else:
                if v6:
                    # Raw IPv6 sockets hand over what follows the header.
                    hl = 0
                else:
                    # Raw IPv4 sockets hand over the outer header too.
                    if len(data) < 20 or data[16:20] != local:
                        continue
                    hl = (data[0] & 0x0F) * 4
                if s is ipip:
                    inner, kind = data[hl:], "ipip"
                else:
                    flags, ptype = struct.unpack("!HH", data[hl:hl + 4])
                    if flags != 0 or ptype != ethertype:
                        counts["refused"] += 1
                        continue
                    inner, kind = data[hl + 4:], "gre"
            if len(inner) < least or inner[0] >> 4 != version:
                counts["refused"] += 1
                continue
            os.write(tun, inner)
            counts[kind] += 1


if __name__ == "__main__":
    main()
