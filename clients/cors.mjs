// CORS in a real browser: a page served from another origin, one that the
// server's --cors-origins lists, trades an API key for a token with fetch and
// calls the Todo API with it, reading the answers' exposed headers, errors
// included; the same page served from an origin the list leaves out is
// refused by the browser, although the server answers it.
//
// Environment: LATCHKEY_URL (no trailing slash), LATCHKEY_KEY_ID,
// LATCHKEY_API_KEY, LATCHKEY_CORS_PAGE (the app's URL on a listed origin) and
// LATCHKEY_CORS_STRANGER (the same app on an unlisted one).
//
//   node cors.mjs

import { launchChromium } from './chromium.mjs';

const OVERALL_TIMEOUT_MS = 60_000;
const ACTION_TIMEOUT_MS = 15_000;

const required = ['LATCHKEY_URL', 'LATCHKEY_KEY_ID', 'LATCHKEY_API_KEY', 'LATCHKEY_CORS_PAGE', 'LATCHKEY_CORS_STRANGER'];
const missing = required.filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(`cors: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(1);
}
const api = process.env.LATCHKEY_URL.replace(/\/+$/, '');
const { LATCHKEY_KEY_ID: keyId, LATCHKEY_API_KEY: apiKey } = process.env;
const pages = { listed: process.env.LATCHKEY_CORS_PAGE, stranger: process.env.LATCHKEY_CORS_STRANGER };

class StepError extends Error {}
let currentStep = 'start';
const step = async (name, fn) => {
  currentStep = name;
  console.log(`ok   ${name}: ${await fn()}`);
};
const check = (condition, message) => {
  if (!condition) throw new StepError(message);
};
// An answer as the page's script saw it, for a failure message (never a token).
const shown = (answer) =>
  answer.refused ? `refused (${answer.refused})` : `${answer.status} ${JSON.stringify(answer.body?.error ?? answer.body?.detail ?? '')}`;

let browser;
let page;
// What Chromium said on the page's console: the reason it gives for a refusal.
let consoleLines = [];

async function open(url) {
  consoleLines = [];
  await page.goto(url);
  await page.waitForFunction(() => window.latchkeyApp);
  return new URL(url).origin;
}

const exchange = () => page.evaluate(([a, id, key]) => window.latchkeyApp.exchange(a, id, key), [api, keyId, apiKey]);
const call = (method, path, token, body) =>
  page.evaluate(([a, m, p, t, b]) => window.latchkeyApp.call(a, m, p, t, b), [api, method, path, token, body]);

async function main() {
  browser = await launchChromium('cors');
  page = browser.page;
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  page.on('console', (message) => consoleLines.push(message.text()));

  let token;
  await step('a listed origin exchanges an API key at /auth/token', async () => {
    const origin = await open(pages.listed);
    const answer = await exchange();
    check(answer.status === 200, `POST /auth/token from ${origin}: ${shown(answer)}`);
    check(answer.body.token_type === 'Bearer' && answer.body.access_token, 'the answer holds no bearer token');
    check(answer.headers['cache-control'] === 'no-store', `Cache-Control: ${answer.headers['cache-control']}`);
    token = answer.body.access_token;
    return `from ${origin}: 200, a Bearer token for "${answer.body.scope}", Cache-Control: no-store`;
  });

  await step('the token calls GET /todos', async () => {
    const answer = await call('GET', '/todos', token);
    check(answer.status === 200, `GET /todos: ${shown(answer)}`);
    check(Array.isArray(answer.body?.items), 'GET /todos answered no page of todos');
    return `200, ${answer.body.items.length} todo(s) on the first page`;
  });

  await step('POST /todos, and its exposed Location', async () => {
    const answer = await call('POST', '/todos', token, { title: 'from another origin' });
    check(answer.status === 201, `POST /todos: ${shown(answer)}`);
    check(answer.body?.title === 'from another origin', `created ${JSON.stringify(answer.body?.title)}`);
    check(
      answer.headers.location?.endsWith(`/todos/${answer.body.id}`),
      `the page cannot read Location (${answer.headers.location})`,
    );
    return `201, Location ${new URL(answer.headers.location, api).pathname}`;
  });

  await step('an error is readable too: GET /todos without a token', async () => {
    const answer = await call('GET', '/todos');
    check(answer.status === 401, `GET /todos without a token: ${shown(answer)}`);
    check(answer.body?.status === 401, 'the page cannot read the problem+json body');
    check(
      answer.headers['www-authenticate']?.startsWith('Bearer'),
      `the page cannot read WWW-Authenticate (${answer.headers['www-authenticate']})`,
    );
    return `401 problem+json, WWW-Authenticate: ${answer.headers['www-authenticate']}`;
  });

  await step('an unlisted origin is refused by the browser', async () => {
    const origin = await open(pages.stranger);
    check(origin !== new URL(pages.listed).origin, 'the two pages share an origin');
    const answers = { 'POST /auth/token': await exchange(), 'GET /health': await call('GET', '/health') };
    for (const [what, answer] of Object.entries(answers)) {
      check(answer.refused, `${what} from ${origin} reached the page: ${shown(answer)}`);
    }
    const reasons = consoleLines.filter((line) => /blocked by CORS policy/.test(line));
    check(reasons.length >= 2, `Chromium gave no CORS reason; its console: ${consoleLines.join(' | ')}`);
    // The server answers such a request (the browser alone keeps it from
    // the page), so the refusal is CORS, not a server that is down.
    const direct = await fetch(`${api}/health`, { headers: { Origin: origin } });
    check(direct.status === 200, `GET /health from outside the browser answered ${direct.status}`);
    check(!direct.headers.get('access-control-allow-origin'), `the server granted ${origin}`);
    return `from ${origin}: both refused ("${reasons[0].replace(/^.*?(blocked by CORS policy)/, '$1')}")`;
  });
}

const hardStop = setTimeout(() => {
  console.error(`FAIL ${currentStep}: still running after ${OVERALL_TIMEOUT_MS / 1000 + 20} s, giving up`);
  browser?.removeProfile();
  process.exit(1);
}, OVERALL_TIMEOUT_MS + 20_000);
hardStop.unref();

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(() => reject(new StepError(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`)), OVERALL_TIMEOUT_MS);
});

let exitCode = 0;
try {
  await Promise.race([main(), timeout]);
  console.log('A browser app on a listed origin calls latchkey; one on another origin is refused.');
} catch (error) {
  exitCode = 1;
  const reason = error instanceof StepError ? error.message : String(error?.message ?? error).split('\n')[0];
  console.error(`FAIL ${currentStep}: ${reason}`);
} finally {
  clearTimeout(timer);
  await browser?.close();
}
process.exit(exitCode);
