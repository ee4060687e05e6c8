#!/usr/bin/env python3
"""Sends an ICMP port unreachable about a live connection's reply, from
the client's side to the VIP, with its checksum right or broken.

    icmp_forge.py --vip 192.0.2.100 --port 80 --client 192.0.2.10 --cport N [--corrupt]

Run with Debian's /usr/bin/python3 (scapy). The quoted datagram is the
server's answer as the client saw it (VIP:PORT -> client:CPORT), so the box
finds the connection and would send the error on to its server. With
--corrupt the ICMP checksum is off by one. Prints "sent".
"""

import argparse

from scapy.all import ICMP, IP, TCP, conf, send


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--client", required=True)
    p.add_argument("--cport", type=int, required=True)
    p.add_argument("--corrupt", action="store_true")
    a = p.parse_args()
    conf.verb = 0
    quoted = IP(src=a.vip, dst=a.client) / TCP(sport=a.port, dport=a.cport, flags="A", seq=1, ack=1)
    err = ICMP(type=3, code=3) / bytes(quoted)[:28]
    raw = bytes(err)
    if a.corrupt:
        c = int.from_bytes(raw[2:4], "big")
        raw = raw[:2] + ((c + 1) & 0xFFFF).to_bytes(2, "big") + raw[4:]
    send(IP(src=a.client, dst=a.vip, proto=1) / raw)
    print("sent", flush=True)


if __name__ == "__main__":
    main()
