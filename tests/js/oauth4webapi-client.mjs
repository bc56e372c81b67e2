// oauth4webapi (panva), a certified OAuth 2 / OpenID client, against authz:
// RFC 9728 discovery from the resource, RFC 8414 discovery, RFC 7591
// registration of a confidential client, two error redirects (the user's
// Deny, an unknown scope) checked by validateAuthResponse with state and
// iss (RFC 9207), authorization code + PKCE S256 with resource (RFC 8707),
// the access token checked as an RFC 9068 JWT, refresh, introspection
// (RFC 7662), revocation (RFC 7009) and what is left of the tokens after
// it, and an OpenID Connect sign-in (ID token and UserInfo). Driven by
// tests/jsclients_test.go.
//
// config: {resource, redirect}
import * as oauth from 'oauth4webapi';
import { authorize, check, config, emit, run } from './lib.mjs';

// Loopback http in the test only: the library refuses http by default.
const insecure = { [oauth.allowInsecureRequests]: true };

run(async () => {
  const resource = new URL(config.resource);
  const rs = await oauth.processResourceDiscoveryResponse(resource, await oauth.resourceDiscoveryRequest(resource, insecure));
  emit('resource_metadata', { resource: rs.resource, authorization_servers: rs.authorization_servers, scopes_supported: rs.scopes_supported ?? null });

  const issuer = new URL(rs.authorization_servers[0]);
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
  emit('discovery', {
    issuer: as.issuer,
    authorization_response_iss_parameter_supported: as.authorization_response_iss_parameter_supported ?? null,
    code_challenge_methods_supported: as.code_challenge_methods_supported ?? null,
  });

  const registered = await oauth.processDynamicClientRegistrationResponse(await oauth.dynamicClientRegistrationRequest(as, {
    client_name: 'authz test app (oauth4webapi)',
    redirect_uris: [config.redirect],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    scope: 'read',
  }, insecure));
  const client = { client_id: registered.client_id };
  const clientAuth = oauth.ClientSecretBasic(registered.client_secret);
  emit('registered', { client_id: registered.client_id, token_endpoint_auth_method: registered.token_endpoint_auth_method });

  // start sends the user to the authorization endpoint and validates the
  // redirect: iss (advertised, so required), state, then error.
  const start = async (step, scope, extra = {}, server = as) => {
    const verifier = oauth.generateRandomCodeVerifier();
    const state = oauth.generateRandomState();
    const url = new URL(server.authorization_endpoint);
    url.search = new URLSearchParams({
      response_type: 'code', client_id: client.client_id, redirect_uri: config.redirect, scope, state,
      code_challenge: await oauth.calculatePKCECodeChallenge(verifier), code_challenge_method: 'S256',
      resource: config.resource, ...extra,
    }).toString();
    const callback = await authorize(step, url);
    return { verifier, state, validate: () => oauth.validateAuthResponse(server, client, callback, state) };
  };

  // Errors first: after the Allow below this confidential client's
  // consent is remembered and no consent page (with its Deny) shows.
  for (const [step, scope] of [['deny', 'read'], ['invalid_scope', 'read no-such-scope']]) {
    const attempt = await start(step, scope);
    try {
      attempt.validate();
      emit('error_redirect', { step, error: null });
    } catch (err) {
      check(err instanceof oauth.AuthorizationResponseError, `${step}: ${err}`);
      // Reaching AuthorizationResponseError means iss and state passed.
      emit('error_redirect', { step, error: err.error, state: err.cause.get('state'), state_intact: err.cause.get('state') === attempt.state });
    }
  }

  const attempt = await start('allow', 'read');
  const params = attempt.validate();
  const tokens = await oauth.processAuthorizationCodeResponse(as, client, await oauth.authorizationCodeGrantRequest(
    as, client, clientAuth, params, config.redirect, attempt.verifier, { additionalParameters: { resource: config.resource }, ...insecure }));
  // The resource server's view (RFC 9068 §4): typ, signature from the
  // JWKS, iss, aud = this resource, and the required claims.
  const claims = await oauth.validateJwtAccessToken(as,
    new Request(config.resource, { headers: { authorization: `Bearer ${tokens.access_token}` } }), config.resource, insecure);
  emit('tokens', {
    access_token: tokens.access_token, refresh_token: tokens.refresh_token ?? null, token_type: tokens.token_type,
    scope: tokens.scope ?? null, claims,
  });
  const call = async (token) => {
    try {
      const res = await oauth.protectedResourceRequest(token, 'GET', resource, undefined, undefined, insecure);
      return { status: res.status, body: await res.json().catch(() => null) };
    } catch (err) {
      check(err instanceof oauth.WWWAuthenticateChallengeError, `resource request: ${err}`);
      return { status: err.response.status, challenge: err.cause[0]?.parameters ?? null };
    }
  };
  emit('resource', await call(tokens.access_token));

  const refreshed = await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(
    as, client, clientAuth, tokens.refresh_token, { additionalParameters: { resource: config.resource }, ...insecure }));
  emit('refreshed', { access_token: refreshed.access_token, refresh_token: refreshed.refresh_token ?? null });

  const introspect = async (token) => oauth.processIntrospectionResponse(as, client,
    await oauth.introspectionRequest(as, client, clientAuth, token, insecure));
  emit('introspection', await introspect(refreshed.access_token));

  // Log out: revoke the refresh token.
  await oauth.processRevocationResponse(await oauth.revocationRequest(as, client, clientAuth, refreshed.refresh_token, insecure));
  let refreshError = null;
  try {
    await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshed.refresh_token, insecure));
  } catch (err) {
    check(err instanceof oauth.ResponseBodyError, `refresh after revocation: ${err}`);
    refreshError = err.error;
  }
  emit('revoked', {
    introspection: await introspect(refreshed.access_token),
    resource: await call(refreshed.access_token),
    refresh_error: refreshError,
  });

  // Signing the user in (OpenID Connect Core): OpenID discovery, a nonce,
  // the ID token validated by the library (signature, iss, aud, exp, iat,
  // nonce), then UserInfo with the access token (sub must match).
  const op = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oidc', ...insecure }));
  const nonce = oauth.generateRandomNonce();
  const signIn = await start('openid', 'openid read', { nonce }, op);
  const result = await oauth.processAuthorizationCodeResponse(op, client, await oauth.authorizationCodeGrantRequest(
    op, client, clientAuth, signIn.validate(), config.redirect, signIn.verifier, { additionalParameters: { resource: config.resource }, ...insecure }),
  { expectedNonce: nonce, requireIdToken: true });
  const idToken = oauth.getValidatedIdTokenClaims(result);
  const userinfo = await oauth.processUserInfoResponse(op, client, idToken.sub,
    await oauth.userInfoRequest(op, client, result.access_token, insecure));
  emit('openid', { id_token: idToken, userinfo });
});
