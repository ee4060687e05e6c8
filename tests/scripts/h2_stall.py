#!/usr/bin/env python3
"""A raw h2 client (prior knowledge, no TLS) that stalls (the L7 tests'
h2 deadlines). Frames are written by hand (RFC 9113 §4, §6; HPACK RFC
7541 static table and literals only).

    h2_stall.py window --host H --port P --path /big --wait S
        opens every stream's window at 0 (SETTINGS_INITIAL_WINDOW_SIZE),
        asks for PATH and never opens it; answers PINGs.
    h2_stall.py ping --host H --port P --wait S [--no-ack]
        asks for nothing and sends a PING every half second; with
        --no-ack it never acknowledges the server's PINGs (a graceful
        close waits for that acknowledgement).

Prints "status CODE" for the answer's HEADERS (200 when its first
field is HPACK's static `:status: 200`, else "other"), "data N" (DATA
bytes received), "goaway CODE" for a GOAWAY, and "closed after N s" once
the server closes the connection (else "open after S s").
"""
import argparse
import select
import socket
import struct
import time

p = argparse.ArgumentParser()
p.add_argument("mode", choices=["window", "ping"])
p.add_argument("--host", required=True)
p.add_argument("--port", type=int, default=80)
p.add_argument("--path", default="/")
p.add_argument("--wait", type=float, required=True)
p.add_argument("--no-ack", action="store_true")
a = p.parse_args()


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index, value):
    """A literal header field without indexing, its name from the static table."""
    v = value.encode()
    return bytes([index]) + bytes([len(v)]) + v


s = socket.create_connection((a.host, a.port), timeout=5)
settings = struct.pack(">HI", 4, 0) if a.mode == "window" else b""
s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, settings))
if a.mode == "window":
    block = b"\x82\x86" + literal(4, a.path) + literal(1, "stall")
    s.sendall(frame(1, 0x5, 1, block))
start = time.monotonic()
buf = b""
data = 0
closed = None
status = None
goaway = None
next_ping = start
while time.monotonic() - start < a.wait and closed is None:
    if a.mode == "ping" and time.monotonic() >= next_ping:
        try:
            s.sendall(frame(6, 0, 0, b"12345678"))
        except OSError:
            closed = time.monotonic() - start
            break
        next_ping += 0.5
    r, _, _ = select.select([s], [], [], 0.1)
    if not r:
        continue
    try:
        chunk = s.recv(65536)
    except OSError:
        chunk = b""
    if not chunk:
        closed = time.monotonic() - start
        break
    buf += chunk
    while len(buf) >= 9:
        n = int.from_bytes(buf[:3], "big")
        if len(buf) < 9 + n:
            break
        kind, flags = buf[3], buf[4]
        payload, buf = buf[9:9 + n], buf[9 + n:]
        reply = None
        if kind == 0:
            data += n
        elif kind == 1 and status is None:
            # Padding and priority flags are not used by the server here.
            status = "200" if payload[:1] == b"\x88" else "other"
        elif kind == 4 and not flags & 1:
            reply = frame(4, 1, 0)
        elif kind == 6 and not flags & 1 and not a.no_ack:
            reply = frame(6, 1, 0, payload)
        elif kind == 7 and goaway is None:
            goaway = int.from_bytes(payload[4:8], "big")
        if reply is not None:
            try:
                s.sendall(reply)
            except OSError:
                # The server closed first: its close ends the loop below.
                pass
if status is not None:
    print(f"status {status}")
if goaway is not None:
    print(f"goaway {goaway}")
print(f"data {data}")
print(f"closed after {closed:.1f} s" if closed is not None else f"open after {a.wait:.0f} s")
