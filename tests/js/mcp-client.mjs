// The MCP TypeScript SDK's client-side OAuth, as an MCP host runs it. The
// host connects (Client + StreamableHTTPClientTransport with an
// OAuthClientProvider); the MCP server's 401 names its RFC 9728 metadata;
// the SDK's own auth() discovers authz (RFC 8414), registers by DCR or
// uses a Client ID Metadata Document URL, and sends the user to authorize
// with PKCE S256 and resource = the MCP URL; the host hands the code to
// finishAuth() (the token exchange), connects again and calls a tool; a
// later auth() refreshes, and the refreshed token calls the tool too.
// Driven by tests/jsclients_test.go.
//
// config: {resource, redirect, auth_method, client_metadata_url?}
import { randomUUID } from 'node:crypto';
import { auth, extractWWWAuthenticateParams, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { authorize, check, config, emit, run } from './lib.mjs';

// MemoryProvider is an OAuthClientProvider that keeps everything in memory,
// as a host does for one session.
class MemoryProvider {
  constructor(cfg) {
    this.cfg = cfg;
    this.expectedState = randomUUID();
    this.saved = {};
  }
  get redirectUrl() { return this.cfg.redirect; }
  get clientMetadataUrl() { return this.cfg.client_metadata_url; }
  get clientMetadata() {
    return {
      client_name: 'authz test host (MCP SDK)',
      redirect_uris: [this.cfg.redirect],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: this.cfg.auth_method,
    };
  }
  state() { return this.expectedState; }
  clientInformation() { return this.saved.client; }
  saveClientInformation(info) { this.saved.client = info; }
  tokens() { return this.saved.tokens; }
  saveTokens(tokens) { this.saved.tokens = tokens; }
  redirectToAuthorization(url) { this.saved.authorizationUrl = url; }
  saveCodeVerifier(v) { this.saved.verifier = v; }
  codeVerifier() { return this.saved.verifier; }
  saveDiscoveryState(s) { this.saved.discovery = s; }
  discoveryState() { return this.saved.discovery; }
}

const serverUrl = new URL(config.resource);
const transportFor = (provider) => new StreamableHTTPClientTransport(serverUrl, { authProvider: provider });

// whoami connects with the provider's tokens and calls the MCP server's
// whoami tool: what the server's middleware found in the token.
async function whoami(provider) {
  const client = new Client({ name: 'authz-test-host', version: '1' });
  await client.connect(transportFor(provider));
  try {
    const result = await client.callTool({ name: 'whoami', arguments: {} });
    return JSON.parse(result.content[0].text);
  } finally {
    await client.close();
  }
}

run(async () => {
  // What the transport meets first, recorded for the test.
  const unauthenticated = await fetch(serverUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: {} }),
  });
  const challenge = extractWWWAuthenticateParams(unauthenticated);
  emit('challenge', {
    status: unauthenticated.status,
    resource_metadata: challenge.resourceMetadataUrl?.href ?? null,
    scope: challenge.scope ?? null,
  });

  // The host connects; the transport meets the 401 and runs auth(), which
  // ends in a redirect to the authorization endpoint.
  const provider = new MemoryProvider(config);
  const transport = transportFor(provider);
  let connectError;
  try {
    await new Client({ name: 'authz-test-host', version: '1' }).connect(transport);
  } catch (err) {
    connectError = err;
  }
  check(connectError instanceof UnauthorizedError, `connecting without a token: ${connectError ?? 'connected'}`);
  check(provider.saved.authorizationUrl, 'auth() did not send the user to authorize');
  const as = provider.saved.discovery?.authorizationServerMetadata;
  emit('discovered', {
    authorization_server: provider.saved.discovery?.authorizationServerUrl ?? null,
    issuer: as?.issuer ?? null,
    client_id: provider.saved.client?.client_id ?? null,
    client_secret_issued: provider.saved.client?.client_secret !== undefined,
  });

  // The host's callback handler: the SDK leaves state to the host.
  const callback = await authorize('allow', provider.saved.authorizationUrl);
  const q = callback.searchParams;
  check(q.get('state') === provider.expectedState, `state came back as ${q.get('state')}`);
  check(q.get('code'), `no code in the redirect: ${callback.search}`);
  emit('callback', { iss: q.get('iss') });

  await transport.finishAuth(q.get('code'));
  const first = provider.saved.tokens;
  emit('tokens', { access_token: first.access_token, refresh_token: first.refresh_token ?? null, scope: first.scope ?? null });
  emit('resource', { whoami: await whoami(provider) });

  // A later session: tokens are there, so auth() refreshes them.
  const refreshed = await auth(provider, { serverUrl, resourceMetadataUrl: challenge.resourceMetadataUrl, scope: challenge.scope });
  check(refreshed === 'AUTHORIZED', `auth() with a refresh token returned ${refreshed}`);
  const second = provider.saved.tokens;
  emit('refreshed', { access_token: second.access_token, refresh_token: second.refresh_token ?? null });
  emit('resource_after_refresh', { whoami: await whoami(provider) });
});
