// End-to-end check of latchkey's Swagger UI in a real browser: authorize with
// both OAuth2 flows of the "oauth2" scheme (client credentials with an API key,
// then password with an email), and call the Todo API through "Try it out".
//
// Environment: LATCHKEY_URL (no trailing slash), LATCHKEY_EMAIL,
// LATCHKEY_PASSWORD, LATCHKEY_KEY_ID, LATCHKEY_API_KEY; optionally
// LATCHKEY_ARTIFACTS, where a screenshot is saved on failure (default /tmp).
//
//   node swagger-ui.mjs

import fs from 'node:fs';
import path from 'node:path';

import { launchChromium } from './chromium.mjs';

const OVERALL_TIMEOUT_MS = 90_000;
// Per action: long enough for a slow CI box, short enough that the overall
// budget still leaves room to report which step hung.
const ACTION_TIMEOUT_MS = 15_000;
const SCOPES = ['todos:read', 'todos:write'];
const TODO_BODY = '{"title":"from Swagger UI"}';

const required = ['LATCHKEY_URL', 'LATCHKEY_EMAIL', 'LATCHKEY_PASSWORD', 'LATCHKEY_KEY_ID', 'LATCHKEY_API_KEY'];
const missing = required.filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(`swagger-ui: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(1);
}
const baseUrl = process.env.LATCHKEY_URL.replace(/\/+$/, '');
const env = {
  email: process.env.LATCHKEY_EMAIL,
  password: process.env.LATCHKEY_PASSWORD,
  keyId: process.env.LATCHKEY_KEY_ID,
  apiKey: process.env.LATCHKEY_API_KEY,
};
const artifacts = process.env.LATCHKEY_ARTIFACTS || '/tmp';

// Anything that reaches the console goes through redact(): page text can echo
// credentials (Swagger UI renders a curl command with the bearer token).
const secrets = new Set([env.password, env.apiKey]);
const redact = (text) => {
  let out = String(text);
  for (const s of secrets) if (s) out = out.split(s).join('[redacted]');
  return out.replace(/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/-]{16,}=*/g, '$1 [redacted]');
};

class StepError extends Error {}

let currentStep = 'start';
const step = async (name, fn) => {
  currentStep = name;
  const summary = await fn();
  console.log(`ok   ${name}${summary ? `: ${summary}` : ''}`);
};
const check = (condition, message) => {
  if (!condition) throw new StepError(message);
};
const oauthError = (status, body) =>
  `${status} ${body.error ?? ''} (${body.error_description ?? 'no description'})`;

// Bounds a best-effort look at the page: while a navigation hangs, even reading
// the DOM waits, and a failure report must not hang with it.
const within = (promise, ms, fallback) =>
  Promise.race([promise.catch(() => fallback), new Promise((resolve) => setTimeout(resolve, ms, fallback).unref())]);

// Matches a playwright Request, or the Response to one.
const isPath = (message, method, pathname) => {
  const request = typeof message.request === 'function' ? message.request() : message;
  return request.method() === method && new URL(request.url()).pathname === pathname;
};

let browser;
let page;

// What the page's Content Security Policy refused, from the page's own
// `securitypolicyviolation` events and from what Chromium logs: Swagger UI
// must work under the policy, not merely around what it blocks.
const cspViolations = [];
const recordViolations = () => {
  document.addEventListener('securitypolicyviolation', (e) => {
    const record = `${e.effectiveDirective} refused ${e.blockedURI || 'an inline resource'}`;
    window.__cspViolations = [...(window.__cspViolations ?? []), record];
  });
};

async function main() {
  browser = await launchChromium('swagger-ui');
  page = browser.page;
  page.setDefaultTimeout(ACTION_TIMEOUT_MS);
  await browser.context.addInitScript(recordViolations);
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });

  await step('open /docs/', async () => {
    const [spec, docs] = await Promise.all([
      page.waitForResponse((r) => isPath(r, 'GET', '/openapi.json')),
      page.goto(`${baseUrl}/docs/`),
    ]);
    check(spec.status() === 200, `GET /openapi.json answered ${spec.status()}`);
    const policy = (await docs.allHeaders())['content-security-policy'] ?? '';
    check(policy.includes("default-src 'none'"), `/docs/ is served without a strict policy: "${policy}"`);
    await page.locator('#operations-Todos-listTodos').waitFor();
    const title = (await page.locator('.info .title').first().innerText()).split('\n')[0];
    return `Swagger UI rendered "${title}" from /openapi.json under its Content Security Policy`;
  });

  await step('authorize with clientCredentials (key id + API key)', () =>
    authorize('clientCredentials', async (flow) => {
      await flow.locator('#client_id_clientCredentials').fill(env.keyId);
      await flow.locator('#client_secret_clientCredentials').fill(env.apiKey);
    }),
  );
  await step('GET /todos with the client-credentials token', () => listTodos());
  await step('POST /todos with the client-credentials token', () => createTodo());

  await step('log out', () => logout());

  await step('authorize with password (email + password)', () =>
    authorize('password', async (flow) => {
      await flow.locator('#oauth_username').fill(env.email);
      await flow.locator('#oauth_password').fill(env.password);
    }),
  );
  await step('GET /todos with the password token', () => listTodos());
  await step('POST /todos with the password token', () => createTodo());

  await step('no Content Security Policy violation', async () => {
    const violations = await violationsSoFar();
    check(violations.length === 0, `the policy refused: ${violations.join(' | ')}`);
  });
}

async function violationsSoFar() {
  const onPage = await within(
    page.evaluate(() => window.__cspViolations ?? []),
    5_000,
    [],
  );
  return [...new Set([...onPage, ...cspViolations])];
}

// The bearer token the last Authorize obtained, compared with what
// "Try it out" sends, to prove the calls use the flow under test.
let lastToken;

async function openAuthorizeDialog() {
  await page.locator('.scheme-container button.authorize').click();
  await page.locator('.dialog-ux .modal-ux').waitFor();
}

async function closeAuthorizeDialog() {
  await page.locator('.dialog-ux .modal-ux-header button.close-modal').click();
  await page.locator('.dialog-ux .modal-ux').waitFor({ state: 'detached' });
}

// Swagger UI renders one .auth-container per OAuth2 flow of the scheme.
const flowContainer = (flow) =>
  page.locator('.dialog-ux .auth-container').filter({
    has: page.locator('p.flow code', { hasText: new RegExp(`^${flow}$`) }),
  });

async function authorize(flow, fillCredentials) {
  await openAuthorizeDialog();
  const container = flowContainer(flow);
  await container.waitFor();
  check(
    (await container.locator('h4').innerText()).includes(`oauth2 (OAuth2, ${flow})`),
    `the dialog has no "oauth2" ${flow} section`,
  );
  await fillCredentials(container);
  for (const scope of SCOPES) {
    // The real checkbox is hidden behind a styled label, so tick it through the label.
    const box = container.locator(`input[type=checkbox][data-value="${scope}"]`);
    if (!(await box.isChecked())) await container.locator(`label[for="${await box.getAttribute('id')}"]`).click();
    check(await box.isChecked(), `could not tick scope ${scope}`);
  }

  // Settled to a value either way: a token request that never gets its answer
  // to the page is a finding to report, not a bare timeout.
  const answered = page.waitForResponse((r) => isPath(r, 'POST', '/auth/token')).catch((e) => e);
  const [request] = await Promise.all([
    page.waitForRequest((r) => isPath(r, 'POST', '/auth/token')),
    container.locator('.auth-btn-wrapper button.authorize').click(),
  ]);
  const response = await answered;
  if (response instanceof Error) throw new StepError(await unansweredTokenRequest(request));
  const body = await response.json().catch(() => ({}));
  if (response.status() !== 200) {
    const shown = await dialogErrors();
    throw new StepError(
      `POST /auth/token answered ${oauthError(response.status(), body)}; ` +
        `the dialog shows: ${shown.join(' | ') || '(no error message)'}`,
    );
  }
  lastToken = body.access_token;
  secrets.add(lastToken);
  const granted = String(body.scope ?? '').split(' ');
  check(
    SCOPES.every((s) => granted.includes(s)),
    `the token grants "${body.scope}", not ${SCOPES.join(' ')}`,
  );

  await container.locator('h6', { hasText: /^Authorized$/ }).waitFor();
  await container.locator('.auth-btn-wrapper button', { hasText: /^Logout$/ }).waitFor();
  await closeAuthorizeDialog();
  check(
    await page.locator('.scheme-container button.authorize.locked').isVisible(),
    'the Authorize button does not show the lock after authorizing',
  );
  // The key or password must not be kept in the browser once typed.
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }));
  check(
    ![...secrets].some((secret) => secret && stored.includes(secret)),
    'Swagger UI kept a credential or token in local storage',
  );
  return `token endpoint 200, dialog shows "Authorized", scopes ${granted.join(' ')}`;
}

// The dialog repeats a scheme's error under each of its flows; show it once.
async function dialogErrors() {
  const texts = await page
    .locator('.dialog-ux .errors')
    .evaluateAll((els) => els.map((el) => [...el.children].map((c) => c.textContent.trim()).join(': ')))
    .catch(() => []);
  return [...new Set(texts)];
}

// Describes a token request whose answer never reached the page. The request
// is sent once more from here to learn what the server answered; a Basic
// challenge on a 401 makes a browser hold the fetch and ask for credentials
// itself, so Swagger UI can neither show the error nor finish.
async function unansweredTokenRequest(request) {
  const headers = request.headers();
  const form = new URLSearchParams(request.postData() ?? '');
  const sent =
    `grant_type=${form.get('grant_type')}, body fields ${[...form.keys()].join(',')}` +
    (headers.authorization ? `, credentials by HTTP Basic` : '');
  let answer;
  try {
    const replay = await fetch(request.url(), {
      method: 'POST',
      headers: Object.fromEntries(
        ['authorization', 'content-type'].filter((h) => headers[h]).map((h) => [h, headers[h]]),
      ),
      body: request.postData(),
      signal: AbortSignal.timeout(5_000),
    });
    const body = await replay.json().catch(() => ({}));
    const challenge = replay.headers.get('www-authenticate');
    answer =
      `sent again outside the browser it gets ${oauthError(replay.status, body)}` +
      (challenge ? ` with WWW-Authenticate: ${challenge}` : '');
    if (/^basic/i.test(challenge ?? '')) {
      answer +=
        '; that Basic challenge makes the browser wait for credentials instead of passing the error to Swagger UI';
    }
  } catch (e) {
    answer = `sending it again outside the browser failed too: ${e.message}`;
  }
  return `the browser sent POST /auth/token (${sent}) but no answer reached the page; ${answer}`;
}

async function logout() {
  await openAuthorizeDialog();
  const logoutButtons = page.locator('.dialog-ux .auth-container .auth-btn-wrapper button', { hasText: /^Logout$/ });
  // Both flows belong to the one "oauth2" scheme, so one Logout clears them.
  await logoutButtons.first().click();
  const authorized = page.locator('.dialog-ux .auth-container h6', { hasText: /^Authorized$/ });
  await authorized.first().waitFor({ state: 'detached' });
  check((await logoutButtons.count()) === 0, 'a Logout button is still shown after logging out');
  await closeAuthorizeDialog();
  check(
    await page.locator('.scheme-container button.authorize.unlocked').isVisible(),
    'the Authorize button still shows the lock after logging out',
  );
  lastToken = undefined;
  return 'dialog no longer shows "Authorized"';
}

async function expand(operationId) {
  const op = page.locator(`#${operationId}`);
  if (!(await op.evaluate((el) => el.classList.contains('is-open')))) {
    await op.locator('.opblock-summary').first().click();
  }
  await op.locator('.opblock-body').waitFor();
  // The server enables tryItOutEnabled, so the button may already read "Cancel".
  const tryOut = op.locator('button.try-out__btn', { hasText: /^Try it out$/ });
  if (await tryOut.isVisible()) await tryOut.click();
  await op.locator('button.execute').waitFor();
  return op;
}

