#!/usr/bin/env python3
"""A web app for iwa's backend-hosting tests (stdlib only).

It listens on 127.0.0.1:$PORT and refuses requests without the right
X-Iwa-Pairing-Token (403), as a real app behind iwa should. Behaviour is chosen by
options and by the environment `[backend] env` sets:

  --port-arg N        the port as substituted into the arguments ({port})
  --sleep S           wait S seconds before listening (startup)
  --exit-at-start N   exit with status N right away (a crashing app)
  --ignore-term       record SIGTERM but keep running
  --grandchild        start a child process (sleep) in the same process group
  $RECORD             a file; events are appended as lines: "start <pid>",
                      "sigterm <pid>", "grandchild <pid>"

Paths: /info (JSON: pid, ports, token, pairing headers seen, remote user, grandchild),
/exit/<n> (answer, then exit with status n). At start it prints one line to stdout
and one to stderr.
"""

import argparse
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = argparse.ArgumentParser()
args.add_argument("--port-arg")
args.add_argument("--sleep", type=float, default=0)
args.add_argument("--exit-at-start", type=int)
args.add_argument("--ignore-term", action="store_true")
args.add_argument("--grandchild", action="store_true")
opts = args.parse_args()

TOKEN = os.environ.get("IWA_PAIRING_TOKEN", "")
RECORD = os.environ.get("RECORD")


def record(event):
    if RECORD:
        with open(RECORD, "a") as f:
            f.write(f"{event} {os.getpid()}\n")


record("start")
print(f"hello stdout from {os.getpid()}", flush=True)
print(f"hello stderr from {os.getpid()}", file=sys.stderr, flush=True)

if opts.exit_at_start is not None:
    sys.exit(opts.exit_at_start)


def on_term(_sig, _frame):
    record("sigterm")
    if not opts.ignore_term:
        os._exit(0)


signal.signal(signal.SIGTERM, on_term)

grandchild = None
if opts.grandchild:
    grandchild = subprocess.Popen(["sleep", "300"])
    if RECORD:
        with open(RECORD, "a") as f:
            f.write(f"grandchild {grandchild.pid}\n")

time.sleep(opts.sleep)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def send(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        # The pairing check, as the README shows it.
        sent = self.headers.get("X-Iwa-Pairing-Token", "")
        if not TOKEN or not hmac.compare_digest(sent, TOKEN):
            self.send(403, "not from iwa\n", "text/plain")
            return
        if self.path.startswith("/exit/"):
            self.send(200, "bye\n", "text/plain")
            self.wfile.flush()
            os._exit(int(self.path[len("/exit/"):]))
        info = {
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "PORT": os.environ.get("PORT"),
            "HTTP_PLATFORM_PORT": os.environ.get("HTTP_PLATFORM_PORT"),
            "port_arg": opts.port_arg,
            "token": TOKEN,
            "pairing_headers": self.headers.get_all("X-Iwa-Pairing-Token") or [],
            "remote_user": self.headers.get("X-Remote-User"),
            "grandchild": grandchild.pid if grandchild else None,
            "path": self.path,
            "env_greeting": os.environ.get("GREETING"),
        }
        self.send(200, json.dumps(info))


server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler)
server.serve_forever()
