#!/usr/bin/env python3
"""A slowloris client (the L7 tests): N connections that each send a
request's first line and then one more header line every `--every`
seconds, never ending the header, for at most `--secs`. Prints, per
connection, whether the server closed it and when, then
"closed K of N"."""
import argparse
import select
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, default=80)
p.add_argument("--conns", type=int, default=5)
p.add_argument("--every", type=float, default=0.5)
p.add_argument("--secs", type=float, default=30.0)
a = p.parse_args()

socks = []
for i in range(a.conns):
    s = socket.create_connection((a.host, a.port), timeout=5)
    s.sendall(b"GET / HTTP/1.1\r\nHost: slow\r\n")
    socks.append(s)
print("listening", flush=True)  # (the lab's `serve` waits for this word)
start = time.monotonic()
closed = {}
n = 0
while len(closed) < len(socks) and time.monotonic() - start < a.secs:
    open_socks = [s for s in socks if s not in closed]
    r, _, _ = select.select(open_socks, [], [], a.every)
    for s in r:
        # Anything back (a 408) or the end: the server gave up on it.
        try:
            s.recv(4096)
        except OSError:
            pass
        closed[s] = time.monotonic() - start
    n += 1
    for s in open_socks:
        if s in closed:
            continue
        try:
            s.sendall(b"X-Slow-%d: %s\r\n" % (n, b"x" * 8))
        except OSError:
            closed[s] = time.monotonic() - start
for i, s in enumerate(socks):
    print(f"conn {i}: " + (f"closed after {closed[s]:.1f} s" if s in closed else "still open"), flush=True)
print(f"closed {len(closed)} of {len(socks)}", flush=True)