async function execute(op, method, expectedStatus) {
  // A live response from an earlier run of the same operation would satisfy
  // the checks below, so clear it first.
  const clear = op.locator('button.btn-clear');
  if (await clear.isVisible()) {
    await clear.click();
    await op.locator('.live-responses-table').waitFor({ state: 'detached' });
  }
  const [response] = await Promise.all([
    page.waitForResponse((r) => isPath(r, method, '/todos')),
    op.locator('button.execute').click(),
  ]);

  const authorization = response.request().headers().authorization ?? '';
  check(authorization.startsWith('Bearer '), `Swagger UI sent ${method} /todos without a bearer token`);
  check(
    authorization === `Bearer ${lastToken}`,
    `Swagger UI sent ${method} /todos with a token other than the one just issued`,
  );

  const live = op.locator('.responses-wrapper .live-responses-table .response');
  // The cell reads "503\nUndocumented" for codes the spec does not list.
  const [status] = (await live.locator('.response-col_status').first().innerText()).trim().split(/\s+/);
  if (status !== String(expectedStatus)) {
    const shown = await live
      .locator('.response-col_description')
      .first()
      .innerText()
      .catch(() => '(nothing)');
    throw new StepError(
      `expected ${expectedStatus}, the page shows response code ${status || '(none)'} ` +
        `(network: ${response.status()}); response shown: ${shown.replace(/\s+/g, ' ').slice(0, 400)}`,
    );
  }
  return response;
}

