#!/usr/bin/env python3
"""Sends a spoofed RST into a live connection and says whether it survived.

    rst_probe.py --vip 192.0.2.100 --port 80 --iface eth0 --offset N

Run with Debian's /usr/bin/python3 (scapy), inside the client namespace.
Opens a connection to VIP:PORT with a kernel socket and sends the start of
an HTTP request (the server waits for the rest), learns the connection's
next sequence number by sniffing it, then sends a RST from the client's
address and port with sequence number next + OFFSET (0: exactly where the
server expects it; a small offset: inside its window; a large one:
outside). Then it sends the rest of the request and prints

    rst seq=S next=N
    answer: <the response's status line>    (the connection survived)
    answer: none (<why>)                     (it did not)
"""

import argparse
import socket
import sys
import time

from scapy.all import IP, TCP, AsyncSniffer, conf, send


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--offset", type=int, required=True)
    a = p.parse_args()
    conf.verb = 0
    sniffer = AsyncSniffer(iface=a.iface, filter=f"tcp and host {a.vip} and port {a.port}", store=True)
    sniffer.start()
    time.sleep(0.5)
    s = socket.create_connection((a.vip, a.port), timeout=5)
    s.sendall(b"GET /id HTTP/1.1\r\nHost: furiwake\r\n")
    time.sleep(0.5)
    lip, lport = s.getsockname()
    pkts = sniffer.stop()
    mine = [q for q in pkts if IP in q and TCP in q and q[IP].src == lip and q[TCP].sport == lport]
    if not mine:
        print("answer: none (no packets of the connection seen)", flush=True)
        return 1
    nxt = max((q[TCP].seq + len(q[TCP].payload) + (1 if q[TCP].flags & 0x02 else 0)) % 2**32 for q in mine)
    seq = (nxt + a.offset) % 2**32
    print(f"rst seq={seq} next={nxt}", flush=True)
    send(IP(src=lip, dst=a.vip) / TCP(sport=lport, dport=a.port, flags="R", seq=seq))
    time.sleep(0.5)
    try:
        s.sendall(b"\r\n")
        data = s.recv(4096)
        if data:
            print("answer:", data.split(b"\r\n")[0].decode(errors="replace"), flush=True)
        else:
            print("answer: none (closed)", flush=True)
    except OSError as e:
        print(f"answer: none ({type(e).__name__})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
