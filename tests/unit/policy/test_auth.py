"""Authentication units: credential locations, JWK decoding, htpasswd, the JWT validator's cache
and fetch decisions, DEFER in the chain, session tokens bound to an identity."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time

import bcrypt
import jwt
import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import CredentialLocation, HeaderLocation, JwksSource, NamedLocation
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import DEFER, LocalReply
from agentgateway.mcp.session import SessionCodec, SessionTokenError
from agentgateway.policy import jwks as jwks_module
from agentgateway.policy.chain import PolicyChain, run_from, run_sync
from agentgateway.policy.credentials import Location
from agentgateway.policy.htpasswd import apr1, parse_htpasswd
from agentgateway.policy.jwks import KeySet, compile_key_set, decode_jwk, decode_jwks
from agentgateway.policy.jwt_auth import JwtValidator, Provider, Rejected, Verified, bearer_challenge
from tests.support.idp import new_key, public_jwk


def ctx(headers=None, query=b"", path=b"/p"):
    return RequestCtx(
        b"GET",
        path + (b"?" + query if query else b""),
        path,
        query,
        b"h",
        headers or [],
        "1.1",
        True,
        None,
        False,
        False,
        "10.0.0.1",
        4000,
        b"http",
        0.0,
        "bind/1",
    )


# ---------------------------------------------------------------- locations


def test_header_location_prefix_is_case_insensitive_and_required():
    loc = Location.compile(None, "Bearer ", "x")
    assert loc.extract(ctx([(b"authorization", b"bearer  abc ")])) == "abc"
    assert loc.extract(ctx([(b"authorization", b"Basic abc")])) is None
    assert loc.extract(ctx([(b"authorization", b"Bearer ")])) is None
    c = ctx([(b"x", b"1"), (b"authorization", b"Bearer t"), (b"y", b"2")])
    loc.remove(c)
    assert c.headers == [(b"x", b"1"), (b"y", b"2")]
    plain = Location.compile(CredentialLocation(header=HeaderLocation(name="X-Api-Key")), "Bearer ", "x")
    assert plain.extract(ctx([(b"x-api-key", b"k")])) == "k"


def test_query_location_removes_only_its_parameter():
    loc = Location.compile(CredentialLocation(query_parameter=NamedLocation(name="tok en")), "", "x")
    c = ctx(query=b"a=1&tok+en=s%3Dcret&b=%20&tok%20en=again")
    assert loc.extract(c) == "s=cret"
    loc.remove(c)
    assert c.query == b"a=1&b=%20"
    assert c.target == b"/p?a=1&b=%20"
    only = ctx(query=b"tok+en=x")
    loc.remove(only)
    assert only.target == b"/p" and only.query == b""


def test_cookie_location():
    loc = Location.compile(CredentialLocation(cookie=NamedLocation(name="sid")), "", "x")
    c = ctx([(b"cookie", b'a=1; sid="tok"; b=2'), (b"cookie", b"sid=other")])
    assert loc.extract(c) == "tok"
    loc.remove(c)
    assert c.headers == [(b"cookie", b"a=1; b=2")]


def test_expression_location_reads_but_cannot_remove():
    loc = Location.compile(CredentialLocation(expression='request.headers["x-token"]'), "", "x")
    c = ctx([(b"x-token", b"t1")])
    assert loc.extract(c) == "t1"
    assert not loc.removable
    assert loc.extract(ctx()) is None


def test_location_needs_exactly_one_kind():
    with pytest.raises(ConfigError, match="exactly one"):
        Location.compile(CredentialLocation(), "", "p.location")


# ---------------------------------------------------------------- keys


def test_jwk_algorithms_follow_the_key_type():
    assert decode_jwk(public_jwk("r", new_key("RSA"))).algorithms == {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
    }
    assert decode_jwk(public_jwk("e", new_key("EC"))).algorithms == {"ES256"}
    assert decode_jwk(public_jwk("o", new_key("OKP"))).algorithms == {"EdDSA"}
    assert decode_jwk(public_jwk("r", new_key("RSA"), alg="PS256")).algorithms == {"PS256"}
    with pytest.raises(ValueError, match="does not fit"):
        decode_jwk(public_jwk("r", new_key("RSA"), alg="HS256"))
    with pytest.raises(ValueError, match="symmetric"):
        decode_jwk({"kty": "oct", "kid": "s", "k": "c2VjcmV0"})
    with pytest.raises(ValueError, match="kid"):
        decode_jwk({k: v for k, v in public_jwk("r", new_key("RSA")).items() if k != "kid"})


def test_private_jwk_yields_its_public_half():
    key = new_key("EC")
    private = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    private["kid"] = "p"
    decoded = decode_jwk(private)
    assert not hasattr(decoded.key, "private_numbers")


def test_jwks_skips_encryption_keys_and_reports_bad_ones():
    doc = {
        "keys": [
            public_jwk("a", new_key("EC")),
            {**public_jwk("b", new_key("EC")), "use": "enc"},
            {"kty": "x", "kid": "c"},
        ]
    }
    keys, problems = decode_jwks(doc)
    assert set(keys) == {"a"}
    assert len(problems) == 1 and "keys[2]" in problems[0]
    with pytest.raises(ValueError):
        decode_jwks({"nokeys": []})


def test_compile_key_set_inline_string_and_errors(tmp_path):
    doc = {"keys": [public_jwk("a", new_key("RSA"))]}
    assert set(compile_key_set(json.dumps(doc), None, "j").keys) == {"a"}
    (tmp_path / "k.json").write_text(json.dumps(doc))
    assert set(compile_key_set(JwksSource(file="k.json"), tmp_path, "j").keys) == {"a"}
    with pytest.raises(ConfigError, match=r"j\.file"):
        compile_key_set(JwksSource(file="missing.json"), tmp_path, "j")
    with pytest.raises(ConfigError, match="exactly one"):
        compile_key_set(JwksSource(file="a", url="http://x/"), None, "j")
    with pytest.raises(ConfigError, match="no signing key"):
        compile_key_set(JwksSource(keys=[]), None, "j")


# ---------------------------------------------------------------- validator


def _validator(**provider):
    key = new_key("RSA")
    key_set = KeySet({"k": decode_jwk(public_jwk("k", key))}, "test")
    return (
        key,
        key_set,
        JwtValidator([Provider(provider.pop("issuer", "iss"), provider.pop("audiences", None), key_set, None, "p")]),
    )


def test_cached_verdict_still_checks_expiry_and_drops_on_key_change():
    key, key_set, validator = _validator()
    token = jwt.encode({"iss": "iss", "sub": "s", "exp": time.time() + 100}, key, "RS256", headers={"kid": "k"})
    first = validator.check(token)
    assert isinstance(first, Verified) and first.identity == "jwt:iss s"
    assert validator.check(token) is first  # from the cache
    first.exp = time.time() - 3600  # as if time went by
    assert isinstance(validator.check(token), Rejected)
    again = validator.check(token)
    assert isinstance(again, Verified) and again is not first  # verified afresh (exp is real)
    key_set.version += 1  # the keys changed: cached verdicts are not trusted
    assert validator.check(token) is not again


def test_unknown_kid_asks_for_a_fetch_only_when_one_may_run():
    remote = jwks_module.RemoteKeySet("http://127.0.0.1:9/jwks", *_target())
    validator = JwtValidator([Provider("iss", None, remote, None, "p")])
    token = jwt.encode({"iss": "iss", "exp": time.time() + 60}, new_key("RSA"), "RS256", headers={"kid": "x"})
    assert validator.check(token) is None  # never fetched: fetch first
    remote.last_attempt = time.monotonic()  # a fetch just ran (and failed)
    verdict = validator.check(token)
    assert isinstance(verdict, Rejected) and verdict.status == 503  # nothing to check with: not the client's fault
    remote._loaded = True
    verdict = validator.check(token)
    assert isinstance(verdict, Rejected) and verdict.status == 401 and "unknown signing key" in verdict.reason


def _target():
    from agentgateway.policy.outbound import url_target

    return url_target("http://127.0.0.1:9/jwks", "x")


def test_fetch_failure_is_logged_and_rate_bounded(caplog):
    remote = jwks_module.RemoteKeySet("http://127.0.0.1:9/jwks", *_target())

    async def twice():
        await remote.fetch()
        await remote.fetch()  # within the interval: not attempted

    start = time.monotonic()
    asyncio.run(twice())
    assert not remote.loaded and remote.last_attempt >= start
    assert sum("not loaded" in r.message for r in caplog.records) == 1


def test_challenge_quotes_are_escaped():
    assert bearer_challenge(None) == b"Bearer"
    assert bearer_challenge('a "b" \\c') == b'Bearer error="invalid_token", error_description="a \'b\' /c"'


# ---------------------------------------------------------------- htpasswd


def test_apr1_matches_openssl_and_entries_verify():
    # openssl passwd -apr1 -salt abcdefgh 'secret pw'
    assert apr1(b"secret pw", b"abcdefgh") == b"$apr1$abcdefgh$hI0fYJTl3mI2IQqENIv8//"
    sha = "{SHA}" + base64.b64encode(hashlib.sha1(b"pw2").digest()).decode()
    hashed = bcrypt.hashpw(b"pw3", bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$")
    users, problems = parse_htpasswd(f"a:$apr1$abcdefgh$hI0fYJTl3mI2IQqENIv8//\nb:{sha}\nc:{hashed}\na:{sha}\n")
    assert problems == []
    assert users["a"].verify(b"secret pw") and not users["a"].verify(b"secret pX")
    assert users["b"].verify(b"pw2") and not users["b"].verify(b"pw3")
    assert users["c"].verify(b"pw3") and users["c"].slow


def test_htpasswd_refuses_unsupported_lines():
    _, problems = parse_htpasswd("# c\nold:ab01FAX.bQRSU\nbroken\nplain:$1$x$y\n")
    assert problems[0].startswith("line 2 (old): unsupported hash")
    assert problems[1] == "line 3: not user:hash"
    assert problems[2].startswith("line 4 (plain)")


# ---------------------------------------------------------------- chain and sessions


class _Deferring:
    kind = "jwtAuth"

    def __init__(self):
        self.calls = []

    def on_request(self, c):
        self.calls.append("sync")
        return DEFER

    async def on_request_async(self, c):
        self.calls.append("async")
        return None


class _Answer:
    kind = "directResponse"

    def on_request(self, c):
        return LocalReply.text(200, "done")


def test_defer_continues_in_the_async_half():
    policy = _Deferring()
    chain = PolicyChain([_Answer(), policy])
    assert chain.first_async == -1  # synchronous unless it defers
    assert run_sync(chain.request, ctx()) is DEFER
    reply = asyncio.run(run_from(chain, 0, ctx(), resume=True))
    assert reply is not None and reply.body == b"done\n"
    assert policy.calls == ["sync", "async"]
    policy.calls.clear()
    asyncio.run(run_from(chain, 0, ctx()))  # met again later in a chain already waiting
    assert policy.calls == ["sync", "async"]


def test_session_token_opens_only_for_its_identity():
    codec = SessionCodec(bytes(range(32)))
    token = codec.seal({"k": 1, "s": "x"}, "jwt:https://idp alice")
    assert codec.open(token, "jwt:https://idp alice")["s"] == "x"
    for other in ("jwt:https://idp bob", "", "jwt:https://idp alice\napiKey:00"):
        with pytest.raises(SessionTokenError):
            codec.open(token, other)
    anonymous = codec.seal({"k": 1, "s": "y"})
    assert codec.open(anonymous)["s"] == "y"
    with pytest.raises(SessionTokenError):
        codec.open(anonymous, "basic:ann")


def test_a_waiter_that_leaves_does_not_cancel_the_fetch():
    body = json.dumps({"keys": [public_jwk("late", new_key("EC"))]}).encode()
    served = []

    async def scenario():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            served.append(1)
            await asyncio.sleep(0.3)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        from agentgateway.policy.outbound import url_target

        remote = jwks_module.RemoteKeySet("u", *url_target(f"http://127.0.0.1:{port}/jwks", "x"))
        leaving = asyncio.create_task(remote.fetch())
        staying = asyncio.create_task(remote.fetch())
        await asyncio.sleep(0.05)
        leaving.cancel()  # its client went away
        await staying
        server.close()
        return remote

    remote = asyncio.run(scenario())
    assert remote.loaded and set(remote.keys) == {"late"} and served == [1]
