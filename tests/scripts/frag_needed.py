#!/usr/bin/env python3
"""Opens a TCP connection to VIP:PORT and holds it, then sends what a
router on the client's side would send about the server's next segment
to the client: ICMP fragmentation needed (RFC 1191) to the VIP, quoting
(VIP:PORT -> client:CPORT) with the sequence number the client expects
next, as it saw it (the SYN-ACK's + 1: the request sent is partial, so
the server sends nothing more and that is its SND.UNA = SND.NXT).

    frag_needed.py --vip 192.0.2.100 --port 80 --iface eth0 --router 192.0.2.1 --mtu 1000 [--hold 3]
                   [--code 4] [--seq-offset N] [--corrupt]

--code sends another destination unreachable (3: port unreachable);
--seq-offset moves the quoted sequence number (a blind guess); --corrupt
puts the ICMP checksum off by one.

Run with Debian's /usr/bin/python3 (scapy). Prints "quoted seq N cport
P" and "sent HEX" (the error's IPv4 packet, as sent), then holds the
connection --hold seconds (the server's socket must live when the error
reaches it) and closes it.
"""

import argparse
import socket
import threading
import time

from scapy.all import ICMP, IP, TCP, AsyncSniffer, conf, raw, send


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vip", required=True)
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--router", required=True)
    p.add_argument("--mtu", type=int, default=1000)
    p.add_argument("--hold", type=float, default=3.0)
    p.add_argument("--code", type=int, default=4)
    p.add_argument("--seq-offset", type=int, default=0)
    p.add_argument("--corrupt", action="store_true")
    a = p.parse_args()
    conf.verb = 0
    s = socket.socket()
    s.bind(("", 0))
    cport = s.getsockname()[1]
    ready = threading.Event()
    sniffer = AsyncSniffer(
        iface=a.iface,
        filter=f"tcp and src host {a.vip} and src port {a.port} and dst port {cport} and tcp[tcpflags] & tcp-syn != 0",
        count=1,
        started_callback=ready.set,
    )
    sniffer.start()
    ready.wait(5)
    s.settimeout(10)
    s.connect((a.vip, a.port))
    s.sendall(b"GET /id HTTP/1.1\r\n")
    sniffer.join(timeout=5)
    synack = sniffer.results[0][TCP]
    client = s.getsockname()[0]
    seq = (synack.seq + 1 + a.seq_offset) & 0xFFFFFFFF
    # A full-sized segment with DF, quoted as Linux quotes: header and
    # TCP header (40 bytes here; at least the 8 RFC 792 asks).
    quoted = IP(src=a.vip, dst=client, flags="DF", len=1500, ttl=63, id=0) / TCP(sport=a.port, dport=cport, flags="PA", seq=seq, ack=synack.ack, window=502)
    err = IP(src=a.router, dst=a.vip, tos=0xC0, id=1) / ICMP(type=3, code=a.code, nexthopmtu=a.mtu if a.code == 4 else 0) / raw(quoted)[:40]
    wire = raw(err)
    if a.corrupt:
        c = int.from_bytes(wire[22:24], "big")
        wire = wire[:22] + ((c + 1) & 0xFFFF).to_bytes(2, "big") + wire[24:]
    send(IP(wire))
    print(f"quoted seq {seq} cport {cport}", flush=True)
    print("sent " + wire.hex(), flush=True)
    time.sleep(a.hold)
    s.close()


if __name__ == "__main__":
    main()
