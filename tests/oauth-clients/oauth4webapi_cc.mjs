// Drives tessera's token endpoint (client credentials) with oauth4webapi, a client library
// nobody here wrote: RFC 8414 discovery, client_secret_basic, client_secret_post and
// private_key_jwt token requests, RFC 9068 validation of the access tokens against the JWKS the
// discovery document names, then introspection (RFC 7662, and RFC 9701's signed answer) before
// and after revocation (RFC 7009).
//
// Run by tests/oauth_clients.rs with the package tests/oauth-clients/install.sh installs.
// Inputs come from the environment, never the command line: TESSERA_URL (the issuer, e.g.
// http://127.0.0.1:PORT) and TESSERA_CLIENTS, JSON:
//   {"basic": {"client_id", "client_secret"}, "post": {...},
//    "jwt": {"client_id", "private_jwk"}, "audience": "...", "scope": "..."}
// where "basic" may introspect and revoke. OAUTH_CLIENTS_DIR names the install folder
// (default target/oauth-clients). Prints one line per check; exits 1 at the first failure.

import { createRequire } from 'node:module'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const installed = process.env.OAUTH_CLIENTS_DIR ?? join(here, '../../target/oauth-clients')
const require = createRequire(join(installed, 'node', 'package.json'))
const oauth = await import(pathToFileURL(require.resolve('oauth4webapi')).href)

class Failure extends Error {}

function ok(what) {
  console.log(`ok: ${what}`)
}

function check(cond, what, detail) {
  if (!cond) throw new Failure(detail === undefined ? what : `${what}: ${detail}`)
  ok(what)
}

// What oauth4webapi says about a refusal: its class, code, and the answer it read.
function describe(e) {
  const parts = [`${e?.name}: ${e?.message}`]
  if (e?.code) parts.push(`code ${e.code}`)
  if (e?.status) parts.push(`status ${e.status}`)
  if (e?.error) parts.push(`error ${e.error} (${e.error_description ?? ''})`)
  const cause = e?.cause
  if (cause instanceof Response) parts.push(`answer ${cause.status} ${cause.headers.get('content-type')}`)
  else if (cause instanceof Error) parts.push(`cause ${cause.name}: ${cause.message} ${cause.code ?? ''}`)
  else if (cause !== undefined) {
    try {
      parts.push(`cause ${JSON.stringify(cause)}`)
    } catch {
      parts.push(`cause ${String(cause)}`)
    }
  }
  return parts.join('; ')
}

async function step(what, fn) {
  try {
    return await fn()
  } catch (e) {
    if (e instanceof Failure) throw e
    throw new Failure(`${what}: ${describe(e)}`)
  }
}

const url = process.env.TESSERA_URL
const clients = JSON.parse(process.env.TESSERA_CLIENTS)
const { audience, scope } = clients
const insecure = { [oauth.allowInsecureRequests]: true } // the issuer is plain http loopback
const issuer = new URL(url)

