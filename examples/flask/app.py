"""A Flask app behind iwa that trusts the caller's identity only through a verified
X-Iwa-Assertion (see README.md).

Every request must carry an assertion that verifies: signature under the pinned
algorithm and key, expiry, audience, and that it was made for this very request
(method and path). Otherwise the answer is 401/403 with the reason.

Environment:
  IWA_ASSERTION_PUBLIC_KEY_FILE  the gateway's Ed25519 public key (PEM) -> EdDSA, or
  IWA_ASSERTION_SECRET_FILE      the HS256 shared secret file            -> HS256
  IWA_ASSERTION_ALGORITHM        optional: "EdDSA" or "HS256"; must agree with the file
  IWA_ASSERTION_AUDIENCE         the gateway's [assertion] audience (required)
  IWA_ASSERTION_LEEWAY           seconds of clock skew tolerated (default 5)
  PORT, HTTP_PLATFORM_PORT       the port to listen on, on 127.0.0.1 (default 5000)
  IWA_PAIRING_TOKEN              set by iwa when it hosts the app: requests must then
                                 carry it in X-Iwa-Pairing-Token
"""

import hmac
import os
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from flask import Flask, g, jsonify, render_template_string, request

# Claims every iwa assertion carries.
REQUIRED_CLAIMS = ["sub", "upn", "amr", "iat", "exp", "aud", "htm", "htu"]


class Settings:
    """What the app checks assertions against; read once, at start."""

    def __init__(self, env):
        public_key_file = env.get("IWA_ASSERTION_PUBLIC_KEY_FILE")
        secret_file = env.get("IWA_ASSERTION_SECRET_FILE")
        if public_key_file and secret_file:
            raise ValueError(
                "set IWA_ASSERTION_PUBLIC_KEY_FILE (EdDSA) or IWA_ASSERTION_SECRET_FILE (HS256), not both"
            )
        if public_key_file:
            self.algorithm = "EdDSA"
            with open(public_key_file, "rb") as f:
                key = load_pem_public_key(f.read())
            if not isinstance(key, Ed25519PublicKey):
                raise ValueError(f"{public_key_file} is not an Ed25519 public key")
            self.key = key
        elif secret_file:
            self.algorithm = "HS256"
            with open(secret_file, "rb") as f:
                secret = f.read()
            # The gateway's rule: the file's bytes, one trailing newline dropped.
            if secret.endswith(b"\n"):
                secret = secret[:-1]
            if len(secret) < 32:
                raise ValueError(f"{secret_file}: the secret must be at least 32 bytes")
            self.key = secret
        else:
            raise ValueError(
                "set IWA_ASSERTION_PUBLIC_KEY_FILE (the gateway's assertion.pub) or IWA_ASSERTION_SECRET_FILE"
            )
        pinned = env.get("IWA_ASSERTION_ALGORITHM")
        if pinned and pinned != self.algorithm:
            raise ValueError(
                f"IWA_ASSERTION_ALGORITHM is {pinned}, but the key given is for {self.algorithm}"
            )
        self.audience = env.get("IWA_ASSERTION_AUDIENCE", "")
        if not self.audience:
            raise ValueError("set IWA_ASSERTION_AUDIENCE to the gateway's [assertion] audience")
        self.leeway = int(env.get("IWA_ASSERTION_LEEWAY", "5"))
        self.pairing_token = env.get("IWA_PAIRING_TOKEN") or None


class Refused(Exception):
    """A request without a valid assertion: HTTP status, short reason, details."""

    def __init__(self, status, reason, detail):
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


def request_target(req):
    """The path and query exactly as the client sent them (what iwa signs as `htu`)."""
    raw = req.environ.get("RAW_URI") or req.environ.get("REQUEST_URI")
    if raw:
        return raw
    query = req.query_string.decode("latin-1")
    return req.path + ("?" + query if query else "")


