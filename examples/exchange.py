#!/usr/bin/env python3
# Trades an API key for a one-minute access token, then creates and lists todos, with only the standard library.
# Run: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] python3 examples/exchange.py
import base64
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

BASE = os.environ.get("LATCHKEY_URL", "http://127.0.0.1:8080").rstrip("/")
KEY_ID = os.environ.get("LATCHKEY_KEY_ID")
API_KEY = os.environ.get("LATCHKEY_API_KEY")


def call(path, authorization, form=None, json_body=None):
    headers = {"Authorization": authorization}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()  # urllib labels it x-www-form-urlencoded
    elif json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(BASE + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as err:
        # The body is JSON either way: RFC 6749 {error, error_description} from
        # /auth/token, an RFC 9457 problem {type, title, status, detail} elsewhere.
        body = err.read().decode(errors="replace")
        print(f"{request.get_method()} {path}: HTTP {err.code}\n{body}", file=sys.stderr)
        sys.exit(1)
    except urllib.error.URLError as err:
        sys.exit(f"cannot reach {BASE}: {err.reason}")


if not KEY_ID or not API_KEY:
    print("usage: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] "
          "python3 exchange.py", file=sys.stderr)
    sys.exit(2)

basic = base64.b64encode(f"{KEY_ID}:{API_KEY}".encode()).decode()
_, grant = call("/auth/token", f"Basic {basic}", form={"grant_type": "client_credentials"})
print(f"token: scope \"{grant['scope']}\", expires in {grant['expires_in']} s")
bearer = f"Bearer {grant['access_token']}"

status, todo = call("/todos", bearer, json_body={"title": "Try latchkey from Python"})
print(f"POST /todos {status}: {json.dumps(todo)}")
# One page; pass ?cursor=<next_cursor> for the next while next_cursor is not null.
status, page = call("/todos", bearer)
print(f"GET /todos {status}: {len(page['items'])} items, next_cursor {json.dumps(page['next_cursor'])}")
