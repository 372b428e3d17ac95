#!/usr/bin/env python3
"""A tiny demo backend: answers every request with its own name and the request it received.

    python3 backend.py NAME PORT [ADDRESS]   # listens on ADDRESS:PORT (default 127.0.0.1)

The answer is plain text, one field a line, so you can see what certgate forwarded:

    backend: alpha
    path: /hello?x=1
    host: paths.example.com:8080
    x-forwarded-proto: http
"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2])
ADDRESS = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        lines = [
            f"backend: {NAME}",
            f"path: {self.path}",
            f"host: {self.headers.get('Host', '')}",
            f"x-forwarded-proto: {self.headers.get('X-Forwarded-Proto', '')}",
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = answer

    def log_message(self, fmt, *args):
        sys.stderr.write(f"[{NAME}] {self.address_string()} {fmt % args}\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer((ADDRESS, PORT), Echo)
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
