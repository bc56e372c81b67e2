// The MCP TypeScript SDK's client-side OAuth, as an MCP host runs it: a
// request to the MCP server without a token, its 401 with an RFC 9728
// resource_metadata challenge, then the SDK's own auth() (discovery, DCR or
// a Client ID Metadata Document, authorization code + PKCE S256 with
// resource, token exchange), a second auth() that refreshes, and the MCP
// request again with the token. Driven by tests/jsclients_test.go.
//
// config: {resource, redirect, auth_method, client_metadata_url?}
import { randomUUID } from 'node:crypto';
import { auth, extractWWWAuthenticateParams } from '@modelcontextprotocol/sdk/client/auth.js';
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

// mcpRequest is what a Streamable HTTP transport sends first.
function mcpRequest(token) {
  const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
  if (token) headers.authorization = `Bearer ${token}`;
  return fetch(config.resource, {
    method: 'POST',
    headers,
    body: JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'initialize',
      params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'authz-test', version: '1' } },
    }),
  });
}

run(async () => {
  const unauthenticated = await mcpRequest();
  const challenge = extractWWWAuthenticateParams(unauthenticated);
  emit('challenge', {
    status: unauthenticated.status,
    resource_metadata: challenge.resourceMetadataUrl?.href ?? null,
    scope: challenge.scope ?? null,
  });
  check(unauthenticated.status === 401, `MCP server answered ${unauthenticated.status} without a token`);
  const opts = { serverUrl: config.resource, resourceMetadataUrl: challenge.resourceMetadataUrl, scope: challenge.scope };

  const provider = new MemoryProvider(config);
  const started = await auth(provider, opts);
  check(started === 'REDIRECT', `first auth() returned ${started}`);
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

  const exchanged = await auth(provider, { ...opts, authorizationCode: q.get('code') });
  check(exchanged === 'AUTHORIZED', `auth() with the code returned ${exchanged}`);
  const first = provider.saved.tokens;
  emit('tokens', { access_token: first.access_token, refresh_token: first.refresh_token ?? null, scope: first.scope ?? null });

  // A later session: tokens are there, so auth() refreshes them.
  const refreshed = await auth(provider, opts);
  check(refreshed === 'AUTHORIZED', `auth() with a refresh token returned ${refreshed}`);
  const second = provider.saved.tokens;
  emit('refreshed', { access_token: second.access_token, refresh_token: second.refresh_token ?? null });

  const authenticated = await mcpRequest(second.access_token);
  emit('resource', { status: authenticated.status, body: await authenticated.json().catch(() => null) });
});
