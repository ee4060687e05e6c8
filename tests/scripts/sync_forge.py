#!/usr/bin/env python3
"""Sends one Furiwake sync datagram built by hand (scapy), signed with the
shared key or with a wrong tag.

    sync_forge.py --iface eth0 --dst-mac MAC --src 198.51.100.3 --dst 198.51.100.4
                  --key HEX (--good | --bad) [--port 8848] [--sender N] [--seq N]
                  [--client 192.0.2.77:40000] [--vip 192.0.2.100:80] [--server 198.51.100.11:80]
                  [--fresh]

The datagram (controlplane/src/modules/sync/wire.rs) carries one Create
record of an ESTABLISHED NAT TCP connection client -> vip -> server.
With --fresh, it first sniffs one of the receiver's (--dst) datagrams on
--iface and echoes its nonce and pair fingerprint, as the peer would (the
receiver takes records only from datagrams that echo its nonce).
Prints "sent".
"""

import argparse
import hashlib
import hmac
import os
import socket
import struct
import time

from scapy.all import IP, UDP, Ether, Raw, sendp


def addr(s):
    h, p = s.rsplit(":", 1)
    return socket.inet_aton(h), int(p)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--dst-mac", required=True)
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--key", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--good", action="store_true")
    g.add_argument("--bad", action="store_true")
    p.add_argument("--port", type=int, default=8848)
    p.add_argument("--sender", type=int, default=0x5EED0001)
    p.add_argument("--seq", type=int, default=1)
    p.add_argument("--client", default="192.0.2.77:40000")
    p.add_argument("--vip", default="192.0.2.100:80")
    p.add_argument("--server", default="198.51.100.11:80")
    p.add_argument("--fresh", action="store_true")
    a = p.parse_args()
    key = bytes.fromhex(a.key)
    key_id = hashlib.sha256(b"furiwake sync key id" + key).digest()[0]
    echo, fingerprint = 0, 0
    if a.fresh:
        from scapy.all import sniff
        got = sniff(iface=a.iface, timeout=10, count=1, lfilter=lambda f: UDP in f and f[IP].src == a.dst and f[UDP].dport == a.port)
        if not got:
            raise SystemExit("no datagram from the receiver")
        payload = bytes(got[0][UDP].payload)
        echo, fingerprint = struct.unpack("!Q8xQ", payload[32:56])
    (cip, cport), (vip, vport), (sip, sport) = addr(a.client), addr(a.vip), addr(a.server)
    # kind Create(1), family 4, TCP, ESTABLISHED(2), mode NAT(0), flags 0,
    # client port id 0, zero; client MAC; zero(2); four addresses (the local
    # one is the client's for NAT); four ports; timeout 60 s.
    record = struct.pack("!8B", 1, 4, 6, 2, 0, 0, 0, 0) + bytes.fromhex("020000000077") + b"\0\0"
    record += cip + vip + sip + cip + struct.pack("!4HI", cport, vport, sport, cport, 60000)
    assert len(record) == 44
    # Version 2, Records, one record; key id, sender's key id, zero; sender,
    # sequence, sent at; nonce, echo, fingerprint.
    header = b"FWSY" + struct.pack("!BBHBBHIQQQQQ", 2, 2, 1, key_id, key_id, 0, a.sender, a.seq, int(time.time() * 1e6), 0x5EED, echo, fingerprint)
    body = header + record
    tag = hmac.new(key, body, hashlib.sha256).digest() if a.good else os.urandom(32)
    frame = Ether(dst=a.dst_mac) / IP(src=a.src, dst=a.dst, ttl=255) / UDP(sport=a.port, dport=a.port) / Raw(body + tag)
    sendp(frame, iface=a.iface, verbose=False)
    print("sent", flush=True)


if __name__ == "__main__":
    main()