def verify(settings, req):
    """The claims of the request's assertion, or Refused."""
    if settings.pairing_token is not None:
        sent = req.headers.get("X-Iwa-Pairing-Token", "")
        if not hmac.compare_digest(sent.encode(), settings.pairing_token.encode()):
            raise Refused(403, "pairing", "the request did not come through the iwa that started this app")
    token = req.headers.get("X-Iwa-Assertion")
    if not token:
        raise Refused(401, "missing", "no X-Iwa-Assertion header: requests must come through iwa")
    try:
        claims = jwt.decode(
            token,
            settings.key,
            algorithms=[settings.algorithm],  # pinned: never taken from the token
            audience=settings.audience,
            leeway=settings.leeway,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as e:
        raise Refused(401, "expired", str(e))
    except jwt.ImmatureSignatureError as e:
        raise Refused(401, "not-yet-valid", str(e))
    except jwt.InvalidAudienceError as e:
        raise Refused(403, "wrong-audience", f"{e} (this app is {settings.audience!r})")
    except jwt.InvalidAlgorithmError as e:
        raise Refused(401, "wrong-algorithm", f"{e} (this app accepts {settings.algorithm} only)")
    except jwt.InvalidSignatureError as e:
        raise Refused(401, "bad-signature", str(e))
    except jwt.MissingRequiredClaimError as e:
        raise Refused(401, "missing-claim", str(e))
    except jwt.InvalidTokenError as e:
        raise Refused(401, "malformed", str(e))
    target = request_target(req)
    if claims["htm"] != req.method or claims["htu"] != target:
        raise Refused(
            403,
            "wrong-request",
            f"the assertion is for {claims['htm']} {claims['htu']}, not {req.method} {target}",
        )
    return claims


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Hello {{ c.sub }}</title>
<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}</style>
</head>
<body>
<h1>Hello, {{ c.sub }}</h1>
<p>iwa signed this for <code>{{ c.htm }} {{ c.htu }}</code>; this app checked it.</p>
<table>
<tr><th>User</th><td>{{ c.sub }}</td></tr>
<tr><th>Principal</th><td>{{ c.upn }}</td></tr>
<tr><th>SID</th><td>{{ c.sid or "(unknown)" }}</td></tr>
<tr><th>Auth method</th><td>{{ c.amr }}</td></tr>
{% if c.act %}<tr><th>Impersonator</th><td>{{ c.act }}</td></tr>{% endif %}
<tr><th>Groups</th><td><ul>{% for g in c.groups %}<li>{{ g }}</li>{% else %}<li>(none)</li>{% endfor %}</ul></td></tr>
<tr><th>Group SIDs</th><td><ul>{% for s in c.group_sids %}<li>{{ s }}</li>{% else %}<li>(none)</li>{% endfor %}</ul></td></tr>
</table>
<p><a href="/api/me">/api/me</a> (JSON)</p>
</body>
</html>
"""


def create_app(settings):
    app = Flask(__name__)

    @app.before_request
    def require_assertion():
        # Every route, including unknown ones: nothing is served without an identity.
        g.claims = verify(settings, request)

    @app.errorhandler(Refused)
    def refused(e):
        if request.path.startswith("/api/"):
            return jsonify(error=e.reason, detail=e.detail), e.status
        return f"refused: {e.reason}: {e.detail}\n", e.status, {"Content-Type": "text/plain; charset=utf-8"}

    @app.get("/")
    def index():
        return render_template_string(PAGE, c=g.claims)

    @app.get("/api/me")
    def me():
        c = g.claims
        return jsonify(
            user=c["sub"],
            principal=c["upn"],
            sid=c.get("sid"),
            groups=c.get("groups", []),
            group_sids=c.get("group_sids", []),
            auth_method=c["amr"],
            impersonator=c.get("act"),
            audience=c["aud"],
            expires=c["exp"],
        )

    return app


def make_app():
    """The WSGI app configured from the environment, for a production server:
    `gunicorn -b 127.0.0.1:$PORT 'app:make_app()'` or `waitress-serve --call app:make_app`."""
    return create_app(Settings(os.environ))


def main():
    try:
        settings = Settings(os.environ)
    except (OSError, ValueError) as e:
        print(f"app.py: {e}", file=sys.stderr)
        return 2
    port = int(os.environ.get("PORT") or os.environ.get("HTTP_PLATFORM_PORT") or "5000")
    print(
        f"app.py: {settings.algorithm} assertions for audience {settings.audience!r}"
        f"{', pairing token required' if settings.pairing_token else ''}; http://127.0.0.1:{port}/",
        file=sys.stderr,
        flush=True,
    )
    # Flask's development server: fine for this example, not for production (README.md).
    create_app(settings).run(host="127.0.0.1", port=port, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
