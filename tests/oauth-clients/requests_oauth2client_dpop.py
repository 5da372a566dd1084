#!/usr/bin/env python3
"""Drives tessera's DPoP support (RFC 9449) with requests-oauth2client, a client library
nobody here wrote: its OAuth2Client gets a DPoP-bound token from /token (client_secret_basic,
`dpop=True` with its own DPoPKey), meeting the server nonce challenge the way the library does
by itself (the first request answered 400 use_dpop_nonce, one retry with the nonce), and PyJWT
verifies the token against tessera's JWKS (cnf.jkt the key's RFC 7638 thumbprint).

Then the library's DPoPToken, as a `requests` auth handler, calls the API at the configured
[authz.dpop] origin and path through a transport adapter that plays nginx's auth_request: it
sends each request to tessera's forward-auth endpoint /v1/authz with X-Original-Method and
X-Original-URI and the client's Authorization and DPoP headers, and hands the answer back as
the API's. The proof's htu is thus the API's URL, as tessera builds it. The first call lacks a
nonce and is answered 401 use_dpop_nonce; the library takes the nonce and retries by itself.
A proof made with DPoPKey.proof() and sent by hand passes too; a replayed proof, the token as
Bearer (the library's BearerToken, and by hand with a proof), and another key's proof are
refused.

Run by tests/oauth_clients.rs with the venv tests/oauth-clients/install.sh makes. Inputs come
from the environment, never the command line: TESSERA_URL (the issuer, e.g.
http://127.0.0.1:PORT) and TESSERA_CLIENTS, JSON:
  {"dpop": {"client_id", "client_secret"}, "plain": {...}, "audience": "...", "scope": "...",
   "origin": "https://api.example", "path": "/orders/1"}
where "dpop" is registered --dpop-bound. Prints one line per check; exits 1 at the first
failure, saying what was sent and answered.
"""

import base64
import hashlib
import json
import os
import re
import sys
from urllib.parse import urlsplit

import jwt
import requests
from requests.adapters import HTTPAdapter
from requests_oauth2client import (
    BearerToken,
    ClientSecretBasic,
    DPoPKey,
    DPoPToken,
    OAuth2Client,
)

TIMEOUT = 10


