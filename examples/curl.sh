#!/usr/bin/env bash
# Trades an API key for a one-minute access token, then creates and lists todos, with only curl and sed.
# Run: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] bash examples/curl.sh
set -euo pipefail

base=${LATCHKEY_URL:-http://127.0.0.1:8080}
base=${base%/}
if [[ -z ${LATCHKEY_KEY_ID:-} || -z ${LATCHKEY_API_KEY:-} ]]; then
  echo "usage: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] $0" >&2
  exit 2
fi

# Secrets reach curl as a config on stdin (-K -) rather than as arguments, which any local
# user could read in `ps`. --fail-with-body (curl 7.76+) makes an HTTP error fail the
# script but still hands over the server's error body.
response=$(curl -sS --fail-with-body -K - "$base/auth/token" -d grant_type=client_credentials \
  <<<"user = \"$LATCHKEY_KEY_ID:$LATCHKEY_API_KEY\"") || { [[ -z $response ]] || echo "$response" >&2; exit 1; }
token=$(sed -nE 's/.*"access_token":"([^"]+)".*/\1/p' <<<"$response")

api() {
  curl -sS --fail-with-body -w '\n' -K - "$@" <<<"header = \"Authorization: Bearer $token\""
}

api "$base/todos" -H 'Content-Type: application/json' -d '{"title":"Try latchkey from curl"}'
# One page; pass ?cursor=<next_cursor> for the next while next_cursor is not null.
api "$base/todos"
