"""GET a URL with a token built by pyspnego, sent by hand with http.client.

usage: pyspnego_client.py URL --protocol negotiate|kerberos [--host localhost]

Prints {"status", "www_authenticate", "body", "mutual_ok", "protocol"}; mutual_ok is
true when the server's token completed the context (mutual authentication).
"""
import argparse
import base64
import http.client
import urllib.parse

import spnego

from common import body_json, emit, server_token


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--protocol", choices=["negotiate", "kerberos"], default="negotiate")
    ap.add_argument("--host", default="localhost")
    args = ap.parse_args()

    ctx = spnego.client(service="HTTP", hostname=args.host, protocol=args.protocol)
    token = ctx.step()
    u = urllib.parse.urlsplit(args.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(
        "GET",
        u.path or "/",
        headers={"Authorization": "Negotiate " + base64.b64encode(token).decode()},
    )
    r = conn.getresponse()
    body = r.read()
    www = r.getheader("WWW-Authenticate")
    mutual_ok = False
    mutual_error = None
    srv = server_token(www)
    if srv is not None:
        try:
            ctx.step(srv)
            mutual_ok = bool(ctx.complete)
        except Exception as e:  # noqa: BLE001
            mutual_error = f"{type(e).__name__}: {e}"
    emit(
        {
            "protocol": args.protocol,
            "status": r.status,
            "www_authenticate": www,
            "body": body_json(body),
            "mutual_ok": mutual_ok,
            "mutual_error": mutual_error,
        }
    )


if __name__ == "__main__":
    main()