class Failure(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def check(cond, what, detail=""):
    if not cond:
        raise Failure(f"{what}: {detail}" if detail else what)
    ok(what)


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unverified(token):
    """A JWT's header and claims, unverified."""
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def thumbprint(jwk):
    """RFC 7638 SHA-256 thumbprint of a public EC key, computed here."""
    members = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64u(hashlib.sha256(canonical).digest())


def challenge_error(resp, scheme):
    value = resp.headers.get("WWW-Authenticate", "")
    if not value.lower().startswith(scheme.lower() + " "):
        return None
    m = re.search(r'\berror="([^"]*)"', value)
    return m.group(1) if m else None


def shown(resp):
    h = resp.headers
    return (
        f"answered {resp.status_code}, WWW-Authenticate {h.get('WWW-Authenticate')!r}, "
        f"DPoP-Nonce {'given' if h.get('DPoP-Nonce') else 'none'}, "
        f"X-Auth-Subject {h.get('X-Auth-Subject')!r}, X-Auth-Cnf-Jkt {h.get('X-Auth-Cnf-Jkt')!r}"
    )


class Gateway(HTTPAdapter):
    """nginx's auth_request in front of the API: each request for the API goes to tessera's
    /v1/authz as GET, with the original method and URI in X-Original-Method and X-Original-URI
    and the client's Authorization and DPoP headers passed on; tessera's answer comes back as
    the answer to the request the client made (so that the library's DPoP nonce retry proofs
    the API's URL again)."""

    def __init__(self, authz_url):
        super().__init__()
        self.authz_url = authz_url
        self.exchanges = []

    def send(self, request, **kwargs):
        original = urlsplit(request.url)
        uri = original.path + (f"?{original.query}" if original.query else "")
        headers = {"X-Original-Method": request.method, "X-Original-URI": uri}
        for name in ("Authorization", "DPoP"):
            if name in request.headers:
                headers[name] = request.headers[name]
        forwarded = requests.Request("GET", self.authz_url, headers=headers).prepare()
        kwargs["proxies"] = {}
        kwargs["timeout"] = TIMEOUT
        resp = super().send(forwarded, **kwargs)
        self.exchanges.append((dict(headers), resp))
        resp.request = request
        resp.url = request.url
        return resp


class Run:
    def __init__(self):
        self.url = os.environ["TESSERA_URL"]
        clients = json.loads(os.environ["TESSERA_CLIENTS"])
        self.dpop = clients["dpop"]
        self.audience = clients["audience"]
        self.scope = clients["scope"]
        self.origin = clients["origin"]
        self.path = clients["path"]
        self.htu = f"{self.origin}{self.path}"
        self.authz_url = f"{self.url}/v1/authz"
        self.token_url = None
        self.jwks = None

    def discover(self):
        url = f"{self.url}/.well-known/oauth-authorization-server"
        r = requests.get(url, timeout=TIMEOUT)
        check(r.status_code == 200, f"GET {url} answers 200", f"{r.status_code} {r.text}")
        d = r.json()
        check(d.get("issuer") == self.url, "discovery: issuer is TESSERA_URL", json.dumps(d))
        check(
            "ES256" in d.get("dpop_signing_alg_values_supported", []),
            "discovery: dpop_signing_alg_values_supported lists ES256",
            json.dumps(d),
        )
        self.token_url = d["token_endpoint"]
        self.jwks = jwt.PyJWKClient(d["jwks_uri"], cache_keys=True, timeout=TIMEOUT)

    def client(self, seen):
        session = requests.Session()
        session.hooks["response"].append(lambda resp, *args, **kwargs: seen.append(resp))
        return OAuth2Client(
            token_endpoint=self.token_url,
            auth=ClientSecretBasic(self.dpop["client_id"], self.dpop["client_secret"]),
            session=session,
            testing=True,  # http loopback, not https
        )

    def token(self):
        who = "requests-oauth2client DPoP client_secret_basic"
        seen = []
        client = self.client(seen)
        key = DPoPKey.generate(alg="ES256")
        try:
            token = client.client_credentials(
                scope=self.scope, dpop=True, dpop_key=key, requests_kwargs={"timeout": TIMEOUT}
            )
        except Exception as e:
            answers = [f"{r.status_code} {r.text}" for r in seen]
            raise Failure(f"{who}: client_credentials(dpop=True) failed: {e!r}; {answers}") from e
        ok(f"{who}: client_credentials(dpop=True)")

        # The library met the nonce challenge by itself: two requests, the first refused.
        statuses = [r.status_code for r in seen]
        check(statuses == [400, 200], f"{who}: two token requests, answered 400 then 200",
              repr(statuses))
        first, second = seen
        check(first.json().get("error") == "use_dpop_nonce",
              f"{who}: the first answered use_dpop_nonce", first.text)
        nonce = first.headers.get("DPoP-Nonce")
        check(bool(nonce), f"{who}: ... with a DPoP-Nonce header", repr(dict(first.headers)))
        _, proof0 = unverified(first.request.headers["DPoP"])
        check("nonce" not in proof0, f"{who}: ... to a proof without a nonce", json.dumps(proof0))
        header1, proof1 = unverified(second.request.headers["DPoP"])
        check(
            proof1.get("nonce") == nonce and proof1.get("htm") == "POST"
            and proof1.get("htu") == self.token_url and header1.get("typ") == "dpop+jwt",
            f"{who}: the library's retry carries the nonce, htm POST, htu the token endpoint",
            json.dumps([header1, proof1]),
        )
        check(key.as_nonce == nonce, f"{who}: the DPoPKey keeps the authorization server's nonce")

        check(isinstance(token, DPoPToken), f"{who}: the library made a DPoPToken",
              type(token).__name__)
        check(token.token_type.lower() == "dpop", f"{who}: token_type DPoP", token.token_type)
        check(token.scope == self.scope, f"{who}: scope {self.scope!r} granted", repr(token.scope))
        jkt = thumbprint(key.public_jwk)
        check(key.dpop_jkt == jkt, f"{who}: the library's thumbprint is RFC 7638's", key.dpop_jkt)

        # RFC 9068 with PyJWT against tessera's JWKS, and the binding.
        header = jwt.get_unverified_header(token.access_token)
        check(header.get("typ") == "at+jwt", f"{who}: header typ is at+jwt", json.dumps(header))
        signing = self.jwks.get_signing_key_from_jwt(token.access_token)
        try:
            claims = jwt.decode(
                token.access_token, signing.key, algorithms=["ES256"], audience=self.audience,
                issuer=self.url,
                options={"require": ["iss", "aud", "exp", "iat", "jti", "sub", "client_id"]},
            )
        except jwt.PyJWTError as e:
            raise Failure(f"{who}: PyJWT refuses the access token: {e!r}") from e
        ok(f"{who}: PyJWT verifies the access token")
        check(claims.get("cnf", {}).get("jkt") == jkt,
              f"{who}: cnf.jkt is the key's RFC 7638 thumbprint", json.dumps(claims.get("cnf")))
        check(claims["sub"] == self.dpop["client_id"], f"{who}: sub is the client",
              json.dumps(claims))

        # The client is registered --dpop-bound: without a proof, no token.
        who = "requests-oauth2client client_secret_basic without DPoP"
        seen = []
        try:
            plain = self.client(seen).client_credentials(
                scope=self.scope, dpop=False, requests_kwargs={"timeout": TIMEOUT}
            )
            raise Failure(f"{who}: the --dpop-bound client got a token without a proof: "
                          f"{plain.token_type}")
        except Failure:
            raise
        except Exception as e:
            check(
                getattr(e, "error", None) == "invalid_dpop_proof" and seen
                and seen[-1].status_code == 400,
                f"{who}: the --dpop-bound client is refused (400 invalid_dpop_proof)",
                f"{e!r}; {[(r.status_code, r.text) for r in seen]}",
            )
        return token, key, jkt

    def authz(self, headers, method="GET"):
        """A request to /v1/authz sent by hand, as nginx sends it."""
        sent = {"X-Original-Method": method, "X-Original-URI": self.path, **headers}
        return requests.get(self.authz_url, headers=sent, timeout=TIMEOUT)

    def forward_auth(self, token, key, jkt):
        who = "requests-oauth2client DPoPToken through the gateway"
        gateway = Gateway(self.authz_url)
        api = requests.Session()
        api.trust_env = False
        api.mount(f"{self.origin}/", gateway)
        try:
            resp = api.get(self.htu, auth=token, timeout=TIMEOUT)
        except Exception as e:
            raise Failure(f"{who}: GET {self.htu} failed: {e!r}") from e
        check(len(gateway.exchanges) == 2, f"{who}: two requests reached /v1/authz",
              repr([(h.get("DPoP") is not None, r.status_code) for h, r in gateway.exchanges]))
        (sent0, answer0), (sent1, answer1) = gateway.exchanges
        check(
            answer0.status_code == 401 and challenge_error(answer0, "DPoP") == "use_dpop_nonce",
            f"{who}: the first proof (no nonce) is answered 401 DPoP error=\"use_dpop_nonce\"",
            shown(answer0),
        )
        nonce = answer0.headers.get("DPoP-Nonce")
        check(bool(nonce), f"{who}: ... with a DPoP-Nonce header", shown(answer0))
        check(key.rs_nonce == nonce, f"{who}: the library took the nonce and retried by itself",
              repr(key.rs_nonce))
        check(sent1.get("Authorization") == f"DPoP {token.access_token}",
              f"{who}: the library sent Authorization: DPoP <token>")
        _, claims = unverified(sent1["DPoP"])
        check(
            claims.get("htu") == self.htu and claims.get("htm") == "GET"
            and claims.get("nonce") == nonce
            and claims.get("ath") == b64u(hashlib.sha256(token.access_token.encode()).digest()),
            f"{who}: its proof names htu {self.htu}, htm GET, the nonce and the token's ath",
            json.dumps(claims),
        )
        check(resp.status_code == 200, f"{who}: the retry is answered 200", shown(resp))
        check(resp.headers.get("X-Auth-Subject") == self.dpop["client_id"],
              f"{who}: X-Auth-Subject {self.dpop['client_id']}", shown(resp))
        check(resp.headers.get("X-Auth-Cnf-Jkt") == jkt,
              f"{who}: X-Auth-Cnf-Jkt is the thumbprint", shown(resp))
        if resp.headers.get("DPoP-Nonce"):
            key.rs_nonce = resp.headers["DPoP-Nonce"]

        # The same proof again, as the gateway forwarded it.
        replay = self.authz({"Authorization": sent1["Authorization"], "DPoP": sent1["DPoP"]})
        check(
            replay.status_code == 401 and challenge_error(replay, "DPoP") == "invalid_dpop_proof",
            "/v1/authz refuses the library's proof replayed: 401 DPoP error=\"invalid_dpop_proof\"",
            shown(replay),
        )

        # The library's proof, made by calling DPoPKey.proof() for the API's URL, sent by hand.
        ath = b64u(hashlib.sha256(token.access_token.encode()).digest())
        proof = str(key.proof(htm="GET", htu=self.htu, ath=ath))
        resp = self.authz({"Authorization": f"DPoP {token.access_token}", "DPoP": proof})
        check(resp.status_code == 200 and resp.headers.get("X-Auth-Cnf-Jkt") == jkt,
              "/v1/authz: a proof made with DPoPKey.proof() and sent by hand passes",
              shown(resp))
        if resp.headers.get("DPoP-Nonce"):
            key.rs_nonce = resp.headers["DPoP-Nonce"]

        # Downgrades: the library's BearerToken through the gateway, and by hand with a proof.
        who = "requests-oauth2client BearerToken through the gateway"
        bearer = BearerToken(token.access_token)
        resp = api.get(self.htu, auth=bearer, timeout=TIMEOUT)
        check(
            resp.status_code == 401 and challenge_error(resp, "Bearer") == "invalid_token",
            f"{who}: the DPoP-bound token as Bearer is refused: 401 Bearer error=\"invalid_token\"",
            shown(resp),
        )
        resp = self.authz({
            "Authorization": f"Bearer {token.access_token}",
            "DPoP": str(key.proof(htm="GET", htu=self.htu, ath=ath)),
        })
        check(
            resp.status_code == 401 and challenge_error(resp, "Bearer") == "invalid_token",
            "/v1/authz refuses the DPoP-bound token as Bearer with a good proof: 401 Bearer "
            "error=\"invalid_token\"",
            shown(resp),
        )

        # Another DPoPKey's proof, with the nonce, for the same request.
        other = DPoPKey.generate(alg="ES256", rs_nonce=key.rs_nonce)
        resp = self.authz({
            "Authorization": f"DPoP {token.access_token}",
            "DPoP": str(other.proof(htm="GET", htu=self.htu, ath=ath)),
        })
        check(
            resp.status_code == 401 and challenge_error(resp, "DPoP") == "invalid_dpop_proof",
            "/v1/authz refuses another key's proof: 401 DPoP error=\"invalid_dpop_proof\"",
            shown(resp),
        )

        # And the library's own way still passes after the refusals.
        resp = api.get(self.htu, auth=token, timeout=TIMEOUT)
        check(resp.status_code == 200 and resp.headers.get("X-Auth-Cnf-Jkt") == jkt,
              "/v1/authz: the DPoPToken through the gateway still passes", shown(resp))


def main():
    if len(sys.argv) != 1:
        print("usage: requests_oauth2client_dpop.py (inputs in TESSERA_URL, TESSERA_CLIENTS)",
              file=sys.stderr)
        return 2
    run = Run()
    try:
        run.discover()
        token, key, jkt = run.token()
        run.forward_auth(token, key, jkt)
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    print("requests_oauth2client_dpop.py: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
