"""GET a URL with requests + requests-gssapi (HTTPSPNEGOAuth).

usage: requests_gssapi_client.py URL [--count N] [--mutual required|optional|disabled]

Uses one requests.Session for all N requests (keep-alive). Prints
{"responses": [{"status", "www_authenticate", "body"}...], "mutual": "..."}.
With --mutual required (the default) requests-gssapi raises if the server's
mutual-authentication token is missing or invalid; that is reported as
{"error": "..."} and exit code 2.
"""
import argparse
import sys

import requests
from requests_gssapi import DISABLED, OPTIONAL, REQUIRED, HTTPSPNEGOAuth

from common import body_json, emit

MUTUAL = {"required": REQUIRED, "optional": OPTIONAL, "disabled": DISABLED}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--mutual", choices=sorted(MUTUAL), default="required")
    args = ap.parse_args()

    s = requests.Session()
    s.trust_env = False  # no proxies from the environment
    s.auth = HTTPSPNEGOAuth(mutual_authentication=MUTUAL[args.mutual])
    out = []
    try:
        for _ in range(args.count):
            r = s.get(args.url, timeout=30)
            out.append(
                {
                    "status": r.status_code,
                    "www_authenticate": r.headers.get("WWW-Authenticate"),
                    "body": body_json(r.content),
                }
            )
    except Exception as e:  # noqa: BLE001
        emit({"error": f"{type(e).__name__}: {e}", "responses": out})
        sys.exit(2)
    emit({"responses": out, "mutual": args.mutual})


if __name__ == "__main__":
    main()
