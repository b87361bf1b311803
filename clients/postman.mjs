// Postman check: convert latchkey's OpenAPI document with the converter that
// Postman's importer uses, check the OAuth2 auth it puts on the requests, then
// make the collection runnable the way a user would after importing it and run
// it with newman against a live server.
//
// Environment: LATCHKEY_URL (no trailing slash), LATCHKEY_KEY_ID,
// LATCHKEY_API_KEY. LATCHKEY_EMAIL and LATCHKEY_PASSWORD, which the other
// checks use, are not needed: everything here authenticates with the API key.
//
//   node postman.mjs

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import Converter from 'openapi-to-postmanv2';
import newman from 'newman';

const OVERALL_TIMEOUT_MS = 60_000;
// The token lives a minute; a slow request should fail on its own timeout
// well before the run's budget is spent.
const REQUEST_TIMEOUT_MS = 10_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const specPath = path.resolve(here, '../openapi/openapi.json');

const required = ['LATCHKEY_URL', 'LATCHKEY_KEY_ID', 'LATCHKEY_API_KEY'];
const missing = required.filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(`postman: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(1);
}
const baseUrl = process.env.LATCHKEY_URL.replace(/\/+$/, '');
const keyId = process.env.LATCHKEY_KEY_ID;
const apiKey = process.env.LATCHKEY_API_KEY;

// Error bodies and messages can echo what was sent, so whatever the server or
// newman says goes through redact() before it is printed.
const secrets = new Set([apiKey, process.env.LATCHKEY_PASSWORD]);
const redact = (text) => {
  let out = String(text);
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+/g, '$1 [redacted]');
};

class CheckError extends Error {}
const check = (condition, message) => {
  if (!condition) throw new CheckError(message);
};

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];
const opKey = (method, template) => `${method.toUpperCase()} ${template}`;

// The converter writes path parameters as `:id` segments; the spec as `{id}`.
const templateOf = (request) =>
  '/' + request.url.path.map((seg) => (seg.startsWith(':') ? `{${seg.slice(1)}}` : seg)).join('/');

function* requestsOf(items) {
  for (const item of items) {
    if (Array.isArray(item.item)) yield* requestsOf(item.item);
    else yield item;
  }
}

// ---------------------------------------------------------------------------
// The collection as Postman's importer makes it.

async function convert(spec) {
  const result = await promisify(Converter.convert)({ type: 'json', data: spec }, {});
  check(result && result.result === true, `openapi-to-postmanv2 rejected the spec: ${result?.reason ?? 'no reason given'}`);
  const collection = result.output?.[0]?.data;
  check(result.output?.[0]?.type === 'collection' && collection, 'openapi-to-postmanv2 returned no collection');
  return collection;
}

function checkConversion(spec, collection) {
  const scheme = spec.components?.securitySchemes?.oauth2;
  check(scheme?.type === 'oauth2', 'the spec has no "oauth2" security scheme');
  const tokenUrl = scheme.flows?.clientCredentials?.tokenUrl;
  check(tokenUrl, 'the "oauth2" scheme has no clientCredentials flow with a tokenUrl');
  for (const [flow, def] of Object.entries(scheme.flows)) {
    check(def.tokenUrl === tokenUrl, `the ${flow} flow's tokenUrl ${def.tokenUrl} differs from ${tokenUrl}`);
  }

  const operations = new Map();
  for (const [template, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (METHODS.includes(method)) operations.set(opKey(method, template), op);
    }
  }

  const seen = new Map();
  let oauth2Requests = 0;
  for (const item of requestsOf(collection.item)) {
    const { request } = item;
    const key = opKey(request.method, templateOf(request));
    const op = operations.get(key);
    check(op, `the collection has ${key}, which the spec does not`);
    check(!seen.has(key), `the collection has ${key} twice`);
    seen.set(key, item);

    const usesOAuth2 = (op.security ?? spec.security ?? []).some((req) => 'oauth2' in req);
    if (!usesOAuth2) {
      check(!request.auth || request.auth.type === 'noauth', `${key} is public in the spec but carries ${request.auth?.type} auth`);
      continue;
    }
    const auth = request.auth;
    check(auth?.type === 'oauth2', `${key} requires oauth2 in the spec, the converted request has ${auth?.type ?? 'no'} auth`);
    const params = Object.fromEntries((auth.oauth2 ?? []).map(({ key: k, value }) => [k, value]));
    // The converter copies the tokenUrl as it stands, so the spec makes it absolute.
    check(
      params.accessTokenUrl === tokenUrl,
      `${key}: OAuth2 access token URL is ${JSON.stringify(params.accessTokenUrl)}, expected ${JSON.stringify(tokenUrl)}`,
    );
    // Postman sets up only the first flow the spec lists: it must be the API key's.
    check(
      params.grant_type === 'client_credentials',
      `${key}: OAuth2 grant type is ${params.grant_type}, expected client_credentials`,
    );
    oauth2Requests += 1;
  }
  for (const key of operations.keys()) check(seen.has(key), `the spec's ${key} is missing from the collection`);
  check(oauth2Requests > 0, 'no converted request carries OAuth2 auth');

  const sample = [...seen.values()].find((item) => item.request.auth?.type === 'oauth2').request.auth.oauth2;
  const shown = Object.fromEntries(sample.map(({ key, value }) => [key, value]));
  console.log(
    `ok   converted ${seen.size} operations; ${oauth2Requests} carry OAuth2 auth: ` +
      `accessTokenUrl ${shown.accessTokenUrl}, grant_type ${shown.grant_type}, scope "${shown.scope ?? ''}"`,
  );
  return { byOp: seen, imported: shown };
}

