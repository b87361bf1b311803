#!/usr/bin/env bash
# Regenerates the committed spec from the code: run it after changing an
# operation, and commit what it writes. `--check` only reports drift.
set -euo pipefail
cd "$(dirname "$0")/.."

out=openapi
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
cargo run --quiet --locked -- openapi --format json > "$out/openapi.json"
cargo run --quiet --locked -- openapi --format yaml > "$out/openapi.yaml"
if [ "$out" != openapi ]; then
  diff -u openapi/openapi.json "$out/openapi.json"
  diff -u openapi/openapi.yaml "$out/openapi.yaml"
  echo "openapi/ is up to date"
fi
