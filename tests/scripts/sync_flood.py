#!/usr/bin/env python3
"""Floods junk sync datagrams for a while: UDP from --src to --dst on the
sync port, each with the right magic, version and key id (so it passes
the cheap checks and costs the receiver a tag check) and a wrong tag.
Prints "sent N".

    sync_flood.py --iface eth0 --dst-mac MAC --src 198.51.100.3 --dst 198.51.100.4
                  --key HEX --seconds S [--port 8848]
"""

import argparse
import hashlib
import os
import socket
import struct
import time

from scapy.all import IP, UDP, Ether, Raw, get_if_hwaddr


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--port", type=int, default=8848)
    a = p.parse_args()
    key_id = hashlib.sha256(b"furiwake sync key id" + bytes.fromhex(a.key)).digest()[0]
    frames = []
    for i in range(64):
        header = b"FWSY" + struct.pack("!BBHBBHIQQQQQ", 2, 1, 0, key_id, key_id, 0, 0x0BAD0000 + i, i + 1, 0, 0, 0, 0)
        payload = header + os.urandom(32 + 44 * (i % 31))
        f = Ether(src=get_if_hwaddr(a.iface), dst=a.dst_mac) / IP(src=a.src, dst=a.dst, ttl=255) / UDP(sport=a.port, dport=a.port) / Raw(payload)
        frames.append(bytes(f))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((a.iface, 0))
    n, end = 0, time.monotonic() + a.seconds
    while time.monotonic() < end:
        for f in frames:
            try:
                s.send(f)
                n += 1
            except OSError:
                pass
    print(f"sent {n}", flush=True)


if __name__ == "__main__":
    main()
