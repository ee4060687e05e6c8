#!/usr/bin/env python3
"""A TCP server that speaks first, like an SMTP server: on every connection
it sends a banner line (plus CRLF), then keeps the connection open (as an
SMTP server waits for the client's command) until the client closes it or
--hold seconds pass, and closes it.

    tcp_banner.py --port 2525 --banner '220 ready' [--banner-file PATH]
                  [--hold 10] [--bind 0.0.0.0]

With --banner-file, the banner is the file's first line, read again for
every connection (so a test can change what the server says without a
moment where nothing listens); --banner is used while the file is missing.
Logs "from IP:PORT BANNER" per connection and "got N bytes" for what a
client sends. Prints "listening" once bound. Runs until killed. One thread
per connection, so a client that never closes holds up no one else.
"""

import argparse
import socket
import threading


def banner_now(a):
    if a.banner_file:
        try:
            with open(a.banner_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except FileNotFoundError:
            pass
    return a.banner


def serve(conn, peer, banner, hold):
    print(f"from {peer[0]}:{peer[1]} {banner}", flush=True)
    try:
        conn.sendall((banner + "\r\n").encode())
        if hold > 0:
            conn.settimeout(hold)
            while True:
                data = conn.recv(4096)
                if not data:
                    break
                print(f"got {len(data)} bytes", flush=True)
    except OSError:
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--banner", required=True)
    p.add_argument("--banner-file")
    p.add_argument("--hold", type=float, default=10.0)
    p.add_argument("--bind", default="0.0.0.0")
    a = p.parse_args()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.bind, a.port))
    s.listen(128)
    print("listening", flush=True)
    while True:
        conn, peer = s.accept()
        threading.Thread(target=serve, args=(conn, peer, banner_now(a), a.hold), daemon=True).start()


if __name__ == "__main__":
    main()
