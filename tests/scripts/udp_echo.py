#!/usr/bin/env python3
"""A UDP echo backend: answers every datagram with the datagram itself
(followed by " TAG" when --tag is given), sent from the port it listens on
back to the datagram's source, and logs one line per datagram on stdout:
"from IP:PORT LEN PAYLOAD" (PAYLOAD decoded as UTF-8 with replacement,
control characters escaped).

    udp_echo.py --port 5353 [--tag srv1] [--reply-file PATH] [--bind 0.0.0.0]

With --reply-file, while that file exists its first line (plus a newline)
is the answer instead of the echo, read again for every datagram (so a test
can change what the server says without a moment where nothing listens).
Prints "listening" once bound. Runs until killed.
"""

import argparse
import socket


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tag", default="")
    p.add_argument("--reply-file")
    p.add_argument("--bind", default="0.0.0.0")
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    print("listening", flush=True)
    suffix = (" " + a.tag).encode() if a.tag else b""
    while True:
        data, peer = s.recvfrom(65535)
        shown = data.decode(errors="replace").encode("unicode_escape").decode("ascii")
        print(f"from {peer[0]}:{peer[1]} {len(data)} {shown}", flush=True)
        reply = data + suffix
        if a.reply_file:
            try:
                with open(a.reply_file, encoding="utf-8") as f:
                    reply = (f.readline().rstrip("\r\n") + "\n").encode()
            except FileNotFoundError:
                pass
        s.sendto(reply, peer)


if __name__ == "__main__":
    main()
