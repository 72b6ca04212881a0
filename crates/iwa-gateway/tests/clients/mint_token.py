"""Print a fresh initial Negotiate token (base64) for HTTP@HOST, without sending it.

usage: mint_token.py [--host localhost] [--mech spnego|krb5] [--no-mutual]

Prints {"token": "<base64>", "target": "HTTP@HOST"}. Used for replay, truncation and
wrong-service tests, where the test sends the token itself.
"""
import argparse
import base64

from common import emit, initiator


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="localhost")
    ap.add_argument("--service", default="HTTP")
    ap.add_argument("--mech", choices=["spnego", "krb5"], default="spnego")
    ap.add_argument("--no-mutual", action="store_true")
    args = ap.parse_args()
    ctx = initiator(args.host, args.service, args.mech, mutual=not args.no_mutual)
    token = ctx.step()
    emit(
        {
            "token": base64.b64encode(token).decode("ascii"),
            "target": f"{args.service}@{args.host}",
        }
    )


if __name__ == "__main__":
    main()
