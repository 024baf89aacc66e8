#!/usr/bin/env python3
"""An HTTP proxy in front of an S3-compatible server that injects faults, for terrafill's
fault-injection tests. Each request, drawn from a seeded generator, is either

- refused before it reaches the server (503 SlowDown, as S3 answers under load),
- forwarded and then its response replaced by a 503 (the server did the work, the client never
  learns it: the case that tests idempotent retries and create-if-absent writes),
- delayed by up to --max-delay seconds, or
- passed through.

Every injected fault is appended as one line to --log.

    s3_fault_proxy.py --port P --upstream http://127.0.0.1:9000 --refuse 0.08 --lose 0.04 \
        --delay 0.1 --seed 1 --log faults.txt
"""
import argparse
import http.client
import http.server
import random
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}
SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
             b"<Message>injected fault</Message></Error>")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--refuse", type=float, default=0.08)
    ap.add_argument("--lose", type=float, default=0.04)
    ap.add_argument("--delay", type=float, default=0.1)
    ap.add_argument("--max-delay", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    rng = random.Random(args.seed)
    lock = threading.Lock()
    log = open(args.log, "a", buffering=1)

    def draw():
        with lock:
            return rng.random(), rng.random()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def fault(self, kind):
            with lock:
                log.write(f"{kind} {self.command} {self.path}\n")

        def reply(self, status, headers, body):
            self.send_response(status)
            # A HEAD response announces the object's length without a body: keep the server's.
            keep_length = self.command == "HEAD" and status < 300
            for k, v in headers:
                skip = k.lower() in HOP_BY_HOP or (k.lower() == "content-length" and not keep_length)
                if not skip:
                    self.send_header(k, v)
            if not keep_length:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            u, extra = draw()
            if u < args.refuse:
                self.fault("refused")
                return self.reply(503, [("Content-Type", "application/xml")], SLOW_DOWN)
            if u < args.refuse + args.delay:
                time.sleep(extra * args.max_delay)
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            if args.refuse + args.delay <= u < args.refuse + args.delay + args.lose:
                self.fault("lost")
                return self.reply(503, [("Content-Type", "application/xml")], SLOW_DOWN)
            self.reply(resp.status, resp.getheaders(), data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
