#!/usr/bin/env python3
"""A client that stalls mid-request (the L7 tests' no-progress limits).

    stall.py read --host H --port P --path /big --wait S
        asks for PATH with a 4 KiB receive buffer, reads nothing for S
        seconds, then reads to the end: prints "got N bytes of M" and
        "ended early" when the server closed before the body's end.
    stall.py idle --host H --port P --path /id --wait S
        asks for PATH, reads the answer, then sends nothing: prints
        "closed after N s" when the server closes within S seconds.
    stall.py body --host H --port P --path /body --send N --of M --wait S
        announces a body of M bytes, sends N of them, waits up to S
        seconds for an answer: prints "status CODE" (or "no answer").
"""
import argparse
import socket
import time

p = argparse.ArgumentParser()
p.add_argument("mode", choices=["read", "body", "idle"])
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, default=80)
p.add_argument("--path", required=True)
p.add_argument("--wait", type=float, required=True)
p.add_argument("--send", type=int, default=0)
p.add_argument("--of", type=int, default=0)
a = p.parse_args()

s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
if a.mode == "read":
    # A small window that stays small (no autotuning once set).
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.settimeout(10)
s.connect((a.host, a.port))

if a.mode == "read":
    s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: stall\r\n\r\n".encode())
    time.sleep(a.wait)
    data = b""
    try:
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout) as e:
        print(f"read: {e.__class__.__name__}")
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
    print(f"got {len(body)} bytes of {length}")
    if len(body) < length:
        print("ended early")
elif a.mode == "idle":
    s.sendall(f"GET {a.path} HTTP/1.1\r\nHost: stall\r\n\r\n".encode())
    s.recv(4096)
    start = time.monotonic()
    s.settimeout(a.wait)
    try:
        while s.recv(4096):
            pass
        print(f"closed after {time.monotonic() - start:.1f} s")
    except socket.timeout:
        print(f"open after {a.wait:.0f} s")
else:
    s.sendall(f"POST {a.path} HTTP/1.1\r\nHost: stall\r\nContent-Length: {a.of}\r\n\r\n".encode() + b"x" * a.send)
    s.settimeout(a.wait)
    try:
        line = s.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
        code = line.split(" ")[1] if " " in line else repr(line)
        print(f"status {code}")
    except socket.timeout:
        print("no answer")
