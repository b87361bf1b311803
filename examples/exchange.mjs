// Trades an API key for a one-minute access token, then creates and lists todos, with Node's built-in fetch.
// Run: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] node examples/exchange.mjs
const base = (process.env.LATCHKEY_URL ?? 'http://127.0.0.1:8080').replace(/\/+$/, '');
const { LATCHKEY_KEY_ID: keyId, LATCHKEY_API_KEY: apiKey } = process.env;
if (!keyId || !apiKey) {
  console.error('usage: LATCHKEY_KEY_ID=<key id> LATCHKEY_API_KEY=<key> [LATCHKEY_URL=http://127.0.0.1:8080] node exchange.mjs');
  process.exit(2);
}

async function call(path, authorization, { form, json } = {}) {
  const init = { headers: { Authorization: authorization }, signal: AbortSignal.timeout(10_000) };
  if (form) {
    init.method = 'POST';
    init.body = new URLSearchParams(form); // fetch sets the form content type itself
  } else if (json) {
    init.method = 'POST';
    init.body = JSON.stringify(json);
    init.headers['Content-Type'] = 'application/json';
  }
  let res;
  try {
    res = await fetch(base + path, init);
  } catch (err) {
    console.error(`cannot reach ${base}: ${err.cause?.message ?? err.message}`);
    process.exit(1);
  }
  if (!res.ok) {
    // The body is JSON either way: RFC 6749 {error, error_description} from
    // /auth/token, an RFC 9457 problem {type, title, status, detail} elsewhere.
    console.error(`${init.method ?? 'GET'} ${path}: HTTP ${res.status}\n${await res.text()}`);
    process.exit(1);
  }
  return [res.status, await res.json()];
}

const basic = Buffer.from(`${keyId}:${apiKey}`).toString('base64');
const [, grant] = await call('/auth/token', `Basic ${basic}`, { form: { grant_type: 'client_credentials' } });
console.log(`token: scope "${grant.scope}", expires in ${grant.expires_in} s`);
const bearer = `Bearer ${grant.access_token}`;

const [created, todo] = await call('/todos', bearer, { json: { title: 'Try latchkey from Node' } });
console.log(`POST /todos ${created}: ${JSON.stringify(todo)}`);
// One page; pass ?cursor=<next_cursor> for the next while next_cursor is not null.
const [listed, page] = await call('/todos', bearer);
console.log(`GET /todos ${listed}: ${page.items.length} items, next_cursor ${page.next_cursor}`);
