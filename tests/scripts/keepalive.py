#!/usr/bin/env python3
"""Holds N idle HTTP/1.1 keep-alive connections and asks on each again.

    keepalive.py --to 192.0.2.100:80 [--count 20] [--path /id] [--timeout 10]

Opens COUNT connections, sends one `GET PATH` on each and reads its answer,
prints "open COUNT", then reads lines on stdin. On each "again" it sends
another request on every connection (the same sockets: no reconnect) and
prints "again OK/COUNT" followed by one line per failed connection
("fail I: reason"). At EOF (or "quit") it exits 0 if every round answered
on every connection.
"""

import argparse
import socket
import sys


def ask(s, host, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed by peer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise ConnectionError(f"status {status.decode()}")
    return body[:length].decode(errors="replace").strip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--path", default="/id")
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    host, port = a.to.rsplit(":", 1)
    socks = []
    for _ in range(a.count):
        s = socket.create_connection((host, int(port)), timeout=a.timeout)
        ask(s, host, a.path)
        socks.append(s)
    print(f"open {len(socks)}", flush=True)
    all_ok = True
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        if line.strip() != "again":
            continue
        ok, fails = 0, []
        for i, s in enumerate(socks):
            try:
                ask(s, host, a.path)
                ok += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                fails.append(f"fail {i}: {e}")
        print(f"again {ok}/{len(socks)}", flush=True)
        for f in fails:
            print(f, flush=True)
        all_ok = all_ok and ok == len(socks)
    sys.exit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