// ---------------------------------------------------------------------------
// The collection as a user makes it runnable after importing it.

// Postman obtains OAuth2 tokens only through the interactive "Get New Access
// Token" button, which newman does not have. This script does what that button
// would do with the collection's OAuth2 settings (client credentials, sent by
// HTTP Basic) and puts the token where the OAuth2 auth reads it, so the
// requests are still signed by Postman's own OAuth2 auth handler.
const FETCH_TOKEN = `
const auth = pm.request.auth;
if (!(auth && auth.type === 'noauth')) {
  const expiresAt = Number(pm.collectionVariables.get('accessTokenExpiresAt') || 0);
  // Renew a little early: a token that expires in flight would read as a 401.
  if (!pm.collectionVariables.get('accessToken') || Date.now() > expiresAt - 10000) {
    const CryptoJS = require('crypto-js');
    // RFC 6749, section 2.3.1: form-encode both parts before Basic encoding.
    const form = (s) => encodeURIComponent(s).replace(/%20/g, '+');
    const basic = CryptoJS.enc.Base64.stringify(
      CryptoJS.enc.Utf8.parse(form(pm.variables.get('keyId')) + ':' + form(pm.variables.get('apiKey'))),
    );
    pm.sendRequest(
      {
        url: pm.variables.get('baseUrl') + '/auth/token',
        method: 'POST',
        header: [
          { key: 'Authorization', value: 'Basic ' + basic },
          { key: 'Accept', value: 'application/json' },
        ],
        body: {
          mode: 'urlencoded',
          urlencoded: [
            { key: 'grant_type', value: 'client_credentials' },
            { key: 'scope', value: pm.variables.get('scope') },
          ],
        },
      },
      (err, res) => {
        let token;
        try { token = !err && res.code === 200 && res.json().access_token; } catch (e) { token = undefined; }
        if (!token) {
          // The runner reports the failed token response; sending the request
          // without a token would only add a misleading 401.
          pm.collectionVariables.unset('accessToken');
          pm.execution.skipRequest();
          return;
        }
        pm.collectionVariables.set('accessToken', token);
        pm.collectionVariables.set('accessTokenExpiresAt', String(Date.now() + 1000 * (res.json().expires_in || 60)));
      },
    );
  }
}
`;

// After a response, remember the id a later request needs.
const saveId = (variable) => `
if (pm.response.code === 201) pm.collectionVariables.set('${variable}', pm.response.json().id);
`;
// Requests on an id that was never created would only test the 404 path.
const needsId = (variable) => `
if (!pm.collectionVariables.get('${variable}')) pm.execution.skipRequest();
`;

const json = (value) => ({ mode: 'raw', raw: JSON.stringify(value, null, 2), options: { raw: { language: 'json' } } });
const script = (listen, source) => ({ listen, script: { type: 'text/javascript', exec: source.trim().split('\n') } });

