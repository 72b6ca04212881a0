"""N authenticated requests on ONE TCP connection, a fresh GSSAPI context per request.

usage: keepalive_client.py URL [--count N] [--anonymous-first]

Uses http.client.HTTPConnection directly and records the local port of the socket used
for each request: one distinct port means one connection (http.client would silently
reconnect if the server closed it, which would show up as a second port).
Prints {"responses": [{"status", "local_port", "mutual_ok", "body"}...],
"distinct_local_ports": K}.
"""
import argparse
import http.client
import urllib.parse

from common import body_json, emit, initiator, negotiate_header, server_token


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--anonymous-first", action="store_true")
    ap.add_argument("--host", default="localhost")
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out = []

    def send(headers):
        conn.request("GET", u.path or "/", headers=headers)
        port = conn.sock.getsockname()[1] if conn.sock else None
        r = conn.getresponse()
        return r, r.read(), port

    if args.anonymous_first:
        r, body, port = send({})
        out.append({"status": r.status, "local_port": port, "anonymous": True,
                    "www_authenticate": r.getheader("WWW-Authenticate")})
    for _ in range(args.count):
        ctx = initiator(args.host)
        r, body, port = send({"Authorization": negotiate_header(ctx.step())})
        mutual_ok = False
        srv = server_token(r.getheader("WWW-Authenticate"))
        if srv is not None:
            try:
                ctx.step(srv)
                mutual_ok = bool(ctx.complete)
            except Exception:  # noqa: BLE001
                mutual_ok = False
        out.append({"status": r.status, "local_port": port, "mutual_ok": mutual_ok,
                    "body": body_json(body)})
    conn.close()
    emit({"responses": out,
          "distinct_local_ports": len({o["local_port"] for o in out})})


if __name__ == "__main__":
    main()
