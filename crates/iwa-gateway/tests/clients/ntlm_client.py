"""NTLM through the gateway with pyspnego: raw NTLM, NTLM under Negotiate, or NTLM
wrapped in SPNEGO (with mechListMIC). Prints one JSON document.

  ntlm_client.py --port P --mode ntlm|negotiate-raw|spnego --user U --domain D --password PW
                 [--lm-compat N] [--split] [--replay]
"""
import argparse
import base64
import http.client
import json
import os
import sys

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--mode", required=True)
p.add_argument("--user", required=True)
p.add_argument("--domain", default="")
p.add_argument("--password", required=True)
p.add_argument("--lm-compat", type=int, default=None)
p.add_argument("--split", action="store_true", help="send AUTHENTICATE on a new connection")
p.add_argument("--replay", action="store_true", help="after success, resend AUTHENTICATE on a new connection")
a = p.parse_args()
if a.lm_compat is not None:
    # pyspnego's NTLM honours LM_COMPAT_LEVEL like Windows: 0/1 send NTLMv1/NTLM2.
    os.environ["LM_COMPAT_LEVEL"] = str(a.lm_compat)
# No Kerberos for these clients: SPNEGO must fall back to NTLM.
os.environ["KRB5CCNAME"] = "FILE:/nonexistent/iwa-no-ccache"

import spnego  # noqa: E402

user = f"{a.domain}\\{a.user}" if a.domain else a.user
if a.mode == "ntlm":
    ctx = spnego.client(user, a.password, hostname="localhost", service="HTTP", protocol="ntlm")
    scheme = "NTLM"
elif a.mode == "negotiate-raw":
    ctx = spnego.client(user, a.password, hostname="localhost", service="HTTP", protocol="negotiate",
                        options=spnego.NegotiateOptions.use_ntlm)
    scheme = "Negotiate"
else:
    ctx = spnego.client(user, a.password, hostname="localhost", service="HTTP", protocol="negotiate")
    scheme = "Negotiate"


def send(conn, path, token=None):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"{scheme} {base64.b64encode(token).decode()}"
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    return r.status, r.getheader("www-authenticate"), body


out = {}
conn = http.client.HTTPConnection("localhost", a.port, timeout=10)
status, www, _ = send(conn, "/leg1", ctx.step())
out["leg1"] = status
out["leg1_www"] = (www or "")[:20]
if status != 401 or not www:
    print(json.dumps(out))
    sys.exit(0)
challenge = base64.b64decode(www.split(" ", 1)[1])
try:
    authenticate = ctx.step(challenge)
except Exception as e:  # the client itself refused (e.g. policy)
    out["client_error"] = str(e)
    print(json.dumps(out))
    sys.exit(0)
if a.split:
    conn = http.client.HTTPConnection("localhost", a.port, timeout=10)
status, www, body = send(conn, "/leg2", authenticate)
out["leg2"] = status
if status == 200:
    out["headers"] = json.loads(body)["headers"]
    if www:
        try:
            ctx.step(base64.b64decode(www.split(" ", 1)[1]))
        except Exception as e:
            out["final_error"] = str(e)
    out["complete"] = bool(ctx.complete)
    status, _, _ = send(conn, "/again")
    out["again"] = status
if a.replay:
    other = http.client.HTTPConnection("localhost", a.port, timeout=10)
    status, _, _ = send(other, "/replay", authenticate)
    out["replay"] = status
print(json.dumps(out))
