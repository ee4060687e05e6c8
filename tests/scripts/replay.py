#!/usr/bin/env python3
"""Replays the frames of a pcap on an interface, as captured but for the
source MAC (--src-mac: so the bridge does not learn the original sender's
MAC on this port). Prints "replayed N".

    replay.py --iface eth0 --pcap FILE --src-mac MAC [--dst-mac MAC]
"""

import argparse

from scapy.all import Ether, rdpcap, sendp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--iface", required=True)
    p.add_argument("--pcap", required=True)
    p.add_argument("--src-mac", required=True)
    p.add_argument("--dst-mac")
    a = p.parse_args()
    frames = []
    for f in rdpcap(a.pcap):
        f = Ether(bytes(f))
        f.src = a.src_mac
        if a.dst_mac:
            f.dst = a.dst_mac
        frames.append(f)
    sendp(frames, iface=a.iface, verbose=False)
    print(f"replayed {len(frames)}", flush=True)


if __name__ == "__main__":
    main()
