#!/usr/bin/env bash
# Two instances on one PostgreSQL database: a token minted at one verifies at the other,
# and a key revoked at one stops its token at the other. The README quotes the middle.
# Run from an empty directory: bash examples/two-instances.sh
# (needs latchkey on PATH, curl, psql, and PostgreSQL on 127.0.0.1:5432 letting postgres in)
set -euo pipefail
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  psql -q postgres://postgres@127.0.0.1:5432/postgres -c 'DROP DATABASE IF EXISTS latchkey' || true
}
trap cleanup EXIT

# One database, and for every instance the same keyring secret and issuer (the URL clients use).
psql postgres://postgres@127.0.0.1:5432/postgres -c 'CREATE DATABASE latchkey'
export LATCHKEY_DATABASE_URL=postgres://postgres@127.0.0.1:5432/latchkey
export LATCHKEY_KEYRING_SECRET=$(head -c32 /dev/urandom | base64)
export LATCHKEY_ISSUER=http://keys.example.test
latchkey --bind 127.0.0.1:8081 --data-dir ./one &
latchkey --bind 127.0.0.1:8082 --data-dir ./two &
ONE=http://127.0.0.1:8081 TWO=http://127.0.0.1:8082
until curl -sf $ONE/ready >/dev/null && curl -sf $TWO/ready >/dev/null; do sleep 0.2; done

# An account and a key at one; the key's token verifies at two (prints 200).
curl -s -w '\n' -X POST $ONE/users -H 'Content-Type: application/json' -d '{"email":"ada@example.com","password":"correct horse battery"}'
TOKEN=$(curl -s -X POST $ONE/auth/token -d grant_type=password -d username=ada@example.com --data-urlencode 'password=correct horse battery' | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s -X POST $ONE/keys -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"name":"my script"}' > key.json
KEY=$(sed -E 's/.*"key":"([^"]+)".*/\1/' key.json)
KEY_ID=$(sed -E 's/.*"id":"([^"]+)".*/\1/' key.json)
rm key.json
ACCESS=$(curl -s -X POST $ONE/auth/token -u "$KEY_ID:$KEY" -d grant_type=client_credentials | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
curl -s -o /dev/null -w '%{http_code}\n' $TWO/me -H "Authorization: Bearer $ACCESS"

# Revoke the key at one: within a second two refuses its token (prints 401 and the reason).
curl -s -X DELETE $ONE/keys/$KEY_ID -H "Authorization: Bearer $TOKEN"
sleep 1
curl -s -D - -o /dev/null $TWO/me -H "Authorization: Bearer $ACCESS" | grep -Ei '^(HTTP|www-authenticate)'

# What the lines above showed, checked.
[[ $(curl -s -o /dev/null -w '%{http_code}' $ONE/me -H "Authorization: Bearer $TOKEN") == 200 ]]
[[ $(curl -s -o /dev/null -w '%{http_code}' $TWO/me -H "Authorization: Bearer $ACCESS") == 401 ]]
echo "two instances, one database: revoked at one, refused at the other"
