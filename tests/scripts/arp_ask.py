#!/usr/bin/env python3
"""Asks for an address by ARP N times and prints how many answers came.

    arp_ask.py --ip 192.0.2.2 --iface eth0 [--count 10]

Run with Debian's /usr/bin/python3 (scapy). Prints "answered A of N".
"""

import argparse
import time

from scapy.all import ARP, Ether, conf, get_if_hwaddr, srp1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ip", required=True)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--count", type=int, default=10)
    a = p.parse_args()
    conf.verb = 0
    mac = get_if_hwaddr(a.iface)
    answered = 0
    for _ in range(a.count):
        # The kernel filters what scapy reads: a flood on the same interface
        # would drown its sniffer.
        r = srp1(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(pdst=a.ip, hwsrc=mac), iface=a.iface, timeout=1, filter="arp")
        if r is not None and ARP in r and r[ARP].op == 2 and r[ARP].psrc == a.ip:
            answered += 1
        time.sleep(0.2)
    print(f"answered {answered} of {a.count}", flush=True)


if __name__ == "__main__":
    main()
