#!/usr/bin/python3
"""An 802.1Q switch port in userspace for the VLAN tests (this kernel has
no VLAN devices and no VLAN-filtering bridge): frames from the trunk
interface are untagged and sent out of the access interface of their VLAN;
frames from an access interface are tagged with its VLAN and sent out of
the trunk.

The kernel hands a received tag to packet sockets beside the frame
(PACKET_AUXDATA, tp_vlan_tci) rather than in it; both forms are read.

Prints "listening" once ready; on SIGTERM, the frame counts.

usage: vlan_relay.py --trunk IFACE --access VLAN=IFACE [--access ...]
"""
import argparse
import select
import signal
import socket
import struct
import sys

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
TP_STATUS_VLAN_VALID = 0x10
PACKET_OUTGOING = 4


def open_raw(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, 0))
    return s


def receive(s):
    """(frame, vlan or None), or None for our own transmissions."""
    data, anc, _flags, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
    if addr[2] == PACKET_OUTGOING:
        return None
    vlan = None
    for level, kind, cdata in anc:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(cdata) >= 20:
            status, _len, _snap, _mac, _net, tci, _tpid = struct.unpack("IIIHHHH", cdata[:20])
            if status & TP_STATUS_VLAN_VALID:
                vlan = tci & 0x0FFF
    if vlan is None and len(data) >= 18 and data[12:14] == b"\x81\x00":
        vlan = struct.unpack("!H", data[14:16])[0] & 0x0FFF
        data = data[:12] + data[16:]
    return data, vlan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trunk", required=True)
    ap.add_argument("--access", action="append", default=[])
    a = ap.parse_args()
    trunk = open_raw(a.trunk)
    access = {}
    for spec in a.access:
        vlan, iface = spec.split("=", 1)
        access[int(vlan)] = open_raw(iface)
    by_sock = {s: v for v, s in access.items()}
    counts = {"tagged": 0, "untagged": 0, "dropped": 0}

    def stop(*_):
        print("relay: " + " ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("listening", flush=True)
    socks = [trunk] + list(access.values())
    while True:
        ready, _, _ = select.select(socks, [], [])
        for s in ready:
            got = receive(s)
            if got is None:
                continue
            frame, vlan = got
            if s is trunk:
                out = access.get(vlan)
                if out is None:
                    counts["dropped"] += 1
                    continue
                out.send(frame)
                counts["untagged"] += 1
            else:
                v = by_sock[s]
                if vlan is not None or len(frame) < 14:
                    counts["dropped"] += 1
                    continue
                trunk.send(frame[:12] + struct.pack("!HH", 0x8100, v) + frame[12:])
                counts["tagged"] += 1


if __name__ == "__main__":
    main()
