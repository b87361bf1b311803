#!/usr/bin/env bash
# Insomnia check: lint openapi/openapi.json with Insomnia's CLI (inso), and
# load insomnia/latchkey.json with Insomnia's own export loader and importer.
# Needs no server and no environment variables.
#
#   bash insomnia.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
spec="$root/openapi/openapi.json"
export_file="$root/insomnia/latchkey.json"
inso="$here/node_modules/.bin/inso"

fail() {
  echo "FAIL $*" >&2
  exit 1
}

[[ -x "$inso" ]] || fail "no inso at $inso: install the clients' packages (npm ci in clients/)"
[[ -f "$spec" ]] || fail "no OpenAPI document at $spec"
[[ -f "$export_file" ]] || fail "no Insomnia export at $export_file"

# inso reads its data store from --src, else from a .insomnia/ folder in the
# working directory, else from the Insomnia app's own data on this machine.
# Pointing --src at the export keeps a developer's Insomnia data out of the
# check, and makes inso load the export with its v4 loader before anything
# else: a file that loader rejects fails here. The spec is then found in no
# data store and read from the path given.
echo "== inso --src insomnia/latchkey.json lint spec openapi/openapi.json"
status=0
"$inso" --ci --verbose --src "$export_file" lint spec "$spec" 2>&1 || status=$?
((status == 0)) || fail "inso could not load insomnia/latchkey.json or found lint errors in openapi/openapi.json (exit $status)"

# inso has no command that checks a request collection; Insomnia's importer
# (the insomnia-importers package inso ships with) is what the app runs on a
# file the user imports, so it must take the file as an Insomnia v4 export.
echo "== insomnia-importers: import insomnia/latchkey.json"
cd "$here"
node - "$export_file" <<'EOF' || fail "Insomnia's importer does not take insomnia/latchkey.json as it is meant to"
const fs = require('node:fs');
const { convert } = require('insomnia-importers');

(async () => {
  const { type, data } = await convert(fs.readFileSync(process.argv[2], 'utf8'));
  const problems = [];
  if (type.id !== 'insomnia-4') problems.push(`taken as ${type.name}, not as an Insomnia v4 export`);

  const byId = new Map();
  for (const r of data.resources) {
    if (byId.has(r._id)) problems.push(`two resources have the id ${r._id}`);
    byId.set(r._id, r);
  }
  const workspaces = data.resources.filter((r) => r._type === 'workspace');
  if (workspaces.length !== 1) problems.push(`${workspaces.length} workspaces, expected 1`);
  const workspace = workspaces[0];
  // Every resource must hang off the one workspace, or Insomnia files it
  // somewhere else (or nowhere) on import.
  for (const r of data.resources) {
    if (r === workspace) continue;
    let at = r;
    const seen = new Set();
    while (at && at !== workspace && !seen.has(at._id)) {
      seen.add(at._id);
      at = byId.get(at.parentId);
    }
    if (at !== workspace) problems.push(`${r._type} ${r._id} does not belong to the workspace`);
  }
  const base = data.resources.filter((r) => r._type === 'environment' && r.parentId === workspace?._id);
  if (base.length !== 1) problems.push(`${base.length} base environments, expected 1`);

  const counts = {};
  for (const r of data.resources) counts[r._type] = (counts[r._type] ?? 0) + 1;
  const summary = Object.entries(counts).map(([t, n]) => `${n} ${t}`).join(', ');
  if (problems.length > 0) {
    console.error(problems.map((p) => `  - ${p}`).join('\n'));
    process.exit(1);
  }
  console.log(`taken as ${type.name} (${type.id}): ${summary}`);
})().catch((error) => {
  console.error(`  - ${error.message}`);
  process.exit(1);
});
EOF

echo "Insomnia's CLI lints the spec clean and Insomnia's importer takes insomnia/latchkey.json."
