"""Attacks on the seams between listeners, policies and identities, through the real daemon.

Listener seams: several HTTPS listeners on one port, one of them asking for client certificates
(mTLS). The TLS handshake picks a listener by SNI; a client must not then reach another
listener's routes by naming its host in ``Host`` (HTTP/1.1) or ``:authority`` (HTTP/2): no SNI,
an unknown SNI, the lax listener's SNI (domain fronting), or a second authority on a reused
HTTP/2 connection (coalescing). As agentgateway (Gateway API GEP-1486): 421 Misdirected Request
when another listener of the port serves that host, 404 when none does.

Secrets the admin plane shows: credentials in the query strings of the config's URLs.

extAuthz answers: header names and values an authorizer copies from the caller cannot write
lines of their own into the upstream request or the answer.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.support.gateway import (
    AuthzServer,
    Gateway,
    ResponseReader,
    UpstreamServer,
    binds,
    free_port,
    python_stdio_target,
    stdio_target,
    wait_for,
)
from tests.support.http2 import RawH2Client
from tests.support.tcp_echo import TcpEchoServer


def _pem_pair(ca: trustme.CA, tmp: Path, name: str) -> dict[str, str]:
    cert = ca.issue_cert(name)
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    return {"cert": str(cert_path), "key": str(key_path)}


class Seams:
    """Port ``named``: listener ``lax`` (lax.test) and ``strict`` (strict.test, client
    certificates required). Port ``catchall``: ``open`` (no hostname, so it answers clients
    without SNI) and ``secure`` (secure.test, client certificates required). Port
    ``strict_first``: ``strict`` first (the default), then ``lax``."""

    def __init__(self, named: int, catchall: int, strict_first: int, ca: trustme.CA, client: trustme.LeafCert) -> None:
        self.named = named
        self.catchall = catchall
        self.strict_first = strict_first
        self.ca = ca
        self.client = client

    def context(self, with_cert: bool = False, alpn: str = "http/1.1") -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        # Certificates are checked by name where a test names a server; without SNI there is
        # no name to check (the point of the attack).
        ctx.check_hostname = False
        ctx.set_alpn_protocols([alpn])
        if with_cert:
            self.client.configure_cert(ctx)
        return ctx

    def get(self, port: int, sni: str | None, host: str, with_cert: bool = False) -> tuple[int, str | None]:
        """The status of ``GET /echo`` with this SNI and ``Host``, and the upstream that answered."""
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with self.context(with_cert).wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(f"GET /echo HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            status, headers, _ = ResponseReader(tls).read()
        return status, headers.get("x-upstream")


@pytest.fixture(scope="module")
def seams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seams]:
    tmp: Path = tmp_path_factory.mktemp("attack-surfaces-seams")
    procs: list[Any] = []
    try:
        server_ca, client_ca = trustme.CA(), trustme.CA()
        client_ca.cert_pem.write_to_path(str(tmp / "clients.pem"))
        lax, strict = UpstreamServer(tmp, "lax"), UpstreamServer(tmp, "strict")
        procs += [lax, strict]

        def listener(name: str, hostname: str | None, up: UpstreamServer, mtls: bool) -> dict[str, Any]:
            tls = _pem_pair(server_ca, tmp, hostname or "open.test")
            if mtls:
                tls["root"] = str(tmp / "clients.pem")
            out: dict[str, Any] = {
                "name": name,
                "protocol": "HTTPS",
                "tls": tls,
                "routes": [{"backends": [{"host": up.address}]}],
            }
            if hostname:
                out["hostname"] = hostname
            return out

        named, catchall, strict_first = free_port(), free_port(), free_port()
        config = {
            "binds": [
                {
                    "port": named,
                    "listeners": [
                        listener("lax", "lax.test", lax, False),
                        listener("strict", "strict.test", strict, True),
                    ],
                },
                {
                    "port": catchall,
                    "listeners": [
                        listener("open", None, lax, False),
                        listener("secure", "secure.test", strict, True),
                    ],
                },
                {
                    "port": strict_first,
                    "listeners": [
                        listener("strict", "strict.test", strict, True),
                        listener("lax", "lax.test", lax, False),
                    ],
                },
            ]
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, config))
        yield Seams(named, catchall, strict_first, server_ca, client_ca.issue_cert("client.test"))
    finally:
        for proc in reversed(procs):
            proc.stop()


def test_each_listener_serves_its_own_name(seams: Seams) -> None:
    assert seams.get(seams.named, "lax.test", "lax.test") == (200, "lax")
    assert seams.get(seams.named, "strict.test", "strict.test", with_cert=True) == (200, "strict")
    assert seams.get(seams.catchall, None, "anything.test") == (200, "lax")
    assert seams.get(seams.catchall, "secure.test", "secure.test", with_cert=True) == (200, "strict")


@pytest.mark.parametrize(
    "sni",
    [None, "lax.test", "unknown.test", "LAX.test"],
    ids=["no-sni", "lax-sni", "unknown-sni", "upper-case-sni"],
)
@pytest.mark.parametrize("host", ["strict.test", "STRICT.test.", "strict.test:443"])
def test_the_strict_listener_is_not_reached_through_the_lax_handshake(seams: Seams, sni: str | None, host: str) -> None:
    """The handshake was the lax listener's (no client certificate asked for): the strict
    listener's host is misdirected there, whatever its spelling."""
    assert seams.get(seams.named, sni, host) == (421, None)


