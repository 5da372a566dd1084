#!/usr/bin/env python3
"""Drives tessera's token endpoint (client credentials) with Python client libraries nobody
here wrote: authlib's OAuth2Session (client_secret_basic, client_secret_post,
private_key_jwt) and requests-oauth2client's OAuth2Client; every access token is verified
with PyJWT against tessera's JWKS as RFC 9068 asks. A client assertion used twice is refused.

Run by tests/oauth_clients.rs with the venv tests/oauth-clients/install.sh makes. Inputs come
from the environment, never the command line: TESSERA_URL (the issuer, e.g.
http://127.0.0.1:PORT) and TESSERA_CLIENTS, JSON:
  {"basic": {"client_id", "client_secret"}, "post": {...},
   "jwt": {"client_id", "private_jwk"}, "audience": "...", "scope": "..."}
Prints one line per check; exits 1 at the first failure, saying what was sent and answered.

`authlib_cc.py keygen DIR` makes the private_key_jwt client's ES256 key instead: DIR/client.jwk
(private, mode 0600) and DIR/client-jwks.json (the public set to register).
"""

import json
import os
import sys
import time
import uuid
from urllib.parse import parse_qs

import jwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from joserfc.jwk import ECKey
from requests_oauth2client import (
    ClientSecretBasic,
    OAuth2Client,
    PrivateKeyJwt,
)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TIMEOUT = 10


