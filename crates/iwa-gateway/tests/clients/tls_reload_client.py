"""Kerberos over HTTPS with channel bindings for the certificate this connection got
(pyspnego), for the certificate-reload tests. Prints JSON lines.

  tls_reload_client.py --port P [--hold]

Connects, prints {"cert_sha256", "alpn"}, sends one GET with a Negotiate token bound
(tls-server-end-point) to the presented certificate and prints {"status"}. With
--hold it then waits for a line on stdin and sends a second GET with a fresh token on
the SAME connection, printing {"status", "same_connection"}.
"""
import argparse
import base64
import hashlib
import http.client
import json
import ssl
import sys

import spnego
import spnego.channel_bindings

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--hold", action="store_true")
a = p.parse_args()

tls = ssl.create_default_context()
tls.check_hostname = False
tls.verify_mode = ssl.CERT_NONE
conn = http.client.HTTPSConnection("localhost", a.port, timeout=30, context=tls)
conn.connect()
sock = conn.sock
cert_der = sock.getpeercert(binary_form=True)
# The test certificates are SHA-256 RSA: tls-server-end-point uses SHA-256.
cert_hash = hashlib.sha256(cert_der).digest()


def emit(obj):
    print(json.dumps(obj), flush=True)


def get(path):
    cb = spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + cert_hash
    )
    ctx = spnego.client(hostname="localhost", service="HTTP", protocol="kerberos", channel_bindings=cb)
    token = base64.b64encode(ctx.step()).decode()
    conn.request("GET", path, headers={"Authorization": f"Negotiate {token}"})
    r = conn.getresponse()
    r.read()
    return r.status


emit({"cert_sha256": cert_hash.hex(), "alpn": sock.selected_alpn_protocol()})
emit({"status": get("/first")})
if a.hold:
    sys.stdin.readline()
    status = get("/second")
    emit({"status": status, "same_connection": conn.sock is sock})