@pytest.mark.parametrize("sni", [None, "open.test"], ids=["no-sni", "catch-all-sni"])
def test_the_catch_all_listener_does_not_front_for_the_strict_one(seams: Seams, sni: str | None) -> None:
    assert seams.get(seams.catchall, sni, "secure.test") == (421, None)


def test_an_absolute_form_target_names_the_host_too(seams: Seams) -> None:
    """``GET https://strict.test/echo`` with ``Host: lax.test`` on the lax handshake: the target's
    authority is the request's host (RFC 9112 §3.2.2), so it is misdirected as well."""
    raw = socket.create_connection(("127.0.0.1", seams.named), timeout=5)
    with seams.context().wrap_socket(raw, server_hostname="lax.test") as tls:
        tls.sendall(b"GET https://strict.test/echo HTTP/1.1\r\nHost: lax.test\r\nConnection: close\r\n\r\n")
        status, headers, _ = ResponseReader(tls).read()
    assert (status, headers.get("x-upstream")) == (421, None)


def test_a_request_without_host_is_served_by_the_handshakes_listener(seams: Seams) -> None:
    """HTTP/1.0 may omit Host: it names no other listener, so the SNI's serves it."""
    for sni, with_cert, expected in (("lax.test", False, "lax"), ("strict.test", True, "strict")):
        raw = socket.create_connection(("127.0.0.1", seams.named), timeout=5)
        with seams.context(with_cert).wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"GET /echo HTTP/1.0\r\n\r\n")
            status, headers, _ = ResponseReader(tls).read()
        assert (status, headers.get("x-upstream")) == (200, expected)


@pytest.mark.parametrize("port", ["named", "catchall", "strict_first"])
def test_a_listener_that_is_not_the_default_still_requires_its_client_certificate(seams: Seams, port: str) -> None:
    """OpenSSL keeps the first context's certificate request when SNI switches to another
    listener's: strict.test (not the port's default) asked for no certificate at all. Without one
    it is not served (421); a certificate from another CA fails the handshake; the lax listener
    takes clients with and without the mTLS listener's certificate, also when the mTLS listener is
    the port's default (whose certificate request every handshake started with)."""
    number = {"named": seams.named, "catchall": seams.catchall, "strict_first": seams.strict_first}[port]
    strict, lax = ("secure.test", "open.test") if port == "catchall" else ("strict.test", "lax.test")
    assert seams.get(number, strict, strict) == (421, None)
    assert seams.get(number, strict, strict, with_cert=True) == (200, "strict")
    stranger = ssl.create_default_context()
    seams.ca.configure_trust(stranger)
    stranger.check_hostname = False
    trustme.CA().issue_cert("stranger.test").configure_cert(stranger)
    raw = socket.create_connection(("127.0.0.1", number), timeout=5)
    with pytest.raises((ssl.SSLError, ConnectionError)), stranger.wrap_socket(raw, server_hostname=strict) as tls:
        tls.sendall(f"GET /echo HTTP/1.1\r\nHost: {strict}\r\n\r\n".encode())
        ResponseReader(tls).read()
    raw.close()
    assert seams.get(number, lax, lax) == (200, "lax")
    assert seams.get(number, lax, lax, with_cert=True) == (200, "lax")


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3], ids=["tls1.2", "tls1.3"])
def test_a_resumed_session_does_not_skip_the_client_certificate(seams: Seams, version: ssl.TLSVersion) -> None:
    """TLS session resumption: the listeners of a port share one session cache and ticket key
    (OpenSSL keeps the first context's), so a session made with the lax listener (no client
    certificate) resumes with the SNI of the strict one, and a resumed handshake asks for no
    certificate. A request to a listener that requires one is answered only on a connection that
    carries one (421 otherwise); a session made with a certificate still resumes."""

    def request(ctx: ssl.SSLContext, sni: str, session: ssl.SSLSession | None) -> tuple[int, str | None, Any, bool]:
        raw = socket.create_connection(("127.0.0.1", seams.named), timeout=5)
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as tls:
            tls.sendall(f"GET /echo HTTP/1.1\r\nHost: {sni}\r\n\r\n".encode())
            status, headers, _ = ResponseReader(tls).read()
            return status, headers.get("x-upstream"), tls.session, tls.session_reused

    lax_ctx = seams.context()
    lax_ctx.maximum_version = version
    status, _, lax_session, _ = request(lax_ctx, "lax.test", None)
    assert status == 200
    status, upstream, _, _ = request(lax_ctx, "strict.test", lax_session)
    assert (status, upstream) == (421, None)
    strict_ctx = seams.context(with_cert=True)
    strict_ctx.maximum_version = version
    status, _, strict_session, _ = request(strict_ctx, "strict.test", None)
    assert status == 200
    status, upstream, _, reused = request(strict_ctx, "strict.test", strict_session)
    assert (status, upstream) == (200, "strict") and reused


