#!/usr/bin/env python3
# Verifies a latchkey access token as another service would: RFC 8414 metadata, the published JWK Set, then PyJWT.
# Run: pip install -r examples/requirements.txt; LATCHKEY_URL=http://127.0.0.1:8080 python3 examples/verify.py <token>  (or pipe it in)
import json
import os
import sys
import time
import urllib.error
import urllib.request

import jwt

ISSUER_URL = os.environ.get("LATCHKEY_URL", "http://127.0.0.1:8080").rstrip("/")
AUDIENCE = os.environ.get("LATCHKEY_AUDIENCE") or "latchkey"


def fail(message):
    print(f"verify: {message}", file=sys.stderr)
    sys.exit(1)


if len(sys.argv) > 1:
    token = sys.argv[1].strip()
elif not sys.stdin.isatty():
    token = sys.stdin.read().strip()
else:
    token = ""
if not token:
    print("usage: [LATCHKEY_URL=http://127.0.0.1:8080] [LATCHKEY_AUDIENCE=latchkey] "
          "python3 verify.py <token>  (or the token on stdin)", file=sys.stderr)
    sys.exit(2)

# Only the issuer URL is configured; the metadata says where its keys are.
metadata_url = f"{ISSUER_URL}/.well-known/oauth-authorization-server"
try:
    with urllib.request.urlopen(metadata_url, timeout=10) as response:
        metadata = json.load(response)
except (urllib.error.URLError, ValueError) as err:
    fail(f"cannot read the server metadata at {metadata_url}: {err}")
# RFC 8414 §3.3: metadata that names another issuer must not be trusted for this one.
if metadata.get("issuer", "").rstrip("/") != ISSUER_URL:
    fail(f"{metadata_url} names issuer {metadata.get('issuer')!r}, not {ISSUER_URL!r}; set LATCHKEY_URL to the issuer")
if "jwks_uri" not in metadata:
    fail(f"{ISSUER_URL} publishes no jwks_uri: it signs tokens with a shared HS256 secret, "
         "which only the server itself can check. Start it with --jwt-alg EdDSA to verify tokens elsewhere.")

try:
    # RFC 9068 §4: a JWT signed by the same key but meant for something else is not an access token.
    typ = jwt.get_unverified_header(token).get("typ", "")
    if typ.lower() not in ("at+jwt", "application/at+jwt"):
        fail(f'the token\'s typ is {typ!r}, not "at+jwt": it is not an access token')
    # A long-lived service keeps one PyJWKClient: it caches the key set and fetches it
    # again when a token names a kid it has not seen, as after a key rotation.
    signing_key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key,
        algorithms=["EdDSA"],  # pinned: never let the token's header choose
        audience=AUDIENCE,
        issuer=metadata["issuer"],
        options={"require": ["exp", "iss", "aud", "sub"]},
    )
except jwt.PyJWKClientError as err:
    fail(f"no key to check the token with: {err}")
except jwt.InvalidTokenError as err:
    fail(f"invalid token: {err}")

print(f"valid token for sub {claims['sub']}")
print(f"  role:  {claims.get('role')}")
print(f"  scope: {claims.get('scope')}")
print(f"  expires in {int(claims['exp'] - time.time())} s")
