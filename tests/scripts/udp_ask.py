#!/usr/bin/env python3
"""A UDP client: sends one datagram to HOST:PORT from a given source port
and prints the first answer that comes back from HOST:PORT itself (the
socket is connected, so the kernel drops datagrams from anywhere else).

    udp_ask.py --to 192.0.2.100:5353 --sport 40001 [--tries 5] [--wait 1]

The same datagram is sent again from the same socket (same source port,
hence the same flow) every --wait seconds until an answer comes, at most
--tries times. Exits 1 without an answer.
"""

import argparse
import socket
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--to", required=True)
    p.add_argument("--sport", type=int, default=0)
    p.add_argument("--tries", type=int, default=5)
    p.add_argument("--wait", type=float, default=1.0)
    p.add_argument("--message", default="hello")
    a = p.parse_args()
    host, port = a.to.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", a.sport))
    s.connect((host, int(port)))
    s.settimeout(a.wait)
    for _ in range(a.tries):
        s.send(a.message.encode())
        try:
            data = s.recv(65535)
        except (socket.timeout, ConnectionRefusedError):
            continue
        print(data.decode(errors="replace").strip())
        return
    print(f"no answer from {a.to} after {a.tries} tries", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