def test_a_host_no_listener_takes_is_404(seams: Seams) -> None:
    assert seams.get(seams.named, "lax.test", "other.test") == (404, None)


def test_http2_does_not_coalesce_another_listener_onto_a_connection(seams: Seams) -> None:
    """One HTTP/2 connection made for lax.test: a stream for strict.test gets 421 (the client
    opens a connection of its own for it, RFC 9113 §9.1.2); the connection serves on."""
    ctx = seams.context(alpn="h2")
    for sni in ("lax.test", None):
        with RawH2Client(seams.named, tls=ctx, server_name=sni) as client:  # type: ignore[arg-type]
            assert client.fetch("/echo", authority="lax.test").status == 200
            misdirected = client.fetch("/echo", authority="strict.test")
            assert misdirected.status == 421 and "x-upstream" not in misdirected.headers
            assert client.fetch("/echo", authority="lax.test").status == 200


# ---------------------------------------------------------------- secrets the admin plane shows

QUERY_SECRETS = {
    "mcp": "mcp-query-key-7f3a91c2",
    "jwks": "jwks-query-token-5b8e04d6",
    "sas": "sas-signature-c41d77e0",
    "header": "partner-token-0d41b9e6",
}


def test_credentials_in_url_query_strings_are_not_shown(gateway: Any) -> None:
    """A key passed in a URL's query (``?api_key=``, ``&access_token=``, a signed URL's ``sig=``)
    is a secret like a URL's password: /config_dump, the /ui page and the config editor show
    ``<redacted>`` for it, other parameters stay readable, and an edit that keeps the redacted
    URL gets the real one back. So is a header a route sets whose name says it is a credential
    (``X-Partner-Token``), not only the well-known ones (``authorization``, ``x-api-key``)."""
    port = free_port()
    mcp_url = f"http://127.0.0.1:1/mcp?client=visible-param&API_KEY={QUERY_SECRETS['mcp']}"
    jwks_url = f"http://127.0.0.1:1/jwks.json?access-token={QUERY_SECRETS['jwks']}"
    sas_url = f"http://127.0.0.1:1/sse?sv=2024&sig={QUERY_SECRETS['sas']}"
    config = {
        "binds": [
            {
                "port": port,
                "listeners": [
                    {
                        "routes": [
                            {
                                "matches": [{"path": {"pathPrefix": "/mcp"}}],
                                "policies": {
                                    "jwtAuth": {"issuer": "https://idp.test", "jwks": {"url": jwks_url}},
                                    # a header named as a credential, though not a well-known one
                                    "requestHeaderModifier": {
                                        "set": {"X-Partner-Token": QUERY_SECRETS["header"], "x-team": "visible-team"}
                                    },
                                },
                                "backends": [
                                    {
                                        "mcp": {
                                            "targets": [
                                                {"name": "query", "mcp": {"host": mcp_url}},
                                                {"name": "signed", "sse": {"host": sas_url}},
                                            ]
                                        }
                                    }
                                ],
                            }
                        ]
                    }
                ],
            }
        ]
    }
    gw = gateway(config)
    marker = {"x-agentgateway-admin": "1"}
    dump = httpx.get(gw.admin_url + "/config_dump")
    editor = httpx.get(gw.admin_url + "/ui/api/config").json()
    shown = {"config_dump": dump.text, "ui": httpx.get(gw.admin_url + "/ui").text, "editor": editor["text"]}
    for where, text in shown.items():
        for name, secret in QUERY_SECRETS.items():
            assert secret not in text, (where, name)
    assert "client=visible-param&API_KEY=<redacted>" in dump.text and "sv=2024&sig=<redacted>" in dump.text
    assert "visible-team" in dump.text
    # The editor's view, sent back as it is, is the running config (the secrets put back).
    check = httpx.post(gw.admin_url + "/ui/api/config/validate", json={"text": editor["text"]}, headers=marker)
    assert check.status_code == 200 and check.json()["valid"] is True and check.json()["diff"] == ""


# ---------------------------------------------------------------- extAuthz answers


