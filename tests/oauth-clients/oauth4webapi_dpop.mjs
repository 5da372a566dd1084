// Drives tessera's DPoP support (RFC 9449) with client libraries nobody here wrote: oauth4webapi
// gets DPoP-bound tokens from /token (client_secret_basic, its DPoP handle, the server nonce
// challenge met as oauth4webapi documents: isDPoPNonceError, then one retry with the nonce the
// handle cached), and panva's `dpop` package makes the proofs brought to the forward-auth
// endpoint /v1/authz, sent as nginx sends its auth_request (X-Original-Method, X-Original-URI),
// with htu the configured [authz.dpop] origin and the original path. The first proof there has
// no nonce and is answered use_dpop_nonce; the retry with the nonce passes; then every proof
// that must not pass is refused: a replay, another URI, another method, another key, another
// token's ath, the token as Bearer, no proof, two proofs, an iat an hour off, and an unbound
// token under DPoP. A fresh proof still passes at the end.
//
// Run by tests/oauth_clients.rs with the packages tests/oauth-clients/install.sh installs.
// Inputs come from the environment, never the command line: TESSERA_URL (the issuer, e.g.
// http://127.0.0.1:PORT) and TESSERA_CLIENTS, JSON:
//   {"dpop": {"client_id", "client_secret"}, "plain": {...}, "audience": "...", "scope": "...",
//    "origin": "https://api.example", "path": "/orders/1"}
// where "dpop" is registered --dpop-bound and "plain" is not. OAUTH_CLIENTS_DIR names the
// install folder (default target/oauth-clients). Prints one line per check; exits 1 at the first
// failure.

import { request as httpRequest } from 'node:http'
import { createRequire } from 'node:module'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const installed = process.env.OAUTH_CLIENTS_DIR ?? join(here, '../../target/oauth-clients')
const require = createRequire(join(installed, 'node', 'package.json'))
const oauth = await import(pathToFileURL(require.resolve('oauth4webapi')).href)
const dpop = await import(pathToFileURL(require.resolve('dpop')).href)

const TIMEOUT_MS = 10_000

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

// A JWT's header and claims, unverified (the daemon's own checks are what is tested).
function decode(jwt) {
  const [header, payload] = jwt.split('.')
  const part = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'))
  return { header: part(header), claims: part(payload) }
}

const url = process.env.TESSERA_URL
const clients = JSON.parse(process.env.TESSERA_CLIENTS)
const { audience, scope, origin, path } = clients
const htu = `${origin}${path}`
const insecure = { [oauth.allowInsecureRequests]: true } // the issuer is plain http loopback
const issuer = new URL(url)
const authzUrl = new URL('/v1/authz', url)

