#!/usr/bin/env python3
"""An HTTP backend whose health endpoint is slow: /health answers "OK"
after --delay seconds, /id answers NAME at once, anything else 404.

    slow_http.py --port 80 --name srv3 --delay 0.3 [--bind 0.0.0.0]

Threaded, so a slow /health does not hold up /id. Prints "listening" once
bound and one line "GET PATH" per request. Runs until killed.
"""

import argparse
import http.server
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--delay", type=float, required=True)
    p.add_argument("--bind", default="0.0.0.0")
    a = p.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            print(f"GET {self.path}", flush=True)
            if self.path == "/health":
                time.sleep(a.delay)
                body = b"OK\n"
            elif self.path == "/id":
                body = (a.name + "\n").encode()
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer.allow_reuse_address = True
    srv = http.server.ThreadingHTTPServer((a.bind, a.port), Handler)
    print("listening", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