// What runs, in order, with what a user would fill in over the converter's
// placeholders. Left out on purpose:
// - POST /users: every run would leave a throwaway account behind; the account
//   the key belongs to already exists.
// - /admin/*: needs an admin account, and the key is a user's key.
// Revocation is exercised only on a key created by this run, never on the key
// the run authenticates with.
const PLAN = [
  { op: 'GET /health', expect: [200] },
  { op: 'GET /ready', expect: [200] },
  { op: 'GET /.well-known/oauth-authorization-server', expect: [200] },
  // 404 when the server signs with a shared secret (HS256).
  { op: 'GET /.well-known/jwks.json', expect: [200, 404] },
  {
    op: 'POST /auth/token',
    expect: [200],
    // The token request puts the credentials in the form body, where the
    // collection's OAuth2 auth sends them by Basic: both ways get exercised.
    body: {
      mode: 'urlencoded',
      urlencoded: [
        { key: 'grant_type', value: 'client_credentials' },
        { key: 'client_id', value: '{{keyId}}' },
        { key: 'client_secret', value: '{{apiKey}}' },
      ],
    },
  },
  { op: 'GET /me', expect: [200] },
  { op: 'GET /todos', expect: [200], query: { limit: '10' } },
  {
    op: 'POST /todos',
    expect: [201],
    body: json({ title: 'from newman', completed: false }),
    after: saveId('todoId'),
  },
  { op: 'GET /todos/{id}', expect: [200], id: 'todoId' },
  { op: 'PATCH /todos/{id}', expect: [200], id: 'todoId', body: json({ title: 'from newman, done', completed: true }) },
  { op: 'DELETE /todos/{id}', expect: [204], id: 'todoId' },
  // Key management needs the keys:manage scope, which API keys do not get by
  // default; without it these must be refused with 403, not 401 or 5xx.
  { op: 'GET /keys', expect: [200], keys: true },
  {
    op: 'POST /keys',
    expect: [201],
    keys: true,
    body: json({ name: 'newman', scopes: ['todos:read'] }),
    after: saveId('newKeyId'),
  },
  { op: 'GET /keys/{id}', expect: [200], keys: true, id: 'newKeyId' },
  { op: 'DELETE /keys/{id}', expect: [204], keys: true, id: 'newKeyId' },
];

function runnable(converted, byOp, imported) {
  const items = PLAN.map((step) => {
    const original = byOp.get(step.op);
    check(original, `the converted collection has no ${step.op}`);
    const item = structuredClone(original);
    const { request } = item;
    delete item.response; // response examples are never sent
    item.event = [];

    if (request.auth?.type === 'oauth2') delete request.auth; // inherit the collection's
    else request.auth = { type: 'noauth' }; // else public requests would inherit it too

    for (const v of request.url.variable ?? []) {
      if (v.key === 'id') v.value = `{{${step.id}}}`;
    }
    for (const q of request.url.query ?? []) {
      if (step.query && q.key in step.query) q.value = step.query[q.key];
      else q.disabled = true; // optional filters the converter enabled with placeholder values
    }
    if (step.body) request.body = step.body;
    if (step.id) item.event.push(script('prerequest', needsId(step.id)));
    if (step.after) item.event.push(script('test', step.after));
    return item;
  });

  return {
    info: { ...converted.info, name: `${converted.info.name} (runnable)` },
    variable: [
      { key: 'baseUrl', value: baseUrl },
      { key: 'scope', value: imported.scope ?? '' },
    ],
    // What a user fills in on the collection's Authorization tab after import:
    // the key id and key. The grant type and scope stay as imported (the
    // scope lists every scope; the server grants the part the key holds).
    // The token URL follows baseUrl, as it does when the document is
    // imported from the running server's /openapi.json.
    auth: {
      type: 'oauth2',
      oauth2: [
        { key: 'grant_type', value: imported.grant_type },
        { key: 'accessTokenUrl', value: '{{baseUrl}}/auth/token' },
        { key: 'clientId', value: '{{keyId}}' },
        { key: 'clientSecret', value: '{{apiKey}}' },
        { key: 'client_authentication', value: 'header' },
        { key: 'scope', value: '{{scope}}' },
        { key: 'tokenName', value: 'latchkey' },
        { key: 'addTokenTo', value: 'header' },
        { key: 'headerPrefix', value: 'Bearer' },
        { key: 'accessToken', value: '{{accessToken}}' },
      ],
    },
    event: [script('prerequest', FETCH_TOKEN)],
    item: items,
  };
}

// ---------------------------------------------------------------------------
// The run.