class Failure(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def check(cond, what, detail=""):
    if not cond:
        raise Failure(f"{what}: {detail}" if detail else what)
    ok(what)


def keygen(folder):
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    kid = "oauth-clients-" + uuid.uuid4().hex[:8]
    private = ECAlgorithm.to_jwk(key, as_dict=True)
    public = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    for jwk in (private, public):
        jwk.update({"kid": kid, "alg": "ES256", "use": "sig"})
    path = os.path.join(folder, "client.jwk")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(private, f)
    with open(os.path.join(folder, "client-jwks.json"), "w") as f:
        json.dump({"keys": [public]}, f)


def sent(resp):
    """What a request sent and got, secrets left out: the form's names, whether it had an
    Authorization header, and the answer."""
    if resp is None:
        return "no answer"
    req = resp.request
    body = req.body if isinstance(req.body, str) else (req.body or b"").decode()
    names = sorted(parse_qs(body))
    basic = "with" if "Authorization" in req.headers else "without"
    return (
        f"sent {req.method} {req.url} form {names} {basic} Authorization; "
        f"answered {resp.status_code} {resp.headers.get('content-type')} {resp.text}"
    )


class LongPrivateKeyJWT(PrivateKeyJWT):
    """authlib's PrivateKeyJWT signs assertions valid for an hour (sign_jwt_bearer_assertion's
    default expires_in), which tessera takes; the same signing for two hours, which it refuses."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(
            auth.client_secret,
            client_id=auth.client_id,
            token_endpoint=token_endpoint,
            claims=self.claims,
            header=self.headers,
            alg=self.alg,
            expires_in=7200,
        )


class Run:
    def __init__(self):
        self.url = os.environ["TESSERA_URL"]
        clients = json.loads(os.environ["TESSERA_CLIENTS"])
        self.basic = clients["basic"]
        self.post = clients["post"]
        self.jwt = clients["jwt"]
        self.audience = clients["audience"]
        self.scope = clients["scope"]
        self.jwk = self.jwt["private_jwk"]
        self.discovery = None
        self.token_url = None
        self.jwks = None

    def discover(self):
        url = f"{self.url}/.well-known/oauth-authorization-server"
        r = requests.get(url, timeout=TIMEOUT)
        check(r.status_code == 200, f"GET {url} answers 200", f"{r.status_code} {r.text}")
        d = r.json()
        self.discovery = d
        print(f"discovery document: {json.dumps(d, sort_keys=True)}", flush=True)
        check(d.get("issuer") == self.url, "discovery: issuer is TESSERA_URL", json.dumps(d))
        for field in ("token_endpoint", "jwks_uri"):
            check(isinstance(d.get(field), str), f"discovery: {field}", json.dumps(d))
        check(
            "client_credentials" in d.get("grant_types_supported", []),
            "discovery: grant_types_supported lists client_credentials",
            json.dumps(d),
        )
        methods = d.get("token_endpoint_auth_methods_supported", [])
        for m in ("client_secret_basic", "client_secret_post", "private_key_jwt"):
            check(m in methods, f"discovery: token_endpoint_auth_methods_supported lists {m}",
                  json.dumps(methods))
        check(
            "ES256" in d.get("token_endpoint_auth_signing_alg_values_supported", []),
            "discovery: token_endpoint_auth_signing_alg_values_supported lists ES256"
            " (RFC 8414 section 2: required with private_key_jwt)",
            json.dumps(d),
        )
        # authlib's RFC 8414 model: every member present is of the type the RFC gives.
        # response_types_supported (REQUIRED by RFC 8414 even without an authorization
        # endpoint) is the one member authlib rejects when empty, as a client-credentials-only
        # server may well publish it; that check is left out.
        metadata = AuthorizationServerMetadata(d)
        for key in metadata.REGISTRY_KEYS:
            if key == "response_types_supported":
                continue
            try:
                getattr(metadata, f"validate_{key}")()
            except ValueError as e:
                raise Failure(f"discovery: authlib RFC 8414 validation of {key}: {e}") from e
        ok("discovery: authlib's RFC 8414 metadata validation")
        self.token_url = d["token_endpoint"]
        self.jwks = jwt.PyJWKClient(d["jwks_uri"], cache_keys=True, timeout=TIMEOUT)

    def verify(self, who, access_token, client_id):
        """RFC 9068 section 4, with PyJWT against tessera's JWKS."""
        header = jwt.get_unverified_header(access_token)
        check(header.get("typ") == "at+jwt", f"{who}: header typ is at+jwt", json.dumps(header))
        key = self.jwks.get_signing_key_from_jwt(access_token)
        try:
            claims = jwt.decode(
                access_token,
                key.key,
                algorithms=["ES256"],
                audience=self.audience,
                issuer=self.url,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti", "sub", "client_id"],
                },
            )
        except jwt.PyJWTError as e:
            raise Failure(f"{who}: PyJWT refuses the access token: {e!r}") from e
        ok(f"{who}: PyJWT verifies the access token (ES256, iss, aud, exp, iat, jti)")
        check(
            claims["sub"] == client_id and claims["client_id"] == client_id,
            f"{who}: sub == client_id == {client_id}",
            json.dumps(claims),
        )
        check(claims.get("scope") == self.scope, f"{who}: scope is {self.scope!r}",
              json.dumps(claims))
        return claims

    def token_reply(self, who, token, answer):
        check(
            str(token.get("token_type", "")).lower() == "bearer",
            f"{who}: token_type Bearer",
            json.dumps(dict(token)),
        )
        check(
            isinstance(token.get("expires_in"), int) and token["expires_in"] > 0,
            f"{who}: expires_in is a positive integer",
            json.dumps(dict(token)),
        )
        check(token.get("scope") == self.scope, f"{who}: scope {self.scope!r} granted",
              json.dumps(dict(token)))
        if answer is not None:
            print(f"{who}: answered {answer.status_code} Content-Type "
                  f"{answer.headers.get('Content-Type')!r}, Cache-Control "
                  f"{answer.headers.get('Cache-Control')!r}, Pragma "
                  f"{answer.headers.get('Pragma')!r}", flush=True)
            cc = answer.headers.get("Cache-Control", "")
            check("no-store" in cc.lower(), f"{who}: Cache-Control: no-store (RFC 6749 5.1)",
                  repr(cc))

    def authlib(self, method, client_id, secret, auth=None):
        who = f"authlib {method}"
        session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method)
        if auth is not None:
            session.register_client_auth_method(auth)
        seen = {}

        def hook(resp):
            seen["resp"] = resp
            return resp

        session.register_compliance_hook("access_token_response", hook)
        try:
            token = session.fetch_token(
                self.token_url, grant_type="client_credentials", scope=self.scope,
                timeout=TIMEOUT,
            )
        except Exception as e:
            raise Failure(f"{who}: fetch_token failed: {e!r}; {sent(seen.get('resp'))}") from e
        ok(f"{who}: fetch_token(grant_type=client_credentials)")
        self.token_reply(who, token, seen.get("resp"))
        self.verify(who, token["access_token"], client_id)
        return seen.get("resp")

    def authlib_private_key_jwt(self):
        key = ECKey.import_key(self.jwk)
        kid = self.jwk.get("kid")
        client_id = self.jwt["client_id"]
        # Past tessera's limit (an hour): an assertion valid for two hours is refused.
        session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt")
        session.register_client_auth_method(LongPrivateKeyJWT(alg="ES256", headers={"kid": kid}))
        try:
            session.fetch_token(
                self.token_url, grant_type="client_credentials", scope=self.scope,
                timeout=TIMEOUT,
            )
            raise Failure(
                "authlib private_key_jwt: an assertion valid for 7200 s was accepted "
                "(tessera takes at most 3600 s)"
            )
        except Failure:
            raise
        except Exception as e:
            check(getattr(e, "error", None) == "invalid_client",
                  "authlib private_key_jwt: a two-hour assertion is refused "
                  f"(invalid_client: {getattr(e, 'description', '')})", repr(e))
        # authlib as it comes: an assertion valid for an hour.
        resp = self.authlib(
            "private_key_jwt", client_id, key,
            PrivateKeyJWT(alg="ES256", headers={"kid": kid}),
        )
        body = parse_qs(resp.request.body)
        claims = jwt.decode(body["client_assertion"][0], options={"verify_signature": False})
        check(
            claims["aud"] == self.token_url,
            f"authlib private_key_jwt: its assertion's aud is the token endpoint {self.token_url}",
            json.dumps(claims),
        )

    def requests_oauth2client(self):
        who = "requests-oauth2client client_secret_basic"
        client = OAuth2Client(
            token_endpoint=self.token_url,
            auth=ClientSecretBasic(self.basic["client_id"], self.basic["client_secret"]),
            testing=True,  # http loopback, not https
        )
        try:
            token = client.client_credentials(scope=self.scope, requests_kwargs={"timeout": TIMEOUT})
        except Exception as e:
            raise Failure(f"{who}: client_credentials failed: {e!r}") from e
        ok(f"{who}: client_credentials(scope={self.scope!r})")
        check(token.scope == self.scope, f"{who}: scope granted", repr(token.scope))
        check(token.expires_at is not None, f"{who}: expires_in given", repr(token))
        self.verify(who, token.access_token, self.basic["client_id"])

        who = "requests-oauth2client private_key_jwt"
        client = OAuth2Client(
            token_endpoint=self.token_url,
            auth=PrivateKeyJwt(self.jwt["client_id"], self.jwk, alg="ES256"),
            testing=True,
        )
        try:
            token = client.client_credentials(scope=self.scope, requests_kwargs={"timeout": TIMEOUT})
        except Exception as e:
            raise Failure(f"{who}: client_credentials failed: {e!r}") from e
        ok(f"{who}: client_credentials(scope={self.scope!r})")
        self.verify(who, token.access_token, self.jwt["client_id"])

    def replay(self):
        who = "assertion replay"
        client_id = self.jwt["client_id"]
        now = int(time.time())
        key = ECKey.import_key(self.jwk)
        assertion = private_key_jwt_sign(
            key, client_id=client_id, token_endpoint=self.token_url, alg="ES256",
            claims={"jti": str(uuid.uuid4()), "exp": now + 120},
            header={"kid": self.jwk.get("kid")},
        )
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        first = requests.post(self.token_url, data=form, timeout=TIMEOUT)
        check(first.status_code == 200, f"{who}: the first use is answered 200",
              f"{first.status_code} {first.text}")
        self.verify(who, first.json()["access_token"], client_id)
        second = requests.post(self.token_url, data=form, timeout=TIMEOUT)
        try:
            error = second.json().get("error")
        except ValueError:
            error = None
        check(
            second.status_code == 401 and error == "invalid_client",
            f"{who}: the second use is answered 401 invalid_client",
            f"{second.status_code} {second.headers.get('content-type')} {second.text}",
        )

    def wrong_secret(self):
        who = "wrong secret"
        r = requests.post(
            self.token_url,
            data={"grant_type": "client_credentials", "scope": self.scope},
            auth=(self.basic["client_id"], "tcs_not-the-secret"),
            timeout=TIMEOUT,
        )
        try:
            error = r.json().get("error")
        except ValueError:
            error = None
        check(
            r.status_code == 401 and error == "invalid_client",
            f"{who}: Basic with a wrong secret is answered 401 invalid_client",
            f"{r.status_code} {r.text}",
        )
        check(
            r.headers.get("WWW-Authenticate", "").lower().startswith("basic"),
            f"{who}: with WWW-Authenticate: Basic (RFC 6749 5.2)",
            repr(r.headers.get("WWW-Authenticate")),
        )


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
        return 0
    if len(sys.argv) != 1:
        print("usage: authlib_cc.py [keygen DIR] (inputs in TESSERA_URL, TESSERA_CLIENTS)",
              file=sys.stderr)
        return 2
    run = Run()
    try:
        run.discover()
        run.authlib("client_secret_basic", run.basic["client_id"], run.basic["client_secret"])
        run.authlib("client_secret_post", run.post["client_id"], run.post["client_secret"])
        run.authlib_private_key_jwt()
        run.requests_oauth2client()
        run.replay()
        run.wrong_secret()
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        return 1
    print("authlib_cc.py: all checks passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
