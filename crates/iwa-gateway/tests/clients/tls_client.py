"""Kerberos or NTLM over HTTPS with pyspnego, with or without channel bindings.
Prints one JSON document.

  tls_client.py --port P --protocol kerberos|ntlm --cb real|wrong|none
                [--user DOMAIN\\user --password PW] [--path /tls]

A 200 answer's body is reported as "headers" when it is the echo backend's JSON,
else as "body" (text).

--cb real binds to the certificate the server presented (RFC 5929
tls-server-end-point: SHA-256 of its DER), wrong to a different certificate hash,
none sends no bindings.
"""
import argparse
import base64
import hashlib
import http.client
import json
import os
import ssl
import sys

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--protocol", choices=["kerberos", "ntlm"], required=True)
p.add_argument("--cb", choices=["real", "wrong", "none"], required=True)
p.add_argument("--user", default=None)
p.add_argument("--password", default=None)
p.add_argument("--path", default="/tls")
# Offer h2 besides http/1.1 (a listener with NTLM must still pick http/1.1; this client
# speaks HTTP/1.1 only, so leave it off against listeners that may pick h2).
p.add_argument("--offer-h2", action="store_true")
a = p.parse_args()
if a.protocol == "ntlm":
    os.environ["KRB5CCNAME"] = "FILE:/nonexistent/iwa-no-ccache"

import spnego  # noqa: E402
import spnego.channel_bindings  # noqa: E402

tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
tls.set_alpn_protocols(["h2", "http/1.1"] if a.offer_h2 else ["http/1.1"])
conn = http.client.HTTPSConnection("localhost", a.port, timeout=30, context=tls)
conn.connect()
cert_der = conn.sock.getpeercert(binary_form=True)
if a.cb == "real":
    cert_hash = hashlib.sha256(cert_der).digest()
elif a.cb == "wrong":
    cert_hash = hashlib.sha256(b"some other certificate" + cert_der).digest()
else:
    cert_hash = None
cb = None
if cert_hash is not None:
    cb = spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + cert_hash
    )

if a.protocol == "kerberos":
    ctx = spnego.client(hostname="localhost", service="HTTP", protocol="kerberos", channel_bindings=cb)
    scheme = "Negotiate"
else:
    ctx = spnego.client(a.user, a.password, hostname="localhost", service="HTTP", protocol="ntlm",
                        channel_bindings=cb)
    scheme = "NTLM"


def send(path, token):
    conn.request("GET", path, headers={"Authorization": f"{scheme} {base64.b64encode(token).decode()}"})
    r = conn.getresponse()
    return r.status, r.getheader("www-authenticate"), r.getheader("set-cookie"), r.read()


out = {"alpn": conn.sock.selected_alpn_protocol()}
status, www, cookie, body = send(a.path, ctx.step())
if a.protocol == "ntlm":
    out["leg1"] = status
    if status != 401 or not www:
        print(json.dumps(out))
        sys.exit(0)
    status, www, cookie, body = send(a.path, ctx.step(base64.b64decode(www.split(" ", 1)[1])))
out["status"] = status
out["set_cookie"] = cookie
if status == 200:
    try:
        out["headers"] = json.loads(body)["headers"]
    except (ValueError, KeyError, TypeError):
        out["body"] = body.decode("utf-8", errors="replace")
print(json.dumps(out))
