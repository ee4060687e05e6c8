#!/usr/bin/env python3
"""A UDP backend: answers every datagram with REPLY (plus a newline), sent
from the port it listens on back to the datagram's source, and logs one line
"from IP:PORT LEN" per datagram on stdout.

    udp_responder.py --port 5353 --reply srv1 [--bind 0.0.0.0]

Prints "listening" once bound. Runs until killed.
"""

import argparse
import socket


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--reply", required=True)
    p.add_argument("--bind", default="0.0.0.0")
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    print("listening", flush=True)
    reply = (a.reply + "\n").encode()
    while True:
        data, peer = s.recvfrom(65535)
        print(f"from {peer[0]}:{peer[1]} {len(data)}", flush=True)
        s.sendto(reply, peer)


if __name__ == "__main__":
    main()
