// An OAuth 2.0 client library given nothing but the issuer URL: openid-client
// reads the RFC 8414 metadata, finds the token endpoint there, and trades the
// API key for a token with client_secret_basic, then with client_secret_post.
import * as client from 'openid-client';

const { LATCHKEY_URL: issuer, LATCHKEY_KEY_ID: keyId, LATCHKEY_API_KEY: apiKey } = process.env;
if (!issuer || !keyId || !apiKey) {
  console.error('discovery: set LATCHKEY_URL, LATCHKEY_KEY_ID and LATCHKEY_API_KEY');
  process.exit(2);
}

// Plain http is refused by default; the server under test listens on loopback.
const insecure = { execute: [client.allowInsecureRequests], algorithm: 'oauth2' };

for (const [name, auth] of [
  ['client_secret_basic', client.ClientSecretBasic(apiKey)],
  ['client_secret_post', client.ClientSecretPost(apiKey)],
]) {
  const config = await client.discovery(new URL(issuer), keyId, undefined, auth, insecure);
  const meta = config.serverMetadata();
  if (!meta.token_endpoint) throw new Error('the metadata names no token endpoint');
  const tokens = await client.clientCredentialsGrant(config, { scope: 'todos:read' });
  if (tokens.token_type?.toLowerCase() !== 'bearer' || !tokens.access_token) {
    throw new Error(`unexpected token response: type ${tokens.token_type}`);
  }
  const todos = await fetch(new URL('/todos', issuer), {
    headers: { Authorization: `Bearer ${tokens.access_token}` },
  });
  if (todos.status !== 200) throw new Error(`GET /todos answered ${todos.status}`);
  console.log(`discovery: ${name} via ${meta.token_endpoint}: token scope "${tokens.scope}", GET /todos 200`);
}