async function listTodos() {
  const op = await expand('operations-Todos-listTodos');
  const response = await execute(op, 'GET', 200);
  const { items } = await response.json();
  check(Array.isArray(items), 'GET /todos did not return a page of todos');
  return `page shows 200, ${items.length} todo(s) on the first page`;
}

async function createTodo() {
  const op = await expand('operations-Todos-createTodo');
  await op.locator('textarea.body-param__text').fill(TODO_BODY);
  const response = await execute(op, 'POST', 201);
  const todo = await response.json();
  check(todo.title === 'from Swagger UI', `POST /todos created a todo titled ${JSON.stringify(todo.title)}`);
  return `page shows 201, created todo ${todo.id}`;
}

async function describePage() {
  if (!page) return '(no page)';
  const parts = [`page at ${page.url()}`];
  const shown = (
    await page
      .locator('.swagger-ui .errors-wrapper .error-wrapper, .swagger-ui .loading-container')
      .allInnerTexts()
      .catch(() => [])
  ).map((t) => t.replace(/\s+/g, ' ').trim());
  if (shown.length) parts.push(`its error panel shows: ${[...new Set(shown)].join(' | ')}`);
  return parts.join('; ');
}

async function fail(error) {
  // Playwright's own errors carry a multi-line call log; its first line says enough.
  const reason = error instanceof StepError ? error.message : String(error?.message ?? error).split('\n')[0];
  console.error(`FAIL ${currentStep}: ${redact(reason)}`);
  console.error(`     ${redact(await within(describePage(), 5_000, `page at ${page?.url() ?? '(none)'}`))}`);
  if (page && currentStep !== 'no Content Security Policy violation') {
    const violations = await violationsSoFar();
    if (violations.length) console.error(`     Content Security Policy violations: ${redact(violations.join(' | '))}`);
  }
  if (page) {
    try {
      fs.mkdirSync(artifacts, { recursive: true });
      const shot = path.join(artifacts, 'swagger-ui-failure.png');
      // Swagger UI's curl snippet spells out the bearer token.
      await page.screenshot({ path: shot, fullPage: true, mask: [page.locator('.curl-command')], timeout: 10_000 });
      console.error(`     screenshot: ${shot}`);
    } catch (e) {
      console.error(`     no screenshot: ${redact(e.message.split('\n')[0])}`);
    }
  }
}

async function cleanup() {
  await browser?.close();
}

// A last resort for a browser that stops answering even to close().
const hardStop = setTimeout(() => {
  console.error(`FAIL ${currentStep}: still running after ${OVERALL_TIMEOUT_MS / 1000 + 20} s, giving up`);
  browser?.removeProfile();
  process.exit(1);
}, OVERALL_TIMEOUT_MS + 20_000);
hardStop.unref();

let timer;
const timeout = new Promise((_, reject) => {
  timer = setTimeout(
    () => reject(new StepError(`timed out after ${OVERALL_TIMEOUT_MS / 1000} s`)),
    OVERALL_TIMEOUT_MS,
  );
});

let exitCode = 0;
try {
  await Promise.race([main(), timeout]);
  console.log('Swagger UI works end to end with both OAuth2 flows.');
} catch (error) {
  exitCode = 1;
  await fail(error);
} finally {
  clearTimeout(timer);
  await cleanup();
}
process.exit(exitCode);