// One forward-auth request to /v1/authz as nginx's auth_request sends it: GET, the original
// method and URI in X-Original-*, the client's Authorization and DPoP headers passed on. Each
// proof given becomes a DPoP header line of its own. The answer's status and headers.
function authz({ method = 'GET', uri = path, authorization, proofs = [] }) {
  const headers = { 'x-original-method': method, 'x-original-uri': uri }
  if (authorization !== undefined) headers.authorization = authorization
  if (proofs.length === 1) headers.dpop = proofs[0]
  else if (proofs.length > 1) headers.dpop = proofs
  return new Promise((resolve, reject) => {
    const req = httpRequest(authzUrl, { method: 'GET', headers, timeout: TIMEOUT_MS }, (res) => {
      res.resume()
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers }))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer from ${authzUrl} in ${TIMEOUT_MS} ms`)))
    req.on('error', reject)
    req.end()
  })
}

function shown(answer) {
  const h = answer.headers
  return `answered ${answer.status}, WWW-Authenticate ${JSON.stringify(h['www-authenticate'])}, ` +
    `DPoP-Nonce ${h['dpop-nonce'] === undefined ? 'none' : 'given'}, ` +
    `X-Auth-Subject ${JSON.stringify(h['x-auth-subject'])}, X-Auth-Cnf-Jkt ${JSON.stringify(h['x-auth-cnf-jkt'])}`
}

// The error of a WWW-Authenticate challenge with the given scheme, or undefined.
function challengeError(answer, scheme) {
  const value = answer.headers['www-authenticate'] ?? ''
  if (!value.toLowerCase().startsWith(`${scheme.toLowerCase()} `)) return undefined
  return /\berror="([^"]*)"/.exec(value)?.[1]
}

// A DPoP proof JWS made here with WebCrypto, for what `dpop` will not make (an iat of our
// choosing): the same header and claims that `dpop` writes.
async function signedProof(keyPair, claims) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keyPair.publicKey)
  const header = { alg: 'ES256', typ: 'dpop+jwt', jwk: { kty, crv, x, y } }
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url')
  const input = `${b64(header)}.${b64(claims)}`
  const signature = await crypto.subtle.sign(
    { name: 'ECDSA', hash: 'SHA-256' },
    keyPair.privateKey,
    new TextEncoder().encode(input),
  )
  return `${input}.${Buffer.from(signature).toString('base64url')}`
}

async function ath(token) {
  return Buffer.from(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))).toString('base64url')
}

async function main() {
  const as = await step('discovery', async () =>
    oauth.processDiscoveryResponse(
      issuer,
      await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }),
    ),
  )
  check(as.issuer === url, `discovery (RFC 8414): issuer ${url}`, JSON.stringify(as))
  check(
    Array.isArray(as.dpop_signing_alg_values_supported) && as.dpop_signing_alg_values_supported.includes('ES256'),
    'discovery: dpop_signing_alg_values_supported lists ES256',
    JSON.stringify(as.dpop_signing_alg_values_supported),
  )

  // What oauth4webapi sends to /token and what it gets, seen through its customFetch hook.
  const exchanges = []
  const customFetch = async (input, init) => {
    const response = await fetch(input, { ...init, signal: AbortSignal.timeout(TIMEOUT_MS) })
    const proof = new Headers(init?.headers).get('dpop')
    exchanges.push({ proof, status: response.status, nonce: response.headers.get('dpop-nonce') })
    return response
  }
  const options = { ...insecure, [oauth.customFetch]: customFetch }

  const keyPair = await oauth.generateKeyPair('ES256')
  const jkt = await dpop.calculateThumbprint(keyPair.publicKey)
  const client = { client_id: clients.dpop.client_id }
  const clientAuth = oauth.ClientSecretBasic(clients.dpop.client_secret)
  const handle = oauth.DPoP(client, keyPair)
  check(
    (await handle.calculateThumbprint()) === jkt,
    "the DPoP handle's RFC 7638 thumbprint is the dpop package's",
    jkt,
  )

  async function grant(who, handleOrNone, theClient = client, auth = clientAuth) {
    const response = await step(`${who}: clientCredentialsGrantRequest`, () =>
      oauth.clientCredentialsGrantRequest(as, theClient, auth, { scope }, { ...options, DPoP: handleOrNone }),
    )
    return oauth.processClientCredentialsResponse(as, theClient, response)
  }

  // The nonce challenge, as oauth4webapi documents it: the first request fails with a
  // use_dpop_nonce error, the handle caches the nonce, one retry.
  let who = 'oauth4webapi DPoP client_secret_basic'
  let challenge
  let result
  try {
    result = await grant(who, handle)
  } catch (e) {
    if (!oauth.isDPoPNonceError(e)) throw new Failure(`${who}: the first token request: ${describe(e)}`)
    challenge = e
  }
  check(
    challenge !== undefined,
    `${who}: the first token request (a proof without a nonce) is refused with use_dpop_nonce`,
    result === undefined ? 'no answer' : `a token came: ${JSON.stringify({ ...result, access_token: '...' })}`,
  )
  check(
    challenge.status === 400 && challenge.error === 'use_dpop_nonce',
    `${who}: ... answered 400 use_dpop_nonce (RFC 9449 section 8)`,
    describe(challenge),
  )
  const first = exchanges.at(-1)
  check(typeof first.nonce === 'string' && first.nonce.length > 0, `${who}: ... with a DPoP-Nonce header`, JSON.stringify(first.status))
  check(
    first.proof !== null && decode(first.proof).claims.nonce === undefined,
    `${who}: ... to a proof that carried no nonce`,
    first.proof === null ? 'no proof sent' : JSON.stringify(decode(first.proof).claims),
  )
  result = await step(`${who}: the retry with the nonce`, () => grant(who, handle))
  const retry = exchanges.at(-1)
  check(retry.status === 200, `${who}: the retry is answered 200`, String(retry.status))
  const sentProof = decode(retry.proof)
  check(
    sentProof.claims.nonce === first.nonce && sentProof.claims.htm === 'POST' &&
      sentProof.claims.htu === as.token_endpoint && sentProof.header.typ === 'dpop+jwt',
    `${who}: the retry's proof carries the nonce, htm POST, htu the token endpoint`,
    JSON.stringify(sentProof),
  )
  check(result.token_type === 'dpop', `${who}: token_type DPoP (oauth4webapi lowercases it)`, JSON.stringify({ ...result, access_token: '...' }))
  check(result.scope === scope, `${who}: scope ${scope} granted`, JSON.stringify(result.scope))
  const token = result.access_token
  const { header, claims } = decode(token)
  check(header.typ === 'at+jwt', `${who}: the access token's typ is at+jwt`, JSON.stringify(header))
  check(claims.cnf?.jkt === jkt, `${who}: the access token's cnf.jkt is the key's RFC 7638 thumbprint`, JSON.stringify(claims.cnf))
  check(claims.sub === client.client_id, `${who}: sub is the client`, JSON.stringify(claims))

  // The handle keeps the nonce: the next request passes at once.
  const before = exchanges.length
  const again = await step(`${who}: a second token request`, () => grant(who, handle))
  check(
    exchanges.length === before + 1 && again.token_type === 'dpop',
    `${who}: a second token request with the handle's cached nonce passes at once`,
    JSON.stringify(exchanges.slice(before).map((x) => x.status)),
  )

  // An independent resource-server check of the token and a proof: oauth4webapi's RFC 9068
  // and RFC 9449 validation (signature from jwks_uri, cnf.jkt against the proof's key, ath,
  // htm, htu; it leaves nonces to the caller).
  const rsProof = await dpop.generateProof(keyPair, htu, 'GET', undefined, token)
  const validated = await step('validateJwtAccessToken (DPoP)', () =>
    oauth.validateJwtAccessToken(
      as,
      new Request(htu, { headers: { authorization: `DPoP ${token}`, dpop: rsProof } }),
      audience,
      { ...insecure, requireDPoP: true, signingAlgorithms: ['ES256'] },
    ),
  )
  check(validated.cnf?.jkt === jkt, 'oauth4webapi validateJwtAccessToken(requireDPoP) accepts the token and a dpop proof')

  // The dpop-bound client with no proof is refused.
  who = 'oauth4webapi client_secret_basic without DPoP'
  try {
    const r = await grant(who, undefined)
    throw new Failure(`${who}: the --dpop-bound client got a token without a proof: ${r.token_type}`)
  } catch (e) {
    if (e instanceof Failure) throw e
    check(
      e.status === 400 && e.error === 'invalid_dpop_proof',
      `${who}: the --dpop-bound client is refused (400 invalid_dpop_proof)`,
      describe(e),
    )
  }
  // An ordinary client without a proof gets a bearer token, for the unbound case below.
  const plainClient = { client_id: clients.plain.client_id }
  const plain = await step(`${who}: the ordinary client`, () =>
    grant(who, undefined, plainClient, oauth.ClientSecretBasic(clients.plain.client_secret)),
  )
  check(plain.token_type === 'bearer' && decode(plain.access_token).claims.cnf === undefined,
    `${who}: the ordinary client gets an unbound Bearer token`, plain.token_type)

  // A second token bound to the same key, for a proof whose ath names the wrong token.
  const other = await step('a second DPoP-bound token', () => grant('second token', handle))
  check(other.access_token !== token, 'a second DPoP-bound token, for the wrong-ath case')

  // /v1/authz as nginx asks it. The first proof has no nonce: 401 use_dpop_nonce with one.
  let answer = await step('/v1/authz without a nonce', async () =>
    authz({ authorization: `DPoP ${token}`, proofs: [await dpop.generateProof(keyPair, htu, 'GET', undefined, token)] }),
  )
  check(
    answer.status === 401 && challengeError(answer, 'DPoP') === 'use_dpop_nonce',
    '/v1/authz: a proof without a nonce is answered 401 WWW-Authenticate: DPoP error="use_dpop_nonce"',
    shown(answer),
  )
  let nonce = answer.headers['dpop-nonce']
  check(typeof nonce === 'string' && nonce.length > 0, '/v1/authz: ... with a DPoP-Nonce header', shown(answer))
  // A 200 may carry the next nonce (for the gateway to relay); the client takes it.
  const follow = (a) => {
    if (typeof a.headers['dpop-nonce'] === 'string') nonce = a.headers['dpop-nonce']
    return a
  }

  const proof = await dpop.generateProof(keyPair, htu, 'GET', nonce, token)
  const request = { authorization: `DPoP ${token}`, proofs: [proof] }
  answer = follow(await step('/v1/authz with the nonce', () => authz(request)))
  check(answer.status === 200, '/v1/authz: the retry with the nonce is answered 200', shown(answer))
  check(answer.headers['x-auth-subject'] === client.client_id, `/v1/authz: X-Auth-Subject ${client.client_id}`, shown(answer))
  check(answer.headers['x-auth-cnf-jkt'] === jkt, '/v1/authz: X-Auth-Cnf-Jkt is the thumbprint', shown(answer))

  // Everything that must not pass, each with a nonce that is good, so that each refusal is
  // for what it tests.
  const proofError = 'invalid_dpop_proof'
  async function refused(what, req, status, scheme, error) {
    const a = follow(await step(what, () => authz(req)))
    check(
      a.status === status && challengeError(a, scheme) === error,
      `/v1/authz refuses ${what}: ${status} ${scheme} error="${error}"`,
      shown(a),
    )
  }
  const otherKey = await oauth.generateKeyPair('ES256')
  const fresh = (opts = {}) =>
    dpop.generateProof(opts.key ?? keyPair, opts.htu ?? htu, opts.htm ?? 'GET', nonce, opts.token ?? token)

  await refused('the same proof replayed', request, 401, 'DPoP', proofError)
  await refused('a proof for another URI', { authorization: `DPoP ${token}`, proofs: [await fresh({ htu: `${origin}/orders/2` })] }, 401, 'DPoP', proofError)
  await refused('a proof for another origin', { authorization: `DPoP ${token}`, proofs: [await fresh({ htu: `${url}${path}` })] }, 401, 'DPoP', proofError)
  await refused('a proof for another method', { authorization: `DPoP ${token}`, proofs: [await fresh({ htm: 'POST' })] }, 401, 'DPoP', proofError)
  await refused('a proof by another key', { authorization: `DPoP ${token}`, proofs: [await fresh({ key: otherKey })] }, 401, 'DPoP', proofError)
  await refused("a proof whose ath is another token's", { authorization: `DPoP ${token}`, proofs: [await fresh({ token: other.access_token })] }, 401, 'DPoP', proofError)
  await refused('the DPoP-bound token as Bearer with a proof (a downgrade)', { authorization: `Bearer ${token}`, proofs: [await fresh()] }, 401, 'Bearer', 'invalid_token')
  await refused('the DPoP-bound token as Bearer without a proof (a downgrade)', { authorization: `Bearer ${token}` }, 401, 'Bearer', 'invalid_token')
  await refused('a DPoP request without a DPoP header', { authorization: `DPoP ${token}` }, 400, 'DPoP', 'invalid_request')
  await refused('a DPoP request with two DPoP headers', { authorization: `DPoP ${token}`, proofs: [await fresh(), await fresh()] }, 400, 'DPoP', 'invalid_request')
  const now = Math.floor(Date.now() / 1000)
  for (const [when, iat] of [['an hour ago', now - 3600], ['an hour ahead', now + 3600]]) {
    const crafted = await signedProof(keyPair, {
      iat,
      jti: crypto.randomUUID(),
      htm: 'GET',
      nonce,
      htu,
      ath: await ath(token),
    })
    await refused(`a proof whose iat is ${when}`, { authorization: `DPoP ${token}`, proofs: [crafted] }, 401, 'DPoP', proofError)
  }
  await refused(
    'an unbound token under DPoP',
    { authorization: `DPoP ${plain.access_token}`, proofs: [await fresh({ token: plain.access_token })] },
    401,
    'DPoP',
    'invalid_token',
  )

  // The same WebCrypto signing with iat now passes, so the refusals above were for the iat.
  const craftedNow = await signedProof(keyPair, {
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    htm: 'GET',
    nonce,
    htu,
    ath: await ath(token),
  })
  answer = follow(await step('/v1/authz with a proof signed here', () => authz({ authorization: `DPoP ${token}`, proofs: [craftedNow] })))
  check(answer.status === 200, '/v1/authz: a proof signed here with iat now is answered 200', shown(answer))
  // And a fresh proof by the dpop package still passes after all the refusals.
  answer = follow(await step('/v1/authz with a fresh proof', async () => authz({ authorization: `DPoP ${token}`, proofs: [await fresh()] })))
  check(
    answer.status === 200 && answer.headers['x-auth-cnf-jkt'] === jkt,
    '/v1/authz: a fresh proof still passes after the refusals',
    shown(answer),
  )
}

try {
  await main()
  console.log('oauth4webapi_dpop.mjs: all checks passed')
} catch (e) {
  console.log(`FAIL: ${e instanceof Failure ? e.message : describe(e)}`)
  process.exitCode = 1
}
