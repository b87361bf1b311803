// A single-page app served from another origin than latchkey's: it trades an
// API key for a token at /auth/token and calls the Todo API with it, with
// fetch, as any browser app would. Each call answers what the page's script
// could read of the answer, or how the browser refused it.
'use strict';

async function answer(request) {
  try {
    const resp = await request;
    const headers = {};
    for (const name of ['cache-control', 'location', 'retry-after', 'www-authenticate']) {
      headers[name] = resp.headers.get(name);
    }
    return { status: resp.status, headers, body: await resp.json().catch(() => null) };
  } catch (e) {
    return { refused: `${e.name}: ${e.message}` };
  }
}

window.latchkeyApp = {
  // RFC 6749 client credentials by HTTP Basic; the marker keeps a refused key
  // from raising the browser's own login prompt.
  exchange: (api, keyId, apiKey) =>
    answer(
      fetch(`${api}/auth/token`, {
        method: 'POST',
        headers: {
          Authorization: `Basic ${btoa(`${keyId}:${apiKey}`)}`,
          'X-Requested-With': 'XMLHttpRequest',
        },
        body: new URLSearchParams({ grant_type: 'client_credentials' }),
      }),
    ),
  call: (api, method, path, token, body) =>
    answer(
      fetch(`${api}${path}`, {
        method,
        headers: {
          ...(token ? { Authorization: `Bearer ${token}` } : {}),
          ...(body ? { 'Content-Type': 'application/json' } : {}),
        },
        body: body ? JSON.stringify(body) : undefined,
      }),
    ),
};
