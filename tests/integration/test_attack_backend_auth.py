"""Attacks on the credential the gateway injects for a backend (``backendAuth.key`` with a
``location``), through the daemon with raw sockets: a client's own value under the same name,
spelled so that a plain byte comparison misses it while the upstream's parser does not, must not
reach the upstream beside (or before) the gateway's."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.gateway import binds, free_port, raw_connection, read_response

GATEWAY_KEY = "gw-key-1"


@pytest.fixture
def port(gateway, upstream) -> int:
    up = upstream()
    port = free_port()

    def route(name: str, location: dict) -> dict:
        return {
            "name": name,
            "matches": [{"path": {"pathPrefix": f"/{name}"}}],
            "backends": [
                {"host": up.address, "policies": {"backendAuth": {"key": {"value": GATEWAY_KEY, "location": location}}}}
            ],
        }

    gateway(
        binds(
            port,
            [
                route("header", {"header": {"name": "X-Api-Key"}}),
                route("query", {"queryParameter": {"name": "api_key"}}),
                route("cookie", {"cookie": {"name": "session"}}),
            ],
        )
    )
    return port


def _sent(port: int, target: bytes, headers: bytes = b"") -> dict:
    with raw_connection(port) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: gw.test\r\n" + headers + b"\r\n")
        status, _, body = read_response(sock)
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize(
    "headers", [b"x-api-key: client\r\n", b"X-API-KEY: client\r\nx-api-key: client2\r\n", b"X-Api-Key: client\r\n"]
)
def test_a_header_credential_replaces_the_clients_in_any_case(port, headers) -> None:
    sent = _sent(port, b"/header", headers)
    values = [v for k, v in sent["headers"] if k.lower() == "x-api-key"]
    assert values == [GATEWAY_KEY]


@pytest.mark.parametrize("headers", [b"x_api_key: client\r\n", b"X_Api_Key: client\r\nx-api-key: client2\r\n"])
def test_a_header_credential_replaces_the_clients_underscore_spelling(port, headers) -> None:
    """CGI-style upstreams (WSGI, PHP, Rack) read ``x_api_key`` as ``x-api-key``: the client's
    value under that spelling would stand beside the gateway's (or, read last, replace it)."""
    sent = _sent(port, b"/header", headers)
    values = [v for k, v in sent["headers"] if k.lower().replace("_", "-") == "x-api-key"]
    assert values == [GATEWAY_KEY]


@pytest.mark.parametrize("query", [b"api_key=client", b"api_key=client&api_key=client2", b"a=1&api_key=client&b=2"])
def test_a_query_credential_replaces_the_clients(port, query) -> None:
    target = _sent(port, b"/query?" + query)["target"]
    assert parse_qs(urlsplit(target).query)["api_key"] == [GATEWAY_KEY]


@pytest.mark.parametrize("query", [b"api%5Fkey=client", b"%61pi_key=client", b"api%5fkey=client&x=1"])
def test_a_query_credential_replaces_encoded_spellings(port, query) -> None:
    target = _sent(port, b"/query?" + query)["target"]
    assert parse_qs(urlsplit(target).query)["api_key"] == [GATEWAY_KEY]


@pytest.mark.parametrize(
    "cookie", [b"session=client", b"a=1; session=client", b"session=client; session=client2", b"session=client;b=2"]
)
def test_a_cookie_credential_replaces_the_clients(port, cookie) -> None:
    sent = _sent(port, b"/cookie", b"Cookie: " + cookie + b"\r\n")
    cookies = [v for k, v in sent["headers"] if k.lower() == "cookie"]
    assert len(cookies) == 1
    jar = [c.strip() for c in cookies[0].split(";") if c.strip().startswith("session")]
    assert jar == [f"session={GATEWAY_KEY}"]
    assert SimpleCookie(cookies[0])["session"].value == GATEWAY_KEY


def test_a_cookie_credential_replaces_a_leading_space(port) -> None:
    sent = _sent(port, b"/cookie", b"Cookie:  session=client\r\n")
    assert "client" not in "".join(v for k, v in sent["headers"] if k.lower() == "cookie")


@pytest.mark.parametrize("cookie", [b"session =client", b"session\t=client"])
def test_a_cookie_credential_replaces_spaced_spellings(port, cookie) -> None:
    sent = _sent(port, b"/cookie", b"Cookie: " + cookie + b"\r\n")
    cookies = [v for k, v in sent["headers"] if k.lower() == "cookie"]
    assert "client" not in "".join(cookies), cookies
