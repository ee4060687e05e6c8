#!/usr/bin/env python3
"""Holds one TCP connection open until told how to end it.

    tcp_hold.py --to 192.0.2.100:80 [--send 'GET /id HTTP/1.1\\r\\n'] [--timeout 10]

Connects (exits 1 if it cannot), sends the --send bytes (a partial HTTP
request by default, so the server keeps waiting), prints
"connected LOCAL_IP:LOCAL_PORT", then reads commands from stdin, one a line:

    rst     close with SO_LINGER {on, 0}: the kernel sends a RST; prints "reset"
    close   close normally (FIN); prints "closed"

and exits. EOF on stdin closes normally.
"""

import argparse
import socket
import struct
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--to", required=True)
    p.add_argument("--send", default="GET /id HTTP/1.1\\r\\n")
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    host, port = a.to.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=a.timeout)
    payload = a.send.encode().decode("unicode_escape").encode("latin-1")
    if payload:
        s.sendall(payload)
    ip, lport = s.getsockname()
    print(f"connected {ip}:{lport}", flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
            print("reset", flush=True)
            return
        if cmd == "close":
            break
    s.close()
    print("closed", flush=True)


if __name__ == "__main__":
    main()