@pytest.fixture(scope="module")
def reflecting_authz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A gateway whose route asks a gRPC authorizer (tests/support/extauthz.py) that copies a
    "claim" of the caller into a request header and a response header, as one that puts a token's
    ``name`` claim in ``x-authz-user`` does; its base URL."""
    tmp: Path = tmp_path_factory.mktemp("attack-surfaces-authz")
    procs: list[Any] = []
    try:
        up = UpstreamServer(tmp, "up")
        procs.append(up)
        authz = AuthzServer(tmp)
        procs.append(authz)
        authz_port = authz.port
        port = free_port()
        policies = {"extAuthz": {"host": f"127.0.0.1:{authz_port}", "protocol": {"grpc": {}}}}
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        procs.append(Gateway(gw_dir, binds(port, [{"policies": policies, "backends": [{"host": up.address}]}])))
        yield f"http://127.0.0.1:{port}"
    finally:
        for proc in reversed(procs):
            proc.stop()


def _authz_get(base: str, decision: str, claim: str, name: str | None = None) -> httpx.Response:
    headers = {"x-authz": decision, "x-claim": json.dumps(claim)}
    if name is not None:
        headers["x-claim-name"] = json.dumps(name)
    return httpx.get(f"{base}/echo", headers=headers, timeout=10)


def test_an_authorizer_answer_sets_headers_as_given(reflecting_authz: str) -> None:
    r = _authz_get(reflecting_authz, "reflect", "alice smith\t(ops)")
    assert r.status_code == 200 and r.headers["x-authz-resp"] == "alice smith\t(ops)"
    assert ["x-authz-user", "alice smith\t(ops)"] in r.json()["headers"]


@pytest.mark.parametrize(
    ("claim", "name"),
    [
        ("bob\r\nx-admin: true", None),
        ("bob\nx-admin: true", None),
        ("bob\rx-admin: true", None),
        ("bob\x00x-admin: true", None),
        ("bob\x0bx-admin: true", None),
        ("true", "x-user: bob\r\nx-admin"),
        ("true", "x-admin true"),
        ("true", "x-admin:"),
        ("true", "x-\u00e9"),
        ("true", ""),
    ],
    ids=["crlf", "lf", "cr", "nul", "vt", "name-crlf", "name-space", "name-colon", "name-non-ascii", "name-empty"],
)
def test_an_authorizer_answer_cannot_inject_header_lines(reflecting_authz: str, claim: str, name: str | None) -> None:
    """What an authorizer copies from a caller (a claim with CR/LF, a control character, a name
    that is no token) would write lines of the caller's choice into the upstream request (request
    smuggling) and into the answer (response splitting): the answer is not used, the check
    fails (closed by default, 403)."""
    r = _authz_get(reflecting_authz, "reflect", claim, name)
    assert r.status_code == 403 and r.text == "external authorization failed\n"
    assert "x-admin" not in r.headers and "x-authz-resp" not in r.headers


def test_an_authorizer_denial_cannot_split_the_answer(reflecting_authz: str) -> None:
    r = _authz_get(reflecting_authz, "deny-reflect", "no\r\nset-cookie: session=attacker")
    assert r.status_code == 403 and "set-cookie" not in r.headers and "x-reason" not in r.headers


# ---------------------------------------------------------------- values computed from identities


def test_a_claim_cannot_inject_header_lines_through_a_transformation(gateway: Any, upstream: Any, idp: Any) -> None:
    """``transformations`` that copy a token claim into a header (``x-user-name: jwt.name``): a
    claim the user chose at the identity provider (a display name with CR/LF, a NUL) must not
    become header lines of its own upstream or in the answer. Such a value is no value: the header
    is left as it was (as for an expression that fails)."""
    up = upstream()
    port = free_port()
    policies = {
        "jwtAuth": {"mode": "strict", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
        "transformations": {
            "request": {"set": {"x-user-name": "jwt.name"}, "add": {"x-user-tag": "jwt.name"}},
            "response": {"set": {"x-user-name": "jwt.name"}},
        },
    }
    gateway(binds(port, [{"policies": policies, "backends": [{"host": up.address}]}]))

    def call(name: str) -> httpx.Response:
        token = idp.mint(name=name)
        return httpx.get(f"http://127.0.0.1:{port}/echo", headers={"authorization": f"Bearer {token}"}, timeout=10)

    r = call("Alice Smith")
    assert r.status_code == 200 and r.headers["x-user-name"] == "Alice Smith"
    assert ["x-user-name", "Alice Smith"] in r.json()["headers"]
    for name in ("bob\r\nx-admin: true", "bob\nx-admin: true", "bob\rx-admin: true", "bob\x00x-admin: true"):
        r = call(name)
        assert r.status_code == 200, name
        seen = [k for k, _ in r.json()["headers"]]
        assert "x-admin" not in seen and "x-user-name" not in seen and "x-user-tag" not in seen, name
        assert "x-admin" not in r.headers and "x-user-name" not in r.headers, name


def test_a_rate_limit_service_answer_cannot_inject_or_reframe(gateway: Any, upstream: Any, rls: Any) -> None:
    """The request headers a rate limit service adds (``request_headers_to_add``) are checked as
    an authorizer's: one with CR/LF in its value, or a framing header (``transfer-encoding``,
    ``content-length``: a second framing of the body upstream), is dropped; the others apply."""
    up = upstream()
    service = rls(
        limit=100,
        headers={
            "x-rls-user": "seen",
            "x-rls-note": "bob\r\nx-admin: true",
            "transfer-encoding": "chunked",
            "content-length": "0",
            "x-rls bad": "1",
        },
    )
    port = free_port()
    descriptors = [{"entries": [{"key": "user", "value": 'request.headers["x-user"]'}]}]
    policies = {"remoteRateLimit": {"domain": "api", "host": service.address, "descriptors": descriptors}}
    gateway(binds(port, [{"policies": policies, "backends": [{"host": up.address}]}]))
    r = httpx.post(f"http://127.0.0.1:{port}/echo", headers={"x-user": "a"}, content=b"hello", timeout=10)
    assert r.status_code == 200 and r.headers["x-rls"] == "checked"
    seen = r.json()
    names = [k for k, _ in seen["headers"]]
    assert ["x-rls-user", "seen"] in seen["headers"]
    assert "x-admin" not in names and "x-rls-note" not in names and "transfer-encoding" not in names
    assert names.count("content-length") == 1 and seen["body_length"] == 5 and not seen["chunked"]


def test_redis_rate_limit_keys_of_two_clients_do_not_collide(gateway: Any, upstream: Any, redis_server: Any) -> None:
    """A Redis counter is keyed by its descriptor's entries: values with the separators in them
    (``|``, ``=``, ``%``) must not let one client's entries spell another's key (and spend its
    limit, or escape their own by landing on an idle one)."""
    up = upstream()
    redis = redis_server()
    limit = {
        "domain": "api",
        "redis": {"url": redis.url},
        "descriptors": [
            {
                "entries": [
                    {"key": "org", "value": 'request.headers["x-org"]'},
                    {"key": "user", "value": 'request.headers["x-user"]'},
                ],
                "limit": {"requestsPerUnit": 2, "unit": "day"},
            }
        ],
    }
    port = free_port()
    gateway(binds(port, [{"policies": {"remoteRateLimit": limit}, "backends": [{"host": up.address}]}]))
    url = f"http://127.0.0.1:{port}/echo"
    victim = {"x-org": "acme", "x-user": "bob|user=x"}
    attacker = {"x-org": "acme|user=bob", "x-user": "x"}
    spelled = {"x-org": "acme%7Cuser%3Dbob", "x-user": "x"}  # the escaped spelling, as a value
    assert [httpx.get(url, headers=attacker).status_code for _ in range(3)] == [200, 200, 429]
    assert [httpx.get(url, headers=spelled).status_code for _ in range(3)] == [200, 200, 429]
    assert httpx.get(url, headers=victim).status_code == 200


def test_secrets_from_the_environment_are_not_shown(gateway: Any, upstream: Any) -> None:
    """``${INTERNAL_TOKEN}`` in a field the schema does not mark as secret (a header a route sets
    under a name of its own): a variable named as a secret (``…TOKEN``, ``…_KEY``, ``…SECRET``,
    ``…PASSWORD``) is one wherever the config uses it, in /config_dump and the /ui page; other
    variables are shown expanded."""
    up = upstream()
    port = free_port()
    env = {
        "INTERNAL_TOKEN": "env-token-5e1d9a7b",
        "PARTNER_API_KEY": "env-apikey-77c0d3e1",
        "TEAM_NAME": "platform-team",
    }
    headers = {"x-internal": "${INTERNAL_TOKEN}", "x-partner": "k=${PARTNER_API_KEY}", "x-team": "$TEAM_NAME"}
    route = {"policies": {"requestHeaderModifier": {"set": headers}}, "backends": [{"host": up.address}]}
    config = binds(port, [route])
    gw = gateway(config, env=env)
    seen = httpx.get(f"http://127.0.0.1:{port}/echo", timeout=10).json()["headers"]
    assert ["x-internal", env["INTERNAL_TOKEN"]] in seen and ["x-partner", "k=" + env["PARTNER_API_KEY"]] in seen
    dump = httpx.get(gw.admin_url + "/config_dump").text
    page = httpx.get(gw.admin_url + "/ui").text
    for where, text in (("config_dump", dump), ("ui", page)):
        assert env["INTERNAL_TOKEN"] not in text and env["PARTNER_API_KEY"] not in text, where
    assert "platform-team" in dump and "k=<redacted>" in dump


# ---------------------------------------------------------------- MCP sessions across routes


def _sse_session(port: int, path: str, headers: dict[str, str]) -> tuple[socket.socket, str]:
    """An HTTP+SSE (2024-11-05) session opened on ``path``: its stream and its message endpoint."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    s.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\naccept: text/event-stream\r\n{lines}\r\n".encode())
    data = b""
    while b"sessionId=" not in data or b"\n\n" not in data.split(b"sessionId=", 1)[1]:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data
    return s, data.split(b"data: ", 1)[1].split(b"\n", 1)[0].decode()