async function run(collection) {
  const sent = new Set();
  const problems = [];
  let grantedScope = null;
  let currentToken;
  // Without a token, or without a server, every later request would only
  // repeat the same failure.
  let runner;
  let stopped = false;
  const stop = () => {
    if (!stopped) runner?.abort();
    stopped = true;
  };

  const summary = await new Promise((resolve, reject) => {
    newman
      .run({
        collection,
        // Secrets go in an environment, as they would in Postman, so the
        // collection itself stays free of them.
        environment: {
          name: 'latchkey',
          values: [
            { key: 'keyId', value: keyId, type: 'default' },
            { key: 'apiKey', value: apiKey, type: 'secret' },
          ],
        },
        reporters: [],
        timeoutRequest: REQUEST_TIMEOUT_MS,
        timeout: OVERALL_TIMEOUT_MS - 5_000,
      })
      .on('start', (err, args) => {
        runner = args.run;
      })
      .on('request', (err, args) => {
        // One iteration over a flat list: the cursor's position is the step.
        const step = PLAN[args.cursor.position];
        const item = collection.item[args.cursor.position];
        const method = args.request?.method ?? '?';
        const sentPath = args.request?.url?.getPath() ?? '?';
        // pm.sendRequest from the token script: the cursor names the script.
        const fromScript = Boolean(args.cursor.scriptId);
        const what = fromScript ? `the token request before ${step.op}` : step.op;
        if (!fromScript) sent.add(args.cursor.position);
        if (err) {
          console.log(`${method.padEnd(6)} ${sentPath}  error`);
          problems.push(`${what}: ${err.message}`);
          stop();
          return;
        }
        const code = args.response.code;
        const isToken = fromScript || step.op === 'POST /auth/token';
        if (isToken && code === 200) {
          const granted = args.response.json();
          secrets.add(granted.access_token);
          if (fromScript) currentToken = granted.access_token;
          grantedScope ??= String(granted.scope ?? '');
        }
        const authenticated = !isToken && item.request.auth?.type !== 'noauth';
        let expect = fromScript ? [200] : step.expect;
        let note = '';
        if (fromScript) note = '(pre-request token fetch: client credentials by Basic)';
        else if (isToken && code === 200) note = `(client credentials in the body; scope: ${grantedScope})`;
        if (step.keys && !fromScript && grantedScope !== null && !grantedScope.split(' ').includes('keys:manage')) {
          expect = [403];
          note = '(the key lacks keys:manage)';
        }
        console.log(`${method.padEnd(6)} ${sentPath}  ${code}  ${note}`.trimEnd());

        if (code >= 500) {
          problems.push(`${what} was answered ${code}: ${body(args.response)}`);
        } else if (code === 401 && authenticated) {
          problems.push(`${what} was answered 401, so the bearer token did not work: ${body(args.response)}`);
        } else if (!expect.includes(code)) {
          problems.push(`${what} was answered ${code}, expected ${expect.join(' or ')}: ${body(args.response)}`);
        }
        if (fromScript && code !== 200) stop();
        // A pass must come from Postman's OAuth2 auth signing the request with
        // the token the script fetched, not from some other header.
        if (authenticated && args.request.headers.get('Authorization') !== `Bearer ${currentToken}`) {
          problems.push(`${what} was not sent with the client-credentials token as its bearer`);
        }
      })
      .on('script', (err, args) => {
        if (err) problems.push(`${args.event.listen} script before ${args.item.name}: ${err.message}`);
      })
      .on('done', (err, result) => (err ? reject(err) : resolve(result)));
  });

  collection.item.forEach((item, i) => {
    if (sent.has(i)) return;
    const why = stopped ? 'run stopped' : PLAN[i].id ? `no ${PLAN[i].id} to use` : 'skipped';
    console.log(`${'-'.padEnd(6)} ${PLAN[i].op}  not sent (${why})`);
  });
  if (summary.run.error) problems.push(`newman: ${summary.run.error.message}`);
  return problems;
}

function body(response) {
  const text = response.text().replace(/\s+/g, ' ').slice(0, 300);
  return text ? redact(text) : '(empty body)';
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(specPath, 'utf8'));
  const converted = await convert(spec);
  const { byOp, imported } = checkConversion(spec, converted);
  const collection = runnable(converted, byOp, imported);
  console.log(`ok   runnable collection: ${collection.item.length} requests against ${baseUrl}`);
  const problems = await run(collection);
  if (problems.length > 0) {
    throw new CheckError(`${problems.length} problem(s):\n${problems.map((p) => `     - ${redact(p)}`).join('\n')}`);
  }
}

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new CheckError(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`)), OVERALL_TIMEOUT_MS);
});

try {
  await Promise.race([main(), timeout]);
  console.log('The converted Postman collection runs against latchkey with OAuth2 client credentials.');
  process.exitCode = 0;
} catch (error) {
  console.error(`FAIL ${redact(error instanceof CheckError ? error.message : error?.stack ?? error)}`);
  process.exitCode = 1;
} finally {
  clearTimeout(timer);
}
// newman may hold sockets open; the verdict is in.
process.exit(process.exitCode);
