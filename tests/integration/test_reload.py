"""Hot reload: edits apply within a second, broken edits keep the old config, nothing is dropped;
files the config refers to (JWKS, htpasswd, keys, certificates, OpenAPI documents) reload too,
on the file watch and on SIGHUP, without the config file being touched."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import ssl
import threading
import time

import httpx
import trustme
from cryptography import x509

from tests.support.gateway import ResponseReader, binds, free_port, mcp_config, wait_for
from tests.support.idp import new_key, public_jwk


def _config(port, upstream_address, path="/v1", extra_routes=()):
    return binds(
        port,
        [
            {
                "name": "main",
                "matches": [{"path": {"pathPrefix": path}}],
                "backends": [{"host": upstream_address}],
            },
            *extra_routes,
        ],
    )


def test_edit_applies_within_a_second(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    port = free_port()
    gw = gateway(_config(port, a.address), workers=2)
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(url + "/v1/x").headers["x-upstream"] == "a"
    assert httpx.get(url + "/v2/x").status_code == 404
    gw.write_config(_config(port, b.address, path="/v2"))
    start = time.monotonic()
    wait_for(lambda: httpx.get(url + "/v2/x").status_code == 200, 5, "the new route")
    assert time.monotonic() - start < 1.0
    # Every worker serves the new config (fresh connections land on both).
    for _ in range(20):
        r = httpx.get(url + "/v2/x")
        assert r.headers["x-upstream"] == "b"
        assert httpx.get(url + "/v1/x").status_code == 404
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 1


def test_broken_edit_keeps_the_old_config(gateway, upstream):
    a = upstream("a")
    port = free_port()
    gw = gateway(_config(port, a.address))
    url = f"http://127.0.0.1:{port}/v1/x"
    gw.write_config(
        gw.render(_config(port, a.address)).replace("pathPrefix: /v1", "pathPrefix: /v1\n          extProc: {}")
    )
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the reload failure")
    assert gw.metric("agentgateway_config_synchronized") == 0
    assert "config reload rejected" in gw.output() and "extProc" in gw.output()
    dump = httpx.get(gw.admin_url + "/config_dump").json()
    assert "extProc" in dump["status"]["lastError"]
    assert httpx.get(url).status_code == 200  # still serving the previous config
    # Garbage YAML is rejected the same way.
    gw.write_config("binds: [ {port: ")
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 2, 5, "second failure")
    assert httpx.get(url).status_code == 200
    # Fixing the file recovers.
    gw.write_config(_config(port, a.address, path="/fixed"))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/fixed").status_code == 200, 5, "recovery")
    assert gw.metric("agentgateway_config_synchronized") == 1


def test_reload_adds_and_removes_binds(gateway, upstream):
    a = upstream("a")
    first, second = free_port(), free_port()
    gw = gateway(_config(first, a.address))
    config = _config(second, a.address)
    gw.write_config(config)
    wait_for(lambda: _status(f"http://127.0.0.1:{second}/v1/x") == 200, 5, "the new bind")
    wait_for(lambda: _status(f"http://127.0.0.1:{first}/v1/x") is None, 5, "the old bind to close")


def _status(url):
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def test_reload_under_load_drops_nothing(gateway, upstream):
    a, b = upstream("a"), upstream("b")
    port = free_port()
    gw = gateway(_config(port, a.address), workers=2)
    url = f"http://127.0.0.1:{port}/v1/echo"
    stop = threading.Event()
    failures: list[str] = []
    counts = {"ok": 0}

    def hammer(keep_alive):
        client = httpx.Client(timeout=10) if keep_alive else None
        try:
            hammer_with(client)
        finally:
            if client:
                client.close()

    def hammer_with(client):
        while not stop.is_set():
            try:
                if client:
                    r = client.post(url, content=b"x" * 1000)
                else:
                    r = httpx.post(url, content=b"x" * 1000, timeout=10)
                if r.status_code != 200 or r.json()["body_length"] != 1000:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                else:
                    counts["ok"] += 1
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=hammer, args=(i % 2 == 0,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        for i in range(20):
            # Alternate upstreams and add/remove an unrelated route each time.
            extra = [
                {
                    "name": f"x{i}",
                    "matches": [{"path": {"exact": f"/x{i}"}}],
                    "backends": [{"host": b.address}],
                }
            ]
            gw.write_config(_config(port, (a if i % 2 else b).address, extra_routes=extra))
            wait_for(
                lambda i=i: gw.metric("agentgateway_config_reloads_total", result="success") >= i + 1,
                10,
                f"reload {i + 1}",
            )
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert failures == [], failures[:5]
    assert counts["ok"] > 100


# ---------------------------------------------------------------- files the config refers to


def _jwks_text(*keys, size: int = 0) -> str:
    text = json.dumps({"keys": [public_jwk(kid, key) for kid, key in keys]})
    return text.ljust(size)  # trailing blanks: still JSON, and the size a test wants


def _replace(path, text: str) -> None:
    """Write ``text`` to ``path`` as tools that rotate secrets do: a new file renamed over the old."""
    tmp = path.with_suffix(path.suffix + ".new")
    tmp.write_text(text)
    os.replace(tmp, path)


def _token(key, kid: str, issuer: str = "https://idp.example") -> str:
    import jwt

    return jwt.encode({"iss": issuer, "exp": int(time.time()) + 600}, key, "RS256", headers={"kid": kid})


def _bearer(port: int, token: str) -> int:
    return httpx.get(f"http://127.0.0.1:{port}/x", headers={"authorization": f"Bearer {token}"}, timeout=10).status_code


def _jwks_gateway(gateway, upstream, jwks_path):
    up = upstream()
    port = free_port()
    route = {
        "policies": {"jwtAuth": {"mode": "strict", "issuer": "https://idp.example", "jwks": {"file": str(jwks_path)}}},
        "backends": [{"host": up.address}],
    }
    return gateway(binds(port, [route]), workers=2), port


def test_a_rotated_jwks_file_applies_without_touching_the_config(gateway, upstream, tmp_path):
    old_key, new_key_ = new_key(), new_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(_jwks_text(("k1", old_key)))
    gw, port = _jwks_gateway(gateway, upstream, jwks)
    config_before = gw.config_path.stat()
    old, new = _token(old_key, "k1"), _token(new_key_, "k2")
    assert (_bearer(port, old), _bearer(port, new)) == (200, 401)
    # The old key is revoked: the file now holds only the new one.
    _replace(jwks, _jwks_text(("k2", new_key_)))
    wait_for(lambda: _bearer(port, old) == 401, 5, "the revoked key to be refused")
    for _ in range(10):  # every worker: fresh connections land on both
        assert (_bearer(port, old), _bearer(port, new)) == (401, 200)
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 1
    assert gw.config_path.stat().st_mtime_ns == config_before.st_mtime_ns

    # A broken replacement keeps the keys that serve, and is logged, counted and shown.
    _replace(jwks, '{"keys": [ broken')
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the failure")
    assert gw.metric("agentgateway_config_synchronized") == 0
    assert "jwks.file" in httpx.get(gw.admin_url + "/config_dump").json()["status"]["lastError"]
    assert "config reload rejected" in gw.output()
    assert (_bearer(port, old), _bearer(port, new)) == (401, 200)
    _replace(jwks, _jwks_text(("k1", old_key), ("k2", new_key_)))
    wait_for(lambda: _bearer(port, old) == 200, 5, "the repaired file")
    assert gw.metric("agentgateway_config_synchronized") == 1
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 2


def test_sighup_reloads_what_the_watch_cannot_see_and_is_harmless_otherwise(gateway, upstream, tmp_path):
    old_key, new_key_ = new_key(), new_key()
    jwks = tmp_path / "jwks.json"
    jwks.write_text(_jwks_text(("k1", old_key), size=4096))
    gw, port = _jwks_gateway(gateway, upstream, jwks)
    old, new = _token(old_key, "k1"), _token(new_key_, "k2")
    generation = httpx.get(gw.admin_url + "/config_dump").json()["status"]["generation"]
    # Nothing changed: SIGHUP reloads nothing (no new generation, nothing counted).
    for _ in range(3):
        os.kill(gw.pid, signal.SIGHUP)
    time.sleep(1.0)
    assert gw.alive() and httpx.get(gw.ready_url).status_code == 200
    dump = httpx.get(gw.admin_url + "/config_dump").json()
    assert dump["status"]["generation"] == generation and dump["status"]["lastError"] is None
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 0
    assert gw.metric("agentgateway_config_reloads_total", result="failure") == 0
    assert _bearer(port, old) == 200
    # The file changes in place with its size, inode and mtime kept: the watch cannot see it...
    before = jwks.stat()
    with open(jwks, "r+") as f:
        f.write(_jwks_text(("k2", new_key_), size=4096))
    os.utime(jwks, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = jwks.stat()
    assert (after.st_size, after.st_ino, after.st_mtime_ns) == (before.st_size, before.st_ino, before.st_mtime_ns)
    time.sleep(1.0)
    assert _bearer(port, old) == 200
    # ... SIGHUP compares what the files hold.
    os.kill(gw.pid, signal.SIGHUP)
    wait_for(lambda: _bearer(port, new) == 200, 5, "the SIGHUP reload")
    assert _bearer(port, old) == 401
    assert gw.metric("agentgateway_config_reloads_total", result="success") == 1


def test_rotated_htpasswd_and_backend_key_files(gateway, upstream, tmp_path):
    up = upstream()
    port = free_port()
    users = tmp_path / "users.htpasswd"
    users.write_text(f"alice:{{SHA}}{_sha1('old-password')}\n")
    key_file = tmp_path / "upstream.key"
    key_file.write_text("key-one\n")
    route = {
        "policies": {
            "basicAuth": {"mode": "strict", "htpasswd": {"file": str(users)}},
            "backendAuth": {"key": {"file": str(key_file)}},
        },
        "backends": [{"host": up.address}],
    }
    gw = gateway(binds(port, [route]))

    def call(password: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}/echo", auth=("alice", password), timeout=10)

    r = call("old-password")
    assert r.status_code == 200 and dict(r.json()["headers"])["authorization"] == "Bearer key-one"
    _replace(users, f"alice:{{SHA}}{_sha1('new-password')}\n")
    wait_for(lambda: call("old-password").status_code == 401, 5, "the old password to be refused")
    assert call("new-password").status_code == 200
    # The upstream's key is rotated: the next requests carry the new one.
    _replace(key_file, "key-two\n")
    wait_for(
        lambda: dict(call("new-password").json()["headers"])["authorization"] == "Bearer key-two", 5, "the new key"
    )
    # An empty key file is a broken replacement: the old key keeps being sent.
    _replace(key_file, "\n")
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the failure")
    assert dict(call("new-password").json()["headers"])["authorization"] == "Bearer key-two"


def test_a_missing_file_is_watched_until_it_appears(gateway, upstream, tmp_path):
    up = upstream()
    port = free_port()
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}]))
    users = tmp_path / "later.htpasswd"
    route = {"policies": {"basicAuth": {"mode": "strict", "htpasswd": {"file": str(users)}}}, "backends": []}
    route["backends"] = [{"host": up.address}]
    gw.write_config(binds(port, [route]))
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the failure")
    assert httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 200  # the previous config serves
    _replace(users, f"alice:{{SHA}}{_sha1('pw')}\n")  # the config file itself is not touched again
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/echo").status_code == 401, 5, "the file to be read")
    assert httpx.get(f"http://127.0.0.1:{port}/echo", auth=("alice", "pw")).status_code == 200


def test_a_rotated_certificate_is_served_on_new_connections(gateway, upstream, tmp_path):
    up = upstream()
    port = free_port()
    ca = trustme.CA()
    first = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    first.cert_chain_pems[0].write_to_path(str(cert))
    first.private_key_pem.write_to_path(str(key))
    listener = {"protocol": "HTTPS", "tls": {"cert": str(cert), "key": str(key)}}
    gw = gateway(binds(port, [{"backends": [{"host": up.address}]}], **listener), workers=2)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    no_sni_ctx = ssl.create_default_context()
    no_sni_ctx.check_hostname = False
    ca.configure_trust(no_sni_ctx)

    def served_serial(sni: bool = True) -> int:
        ctx, name = (client_ctx, "localhost") if sni else (no_sni_ctx, None)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=name) as tls,
        ):
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number

    def serial_of(issued: trustme.LeafCert) -> int:
        return x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).serial_number

    assert served_serial() == serial_of(first)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        kept = client_ctx.wrap_socket(raw, server_hostname="localhost")
        kept_reader = ResponseReader(kept)
        kept.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert kept_reader.read()[0] == 200
        second = ca.issue_cert("localhost", "127.0.0.1")
        # Rotation as cert-manager does it: key and certificate replaced (briefly a mismatched pair,
        # which is a broken config that keeps the old one).
        _replace(key, second.private_key_pem.bytes().decode())
        _replace(cert, second.cert_chain_pems[0].bytes().decode())
        wait_for(lambda: served_serial() == serial_of(second), 5, "the new certificate")
        for _ in range(10):
            assert served_serial() == serial_of(second)
            assert served_serial(sni=False) == serial_of(second)  # a client that names no server
        # The connection opened before the rotation goes on, with the certificate it was given.
        kept.sendall(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert kept_reader.read()[0] == 200
        assert x509.load_der_x509_certificate(kept.getpeercert(binary_form=True)).serial_number == serial_of(first)
        kept.close()
    assert gw.metric("agentgateway_config_synchronized") == 1


_TOOLS_V1 = """\
openapi: 3.0.3
info: {title: Things, version: "1"}
servers: [{url: http://127.0.0.1:1/api}]
paths:
  /things:
    get: {operationId: listThings, responses: {"200": {description: ok}}}
"""


def test_a_rotated_openapi_document_changes_the_tools(gateway, tmp_path):
    port = free_port()
    document = tmp_path / "api.yaml"
    document.write_text(_TOOLS_V1)
    target = {"name": "api", "openapi": {"host": "127.0.0.1:1", "schema": {"file": str(document)}}}
    gw = gateway(mcp_config(port, [target]))
    assert _tool_names(port) == {"listThings"}
    v2 = _TOOLS_V1.replace("listThings", "listOtherThings")
    _replace(document, v2 + '  /more:\n    post: {operationId: addMore, responses: {"200": {description: ok}}}\n')
    wait_for(lambda: _tool_names(port) == {"listOtherThings", "addMore"}, 5, "the new tools")
    _replace(document, "openapi: [ broken")
    wait_for(lambda: gw.metric("agentgateway_config_reloads_total", result="failure") == 1, 5, "the failure")
    assert _tool_names(port) == {"listOtherThings", "addMore"}


def _tool_names(port: int) -> set[str]:
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    r = httpx.post(url, json=init, headers=headers, timeout=10)
    session = {**headers, "mcp-session-id": r.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
    httpx.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session, timeout=10)
    listed = httpx.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=session, timeout=10)
    body = listed.text
    if listed.headers["content-type"].startswith("text/event-stream"):
        body = next(line[5:] for line in body.splitlines() if line.startswith("data:"))
    httpx.delete(url, headers=session, timeout=10)
    return {tool["name"] for tool in json.loads(body)["result"]["tools"]}


def _sha1(password: str) -> str:
    return base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
