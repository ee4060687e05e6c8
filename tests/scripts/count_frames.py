#!/usr/bin/env python3
"""Counts the Ethernet frames from SRC_MAC arriving on IFACE.

    count_frames.py --iface lb-out --src-mac MAC [--dst-mac MAC]
                    [--ethertype 0x0800 ...] [--idle 2] [--timeout 60]

Opens an AF_PACKET socket (with a large receive buffer), prints "ready",
then counts incoming frames whose source MAC is SRC_MAC (and, if given,
whose destination MAC is DST_MAC and EtherType one of --ethertype: the
sender's kernel sends frames of its own meanwhile, ARP and IPv6
neighbour discovery, which a count of a test's frames must leave out). It stops once it
has seen at least one such frame and then none for --idle seconds, or after
--timeout seconds, and prints "frames: N", "bytes: N" and "kernel-drops: N"
(frames the kernel dropped because the socket's buffer was full: if this is
not 0 the count is a lower bound).

Used to check malformed.py: run it where nothing else owns the interface.
"""

import argparse
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_RCVBUFFORCE = 33
PACKET_OUTGOING = 4


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--src-mac", required=True)
    p.add_argument("--dst-mac")
    p.add_argument("--ethertype", action="append", default=[], type=lambda v: int(v, 0))
    p.add_argument("--idle", type=float, default=2.0)
    p.add_argument("--timeout", type=float, default=60.0)
    a = p.parse_args()
    src = bytes(int(x, 16) for x in a.src_mac.split(":"))
    dst = bytes(int(x, 16) for x in a.dst_mac.split(":")) if a.dst_mac else None
    types = set(a.ethertype)

    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 256 << 20)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    s.bind((a.iface, 0))
    s.setblocking(False)
    print("ready", flush=True)

    frames = nbytes = drops = 0
    start = time.monotonic()
    last = None
    while True:
        now = time.monotonic()
        if now - start > a.timeout or (last is not None and now - last > a.idle):
            break
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            if data[6:12] != src or (dst is not None and data[0:6] != dst):
                continue
            if len(data) >= 14 and (not types or struct.unpack("!H", data[12:14])[0] in types):
                frames += 1
                nbytes += len(data)
                last = time.monotonic()
    st = s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
    _packets, drops = struct.unpack("II", st)
    print(f"frames: {frames}")
    print(f"bytes: {nbytes}")
    print(f"kernel-drops: {drops}")
    sys.exit(0)


if __name__ == "__main__":
    main()
