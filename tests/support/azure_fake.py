"""A strict fake of the Microsoft Entra ID endpoints the gateway gets Azure tokens from, in a
thread of the test process on 127.0.0.1 (the real ones, and the instance metadata service at
169.254.169.254, cannot be reached here).

* ``POST /<tenant>/oauth2/v2.0/token``: client credentials with a client secret, or with a client
  assertion (workload identity); form-encoded; ``scope`` must be one ``.default`` scope.
* ``GET /metadata/identity/oauth2/token``: the instance metadata service (``Metadata: true``,
  ``api-version=2018-02-01``, ``resource``; optional ``client_id``/``object_id``/``msi_res_id``).
* ``GET /msi/token``: App Service's managed identity endpoint (``X-IDENTITY-HEADER``,
  ``api-version=2019-08-01``, ``resource``).

Tokens are opaque strings naming how they were got (``aad:<tenant>:<client>:<scope>:<n>``);
``requests`` keeps what each call sent.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

IDENTITY_HEADER = "identity-header-secret"


class AzureFake:
    def __init__(self, clients: dict[str, str] | None = None, federated_token: str = "federated-jwt") -> None:
        self.clients = clients or {}  # client id → secret
        self.federated_token = federated_token
        self.requests: list[dict[str, Any]] = []
        self.issued = 0
        self.expires_in = 3600
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _token(self, *parts: str) -> str:
        with self.lock:
            self.issued += 1
            return ":".join(["aad", *parts, str(self.issued)])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _record(self, form: dict[str, list[str]]) -> None:
                with fake.lock:
                    fake.requests.append(
                        {"method": self.command, "path": self.path, "headers": dict(self.headers), "form": form}
                    )

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                form = parse_qs(raw.decode(), keep_blank_values=True)
                self._record(form)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[1:] != ["oauth2", "v2.0", "token"]:
                    self._send(404, {"error": "not_found"})
                    return
                if self.headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
                    self._send(400, {"error": "invalid_request"})
                    return
                if any(len(v) != 1 for v in form.values()):
                    self._send(400, {"error": "invalid_request", "error_description": "repeated parameter"})
                    return
                f = {k: v[0] for k, v in form.items()}
                tenant = parts[0]
                scope = f.get("scope", "")
                if f.get("grant_type") != "client_credentials" or not scope.endswith("/.default") or " " in scope:
                    self._send(400, {"error": "invalid_request", "error_description": "AADSTS70011: invalid scope"})
                    return
                client_id = f.get("client_id", "")
                if "client_secret" in f:
                    if fake.clients.get(client_id) != f["client_secret"]:
                        self._send(401, {"error": "invalid_client", "error_description": "AADSTS7000215"})
                        return
                elif f.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                    if f.get("client_assertion") != fake.federated_token:
                        self._send(401, {"error": "invalid_client", "error_description": "AADSTS700211"})
                        return
                else:
                    self._send(400, {"error": "invalid_request", "error_description": "no client credentials"})
                    return
                token = fake._token(tenant, client_id, scope)
                self._send(
                    200,
                    {
                        "token_type": "Bearer",
                        "expires_in": fake.expires_in,
                        "ext_expires_in": fake.expires_in,
                        "access_token": token,
                    },
                )

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                self._record(query)
                q = {k: v[0] for k, v in query.items()}
                if url.path == "/metadata/identity/oauth2/token":
                    if self.headers.get("metadata") != "true" or q.get("api-version") != "2018-02-01":
                        self._send(
                            400,
                            {"error": "invalid_request", "error_description": "Required metadata header not specified"},
                        )
                        return
                    identity = q.get("client_id") or q.get("object_id") or q.get("msi_res_id") or "system"
                elif url.path == "/msi/token":
                    if self.headers.get("x-identity-header") != IDENTITY_HEADER or q.get("api-version") != "2019-08-01":
                        self._send(401, {"error": "unauthorized"})
                        return
                    identity = q.get("client_id") or q.get("principal_id") or q.get("mi_res_id") or "system"
                else:
                    self._send(404, {"error": "not_found"})
                    return
                resource = q.get("resource", "")
                if not resource.startswith("https://") or resource.endswith("/.default"):
                    self._send(400, {"error": "invalid_resource"})
                    return
                expires_on = int(time.time()) + fake.expires_in
                token = fake._token("mi", identity, resource)
                self._send(
                    200,
                    {
                        "access_token": token,
                        "expires_in": str(fake.expires_in),
                        "expires_on": str(expires_on),
                        "resource": resource,
                        "token_type": "Bearer",
                    },
                )

        return Handler
