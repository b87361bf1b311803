"""schemathesis hooks for `fuzz/run`.

- Every operation the spec marks as needing a token gets one, exchanged from
  the run's own API key (which holds every scope) and fetched again before it
  expires, and at once after a 401 (a fuzzed `POST /me/sign-out` ends the
  tokens issued so far; the key goes on exchanging).
- Cases that would end the run's own credentials are dropped: revoking its
  key, and changing its admin account (disabling or demoting it would leave
  the run without a working token). Every other case of those operations is
  fuzzed.

`fuzz/run` sets the variables read below.
"""

import os

import requests
import schemathesis

BASE_URL = os.environ["LATCHKEY_URL"]
KEY_ID = os.environ["LATCHKEY_FUZZ_KEY_ID"]
API_KEY = os.environ["LATCHKEY_FUZZ_API_KEY"]
ADMIN_ID = os.environ["LATCHKEY_FUZZ_ADMIN_ID"]
# Below the server's --token-ttl, so a cached token never expires in use.
REFRESH_SECONDS = int(os.environ.get("LATCHKEY_FUZZ_REFRESH", "30"))


def needs_token(ctx) -> bool:
    """Whether the spec names a security scheme for the operation."""
    return bool(ctx.operation.definition.raw.get("security"))


@schemathesis.auth(refresh_interval=REFRESH_SECONDS).apply_to(needs_token)
class ApiKeyExchange:
    """A token for the run's key, by the client-credentials grant."""

    def get(self, case, ctx):
        resp = requests.post(
            f"{BASE_URL}/auth/token",
            data={"grant_type": "client_credentials"},
            auth=(KEY_ID, API_KEY),
            timeout=10,
        )
        resp.raise_for_status()
        return resp.json()["access_token"]

    def set(self, case, data, ctx):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"


# The run's own credentials, named by their id in the path.
OWN = {
    ("DELETE", "/keys/{id}"): KEY_ID,
    ("DELETE", "/admin/keys/{id}"): KEY_ID,
    ("PATCH", "/admin/users/{id}"): ADMIN_ID,
}


@schemathesis.hook
def filter_case(ctx, case):
    own = OWN.get((case.operation.method.upper(), case.operation.path))
    if own is None:
        return True
    return str((case.path_parameters or {}).get("id", "")).lower() != own.lower()