async function main() {
  const as = await step('discovery', async () =>
    oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
    ),
  )
  check(as.issuer === url, `discovery (RFC 8414): issuer ${url}`, JSON.stringify(as))
  for (const field of ['token_endpoint', 'jwks_uri', 'introspection_endpoint', 'revocation_endpoint']) {
    check(typeof as[field] === 'string', `discovery: ${field}`, JSON.stringify(as))
  }

  // An access token, checked as a resource server would (RFC 9068) and for what was asked.
  async function validate(who, accessToken, clientId) {
    const request = new Request(`${audience}/check`, {
      headers: { authorization: `Bearer ${accessToken}` },
    })
    const claims = await step(`${who}: validateJwtAccessToken`, () =>
      oauth.validateJwtAccessToken(as, request, audience, { ...insecure, signingAlgorithms: ['ES256'] }),
    )
    ok(`${who}: validateJwtAccessToken (typ at+jwt, ES256 from jwks_uri, iss, aud, exp)`)
    check(
      claims.sub === clientId && claims.client_id === clientId,
      `${who}: sub == client_id == ${clientId}`,
      JSON.stringify(claims),
    )
    check(claims.scope === scope, `${who}: scope ${scope}`, JSON.stringify(claims))
    return claims
  }

  async function grant(who, client, auth) {
    const response = await step(`${who}: clientCredentialsGrantRequest`, () =>
      oauth.clientCredentialsGrantRequest(as, client, auth, { scope }, insecure),
    )
    const cacheControl = response.headers.get('cache-control') ?? ''
    const result = await step(`${who}: processClientCredentialsResponse`, () =>
      oauth.processClientCredentialsResponse(as, client, response),
    )
    ok(`${who}: client_credentials token`)
    check(result.token_type === 'bearer', `${who}: token_type Bearer`, JSON.stringify(result))
    check(
      typeof result.expires_in === 'number' && result.expires_in > 0,
      `${who}: expires_in`,
      JSON.stringify(result),
    )
    check(result.scope === scope, `${who}: scope ${scope} granted`, JSON.stringify(result))
    check(/no-store/i.test(cacheControl), `${who}: Cache-Control: no-store`, cacheControl)
    await validate(who, result.access_token, client.client_id)
    return result.access_token
  }

  const basic = { client_id: clients.basic.client_id }
  const basicAuth = oauth.ClientSecretBasic(clients.basic.client_secret)
  const token = await grant('oauth4webapi client_secret_basic', basic, basicAuth)

  const post = { client_id: clients.post.client_id }
  await grant('oauth4webapi client_secret_post', post, oauth.ClientSecretPost(clients.post.client_secret))

  // private_key_jwt: oauth4webapi's assertion names the issuer as aud and lives 60 s.
  const { kty, crv, x, y, d, kid } = clients.jwt.private_jwk
  const key = await crypto.subtle.importKey(
    'jwk',
    { kty, crv, x, y, d },
    { name: 'ECDSA', namedCurve: 'P-256' },
    false,
    ['sign'],
  )
  await grant(
    'oauth4webapi private_key_jwt',
    { client_id: clients.jwt.client_id },
    oauth.PrivateKeyJwt({ key, kid }),
  )

  // Introspection (RFC 7662) by the client allowed to, of its own token, before revocation.
  async function introspect(what, options = {}, client = basic) {
    const response = await step(`${what}: introspectionRequest`, () =>
      oauth.introspectionRequest(as, client, basicAuth, token, { ...insecure, ...options }),
    )
    return step(`${what}: processIntrospectionResponse`, () =>
      oauth.processIntrospectionResponse(as, client, response),
    )
  }
  let answer = await introspect('introspection before revocation')
  check(answer.active === true, 'introspection before revocation: active: true', JSON.stringify(answer))
  check(
    answer.client_id === basic.client_id && answer.scope === scope,
    'introspection before revocation: client_id and scope',
    JSON.stringify(answer),
  )
  // RFC 9701: the same answer as a JWT the client verifies (typ, iss, aud = the client).
  const signed = { ...basic, introspection_signed_response_alg: 'ES256' }
  answer = await introspect('signed introspection (RFC 9701)', { requestJwtResponse: true }, signed)
  check(answer.active === true, 'signed introspection (RFC 9701): active: true', JSON.stringify(answer))

  // Revocation (RFC 7009) by the client the token was issued to.
  const revoked = await step('revocationRequest', () =>
    oauth.revocationRequest(as, basic, basicAuth, token, insecure),
  )
  await step('processRevocationResponse', () => oauth.processRevocationResponse(revoked))
  ok('revocation (RFC 7009): 200')

  answer = await introspect('introspection after revocation')
  check(answer.active === false, 'introspection after revocation: active: false', JSON.stringify(answer))
  check(
    Object.keys(answer).length === 1,
    'introspection after revocation: nothing but active (RFC 7662 2.2)',
    JSON.stringify(answer),
  )
  // Revoking again, or revoking what is no token, is still 200 (RFC 7009 2.2).
  const again = await step('revocationRequest again', () =>
    oauth.revocationRequest(as, basic, basicAuth, token, insecure),
  )
  await step('processRevocationResponse again', () => oauth.processRevocationResponse(again))
  ok('revocation of a revoked token: 200')
  const junk = await step('revocationRequest of junk', () =>
    oauth.revocationRequest(as, basic, basicAuth, 'not-a-token', insecure),
  )
  await step('processRevocationResponse of junk', () => oauth.processRevocationResponse(junk))
  ok('revocation of an unknown token: 200')
}

try {
  await main()
  console.log('oauth4webapi_cc.mjs: all checks passed')
} catch (e) {
  console.log(`FAIL: ${e instanceof Failure ? e.message : describe(e)}`)
  process.exitCode = 1
}
