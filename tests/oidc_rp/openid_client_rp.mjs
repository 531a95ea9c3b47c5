// A relying party on openid-client (npm), driven by tests/test_oidc_rp.py:
//   node openid_client_rp.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
// It prints one JSON line with the authorization URL, reads the callback URL (what the
// browser was sent back to) from stdin, then completes the flow (code + PKCE, ID token
// validation, userinfo, refresh, introspection, revocation) and prints the results as
// a second JSON line.
import * as client from 'openid-client';
import * as readline from 'node:readline';

const [issuer, clientId, clientSecret, redirectUri] = process.argv.slice(2);

async function main() {
  const config = await client.discovery(
    new URL(issuer),
    clientId,
    { client_secret: clientSecret, id_token_signed_response_alg: 'ES256' },
    client.ClientSecretBasic(clientSecret),
    { execute: [client.allowInsecureRequests] }, // the test server is plain http on 127.0.0.1
  );
  const verifier = client.randomPKCECodeVerifier();
  const challenge = await client.calculatePKCECodeChallenge(verifier);
  const nonce = client.randomNonce();
  const state = client.randomState();
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email profile',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    nonce,
    state,
  });
  console.log(JSON.stringify({ authorize: url.href }));

  const lines = readline.createInterface({ input: process.stdin });
  const callback = await new Promise((resolve) => lines.once('line', resolve));
  lines.close();

  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedNonce: nonce,
    expectedState: state,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  const active = await client.tokenIntrospection(config, refreshed.access_token);
  let oldRefreshRefused = false;
  try {
    await client.refreshTokenGrant(config, tokens.refresh_token);
  } catch (error) {
    oldRefreshRefused = error.error === 'invalid_grant';
  }
  await client.tokenRevocation(config, refreshed.refresh_token);
  const afterRevoke = await client.tokenIntrospection(config, refreshed.access_token);
  console.log(JSON.stringify({
    claims,
    userinfo,
    refreshedHasIdToken: Boolean(refreshed.id_token),
    introspection: active,
    oldRefreshRefused,
    afterRevoke,
  }));
}

main().catch((error) => {
  console.log(JSON.stringify({ error: String(error), code: error.code, cause: String(error.cause) }));
  process.exit(1);
});
