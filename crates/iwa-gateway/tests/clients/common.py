"""Shared helpers for the iwa gateway test clients.

Every client prints exactly one JSON document on stdout; the Rust tests parse it.
Kerberos settings come from the environment (KRB5_CONFIG, KRB5CCNAME) that the test sets.
"""
import base64
import json
import sys

import gssapi

SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
KRB5 = gssapi.OID.from_int_seq("1.2.840.113554.1.2.2")


def initiator(host="localhost", service="HTTP", mech="spnego", mutual=True):
    """A fresh GSSAPI initiator context for service@host."""
    name = gssapi.Name(f"{service}@{host}", gssapi.NameType.hostbased_service)
    flags = gssapi.RequirementFlag.out_of_sequence_detection
    if mutual:
        flags |= gssapi.RequirementFlag.mutual_authentication
    return gssapi.SecurityContext(
        name=name,
        usage="initiate",
        mech=SPNEGO if mech == "spnego" else KRB5,
        flags=flags,
    )


def negotiate_header(token):
    return "Negotiate " + base64.b64encode(token).decode("ascii")


def server_token(www_authenticate):
    """The base64 token from a 'Negotiate <b64>' response header, or None."""
    if not www_authenticate:
        return None
    for part in www_authenticate.split(","):
        part = part.strip()
        if part[:10].lower() == "negotiate " and len(part) > 10:
            return base64.b64decode(part[10:].strip())
    return None


def body_json(data):
    try:
        return json.loads(data)
    except Exception:  # noqa: BLE001 - report whatever came back
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else data


def emit(doc):
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