def test_an_sse_session_is_used_only_through_its_own_route(gateway: Any) -> None:
    """The HTTP+SSE message endpoint names the session in its query (``?sessionId=``). A client
    must not post a session of route ``guarded`` (whose ``authorization`` every request passes)
    to another MCP route's endpoint: the message would reach guarded's servers past its policies.
    Another route does not know the session (404), nor a streamable session's id."""
    port = free_port()
    target = {"name": "alpha", "stdio": python_stdio_target("alpha", "agentgateway.mcp.demo_server")["stdio"]}
    routes = [
        {
            "name": "guarded",
            "matches": [{"path": {"pathPrefix": "/guarded"}}],
            "policies": {"authorization": {"rules": ['request.headers["x-allowed"] == "yes"']}},
            "backends": [{"mcp": {"targets": [target]}}],
        },
        {"name": "open", "matches": [{"path": {"pathPrefix": "/open"}}], "backends": [{"mcp": {"targets": [target]}}]},
    ]
    gateway(binds(port, routes))
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    stream, endpoint = _sse_session(port, "/guarded", {"x-allowed": "yes"})
    with stream:
        session = endpoint.split("sessionId=", 1)[1]
        base = f"http://127.0.0.1:{port}"
        assert httpx.post(f"{base}{endpoint}", json=init, timeout=10).status_code == 403  # its policies hold
        r = httpx.post(f"{base}/open?sessionId={session}", json=init, timeout=10)
        assert r.status_code == 404, r.text
        ok = httpx.post(f"{base}{endpoint}", json=init, headers={"x-allowed": "yes"}, timeout=10)
        assert ok.status_code == 202
    # A streamable HTTP session (Mcp-Session-Id): every inline MCP backend is labelled "mcp", and
    # the session must still not continue on the other route.
    accept = {"accept": "application/json, text/event-stream"}
    init["params"]["protocolVersion"] = "2025-06-18"  # type: ignore[index]
    r = httpx.post(f"{base}/guarded", json=init, headers={**accept, "x-allowed": "yes"}, timeout=20)
    assert r.status_code == 200, r.text
    session_headers = {**accept, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    r = httpx.post(f"{base}/open", json=listing, headers=session_headers, timeout=10)
    assert r.status_code == 404, r.text
    r = httpx.post(f"{base}/guarded", json=listing, headers={**session_headers, "x-allowed": "yes"}, timeout=10)
    assert r.status_code == 200 and "echo" in r.text


def test_a_client_cannot_speak_for_the_gateway_to_the_authorizer(
    gateway: Any, upstream: Any, idp: Any, authz: Any
) -> None:
    """``addRequestHeaders: {x-user: jwt.sub}`` tells the authorizer who the gateway proved the
    caller is. When the expression has no value (an anonymous caller under ``jwtAuth`` optional),
    the client's own ``x-user`` (passed by ``includeRequestHeaders``) must not reach the
    authorizer in its place: the gateway's names carry only the gateway's values."""
    up = upstream()
    svc = authz("http")
    authz_port = svc.port
    port = free_port()
    policies = {
        "jwtAuth": {"mode": "optional", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
        "extAuthz": {
            "host": f"127.0.0.1:{authz_port}",
            "includeRequestHeaders": ["x-authz", "x-user"],
            "protocol": {"http": {"addRequestHeaders": {"x-user": "jwt.sub"}}},
        },
    }
    gateway(binds(port, [{"policies": policies, "backends": [{"host": up.address}]}]))
    url = f"http://127.0.0.1:{port}/echo"
    anonymous = httpx.get(url, headers={"x-authz": "allow-json", "x-user": "admin"}, timeout=10)
    bearer = {"authorization": f"Bearer {idp.mint(sub='alice')}"}
    signed = httpx.get(url, headers={"x-authz": "allow-json", "x-user": "admin", **bearer}, timeout=10)
    assert anonymous.status_code == 200 and signed.status_code == 200
    seen = [json.loads(line[6:])["headers"] for line in svc.output().splitlines() if line.startswith("CHECK ")]
    assert "x-user" not in seen[0], seen[0]
    assert seen[1]["x-user"] == "alice"


def test_a_header_the_gateway_computes_is_never_the_clients(gateway: Any, upstream: Any, idp: Any) -> None:
    """``transformations`` ``set``/``add: {x-user: jwt.sub}`` under ``jwtAuth`` optional: for an
    anonymous caller the expression has no value, and the client's own ``x-user: admin`` must not
    reach the upstream as if the gateway had set it (agentgateway removes the header when the
    expression fails). A body computed from the token is empty then, not the client's."""
    up = upstream()
    port = free_port()
    policies = {
        "jwtAuth": {"mode": "optional", "issuer": idp.issuer, "jwks": {"url": idp.jwks_url}},
        "transformations": {
            "request": {"set": {"x-user": "jwt.sub"}, "add": {"x-groups": "jwt.groups"}, "body": "jwt.sub"}
        },
    }
    gateway(binds(port, [{"policies": policies, "backends": [{"host": up.address}]}]))
    url = f"http://127.0.0.1:{port}/echo"
    forged = {"x-user": "admin", "x-groups": "admins", "X_User": "admin"}
    seen = httpx.post(url, headers=forged, content=b"forged-body", timeout=10).json()
    names = [k.lower() for k, _ in seen["headers"]]
    assert "x-user" not in names and "x-groups" not in names and "x_user" not in names, seen["headers"]
    assert seen["body_length"] == 0
    bearer = {"authorization": f"Bearer {idp.mint(sub='alice', groups='ops')}"}
    seen = httpx.post(url, headers={**forged, **bearer}, content=b"forged-body", timeout=10).json()
    assert ["x-user", "alice"] in seen["headers"] and ["x-groups", "ops"] in seen["headers"]
    assert ["x-groups", "admins"] in seen["headers"]  # add appends to what the client sent
    assert seen["body_length"] == len("alice")


@pytest.mark.parametrize("mode", ["grpc", "http"])
def test_the_partial_body_flag_is_the_gateways(gateway: Any, upstream: Any, authz: Any, mode: str) -> None:
    """``x-envoy-auth-partial-body`` tells the authorizer whether the body it got was cut at
    ``maxRequestBytes``. A client's header of that name must not pass for it (``false`` on a cut
    body: the authorizer would judge a truncated document as whole): the gateway's value, or
    none when no body is sent."""
    up = upstream()
    svc = authz(mode)
    authz_port = svc.port
    with_body, without_body = free_port(), free_port()
    base = {"host": f"127.0.0.1:{authz_port}", "protocol": {mode: {}}}
    if mode == "http":
        base["includeRequestHeaders"] = ["x-authz", "x-envoy-auth-partial-body"]
    body_policy = {**base, "includeRequestBody": {"maxRequestBytes": 4, "allowPartialMessage": True}}
    gateway(
        {
            "binds": [
                binds(with_body, [{"policies": {"extAuthz": body_policy}, "backends": [{"host": up.address}]}])[
                    "binds"
                ][0],
                binds(without_body, [{"policies": {"extAuthz": base}, "backends": [{"host": up.address}]}])["binds"][0],
            ]
        }
    )
    forged = {"x-authz": "allow", "x-envoy-auth-partial-body": "false"}
    for port, body in ((with_body, b"longer than four"), (with_body, b"ab"), (without_body, b"longer than four")):
        assert httpx.post(f"http://127.0.0.1:{port}/echo", headers=forged, content=body, timeout=10).status_code == 200

    def flags(check: dict[str, Any]) -> list[str]:
        headers = check["attributes"]["request"]["http"]["headers"] if mode == "grpc" else check["headers"]
        return [v for k, v in headers.items() if k == "x-envoy-auth-partial-body"]

    checks = [json.loads(line[6:]) for line in svc.output().splitlines() if line.startswith("CHECK ")]
    assert [flags(c) for c in checks] == [["true"], ["false"], []]


MODERN = "2026-07-28"


def _modern_call(
    name: str, arguments: dict[str, Any], state: str | None = None, answers: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """A 2026-07-28 (stateless) ``tools/call``, resuming ``state`` with ``answers`` when given;
    body and headers."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }
    params: dict[str, Any] = {"name": name, "arguments": arguments, "_meta": meta}
    if state is not None:
        params["requestState"] = state
        params["inputResponses"] = answers or {}
    headers = {
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": name,
    }
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}, headers


def _result(r: httpx.Response) -> dict[str, Any]:
    text = r.text
    if text.startswith("{"):
        return dict(json.loads(text))
    data = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return dict(json.loads(data[-1]))


def test_a_parked_call_resumes_only_for_its_caller_on_its_route(gateway: Any) -> None:
    """A 2026-07-28 call the server answers with a question is parked, and the client resumes it
    with the ``requestState`` it got. That state resumes the call only for the caller that made it
    (another API key: refused) and only on the route it was made on (another MCP route, without
    the first route's key check: refused)."""
    port = free_port()
    keys = {"mode": "strict", "keys": [{"key": "key-alice-0123"}, {"key": "key-bob-4567"}]}
    routes = [
        {
            "name": "guarded",
            "matches": [{"path": {"pathPrefix": "/guarded"}}],
            "policies": {"apiKey": keys},
            "backends": [{"mcp": {"targets": [stdio_target("alpha")]}}],
        },
        {
            "name": "open",
            "matches": [{"path": {"pathPrefix": "/open"}}],
            "backends": [{"mcp": {"targets": [stdio_target("alpha")]}}],
        },
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"
    alice, bob = {"authorization": "Bearer key-alice-0123"}, {"authorization": "Bearer key-bob-4567"}
    with httpx.Client(timeout=30) as http:

        def park() -> tuple[str, dict[str, Any]]:
            """Alice's call, waiting for her confirmation: its state, and a "yes" to it."""
            body, headers = _modern_call("confirm", {"question": "Delete everything?"})
            answer = _result(http.post(f"{base}/guarded", json=body, headers={**headers, **alice}))
            assert answer["result"]["resultType"] == "input_required", answer
            (key,) = answer["result"]["inputRequests"]
            return str(answer["result"]["requestState"]), {key: {"action": "accept", "content": {"confirm": True}}}

        def resume(path: str, who: dict[str, str], state: str, yes: dict[str, Any]) -> dict[str, Any]:
            body, headers = _modern_call("confirm", {"question": "Delete everything?"}, state, yes)
            return _result(http.post(f"{base}{path}", json=body, headers={**headers, **who}))

        state, yes = park()
        for path, who in (("/open", {}), ("/guarded", bob)):
            answer = resume(path, who, state, yes)
            assert answer.get("error", {}).get("message") == "unknown or expired requestState", (path, answer)
        # Alice's own answer still resumes her call (the attempts did not end it).
        answer = resume("/guarded", alice, state, yes)
        assert answer["result"]["content"][0]["text"] == "alpha: confirmed=True", answer


def test_a_tls_listener_that_is_not_the_default_requires_its_client_certificate(gateway: Any, tmp_path: Path) -> None:
    """The same for TLS listeners that terminate TLS and relay bytes (``tcpRoutes``): the mTLS
    listener that is not the port's default relays nothing for a client without a certificate."""
    server_ca, client_ca = trustme.CA(), trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    echo = TcpEchoServer()
    try:
        port = free_port()
        strict_tls = {**_pem_pair(server_ca, tmp_path, "strict.test"), "root": str(tmp_path / "clients.pem")}
        listeners = [
            {
                "name": "lax",
                "hostname": "lax.test",
                "protocol": "TLS",
                "tls": _pem_pair(server_ca, tmp_path, "lax.test"),
                "tcpRoutes": [{"backends": [{"host": echo.address}]}],
            },
            {
                "name": "strict",
                "hostname": "strict.test",
                "protocol": "TLS",
                "tls": strict_tls,
                "tcpRoutes": [{"backends": [{"host": echo.address}]}],
            },
        ]
        gateway({"binds": [{"port": port, "listeners": listeners}]})

        def echoes(sni: str, with_cert: bool) -> bool:
            ctx = ssl.create_default_context()
            server_ca.configure_trust(ctx)
            if with_cert:
                client_ca.issue_cert("client.test").configure_cert(ctx)
            raw = socket.create_connection(("127.0.0.1", port), timeout=5)
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                tls.sendall(b"ping")
                try:
                    return tls.recv(4) == b"ping"
                except (ssl.SSLError, ConnectionError):
                    return False

        assert echoes("lax.test", False) and echoes("strict.test", True)
        assert not echoes("strict.test", False)
        assert echoes("lax.test", True)
    finally:
        echo.stop()


def test_an_mtls_listener_added_by_a_reload_asks_for_certificates(gateway: Any, upstream: Any, tmp_path: Path) -> None:
    """A reload that adds an mTLS listener to a port that had none changes the certificate request
    every handshake of the port keeps: the port is reopened, so the new listener is served to
    clients with a certificate (and still not to those without)."""
    server_ca, client_ca = trustme.CA(), trustme.CA()
    client_ca.cert_pem.write_to_path(str(tmp_path / "clients.pem"))
    up = upstream("strict")
    port = free_port()
    lax = {
        "name": "lax",
        "hostname": "lax.test",
        "protocol": "HTTPS",
        "tls": _pem_pair(server_ca, tmp_path, "lax.test"),
        "routes": [{"backends": [{"host": up.address}]}],
    }
    strict = {
        "name": "strict",
        "hostname": "strict.test",
        "protocol": "HTTPS",
        "tls": {**_pem_pair(server_ca, tmp_path, "strict.test"), "root": str(tmp_path / "clients.pem")},
        "routes": [{"backends": [{"host": up.address}]}],
    }
    gw = gateway({"binds": [{"port": port, "listeners": [lax]}]})
    gw.write_config({"binds": [{"port": port, "listeners": [lax, strict]}]})
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="success") >= 1, 10, "the reload")
    seams = Seams(port, port, port, server_ca, client_ca.issue_cert("client.test"))
    wait_for(lambda: seams.get(port, "strict.test", "strict.test", with_cert=True) == (200, "strict"), 5, "mTLS")
    assert seams.get(port, "strict.test", "strict.test") == (421, None)
    assert seams.get(port, "lax.test", "lax.test") == (200, "strict")  # (one upstream for both)
