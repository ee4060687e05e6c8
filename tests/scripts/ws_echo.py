#!/usr/bin/env python3
"""A minimal WebSocket (RFC 6455) echo server and client for the L7 tests.

  ws_echo.py serve --addr IP --port N      echoes text frames, prefixed "echo: "
  ws_echo.py ask --addr IP --port N --text T [--times K]
      upgrades GET /ws, sends T K times over the one connection and
      prints each answer; exits 1 on a refused upgrade.
"""
import argparse
import base64
import hashlib
import os
import socket
import struct
import sys
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(4096)
        if not d:
            return None, b""
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def recv_exact(s, n, pre):
    buf = pre
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            raise EOFError
        buf += d
    return buf[:n], buf[n:]


def read_frame(s, pre):
    h, pre = recv_exact(s, 2, pre)
    ln = h[1] & 0x7F
    masked = h[1] & 0x80
    if ln == 126:
        x, pre = recv_exact(s, 2, pre)
        ln = struct.unpack(">H", x)[0]
    elif ln == 127:
        x, pre = recv_exact(s, 8, pre)
        ln = struct.unpack(">Q", x)[0]
    mask = b""
    if masked:
        mask, pre = recv_exact(s, 4, pre)
    data, pre = recv_exact(s, ln, pre)
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return h[0] & 0x0F, data, pre


def frame(data, mask):
    h = bytes([0x81])
    ln = len(data)
    m = 0x80 if mask else 0
    if ln < 126:
        h += bytes([m | ln])
    elif ln < 65536:
        h += bytes([m | 126]) + struct.pack(">H", ln)
    else:
        h += bytes([m | 127]) + struct.pack(">Q", ln)
    if mask:
        k = os.urandom(4)
        return h + k + bytes(b ^ k[i % 4] for i, b in enumerate(data))
    return h + data


def serve_one(c):
    head, pre = read_head(c)
    if head is None:
        return
    key = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:")]
    if not key:
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return
    acc = base64.b64encode(hashlib.sha1((key[0] + GUID).encode()).digest()).decode()
    c.sendall(f"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n".encode())
    try:
        while True:
            op, data, pre = read_frame(c, pre)
            if op == 8:
                return
            c.sendall(frame(b"echo: " + data, False))
    except EOFError:
        return


def serve(a):
    l = socket.socket()
    l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind((a.addr, a.port))
    l.listen(16)
    print("listening", flush=True)
    while True:
        c, _ = l.accept()
        threading.Thread(target=serve_one, args=(c,), daemon=True).start()


def ask(a):
    s = socket.create_connection((a.addr, a.port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: {a.addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head, pre = read_head(s)
    if head is None or not head.startswith("HTTP/1.1 101"):
        print(f"no upgrade: {head!r}", flush=True)
        sys.exit(1)
    for _ in range(a.times):
        s.sendall(frame(a.text.encode(), True))
        _, data, pre = read_frame(s, pre)
        print(data.decode(), flush=True)


p = argparse.ArgumentParser()
p.add_argument("mode", choices=["serve", "ask"])
p.add_argument("--addr", required=True)
p.add_argument("--port", type=int, default=9000)
p.add_argument("--text", default="hello")
p.add_argument("--times", type=int, default=1)
a = p.parse_args()
serve(a) if a.mode == "serve" else ask(a)
