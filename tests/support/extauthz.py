"""Test authorization services: Envoy's ext_authz over gRPC (grpcio) and a plain HTTP authorizer.

Run as ``python -m tests.support.extauthz --port P --mode grpc|http [--cert C --key K [--client-ca CA]]``
(TLS, and mutual TLS, for gRPC). Prints ``ready``, then one
line ``CHECK <json>`` per check it answers (the gRPC CheckRequest as JSON, or for HTTP the method,
path, headers and body), so tests can see what the gateway sent.

The decision comes from the request's ``x-authz`` header:
  allow       allowed; gRPC: sets x-authz-user (overwriting), appends x-added, removes
              x-remove-me, sets query parameter ``checked=yes`` and removes ``drop``, adds the
              response header x-authz-resp, returns dynamic metadata {"user": "alice"};
              HTTP: 200 with x-authz-user: alice and x-not-copied: 1
  deny        gRPC: PERMISSION_DENIED with a 401, ``www-authenticate`` and a body;
              HTTP: 401 with ``www-authenticate``, x-reason and a body
  deny-bare   gRPC: PERMISSION_DENIED without an HTTP response; HTTP: 403, empty
  allow-json  HTTP: 200 with a JSON body {"user": <x-user or alice>, "tier": "gold",
              "groups": ["a", "b"]} and x-authz-user
  slow        answers ``allow`` after 3 seconds
  reflect     gRPC: allowed like an authorizer that copies a token claim into headers: the
              claim is the JSON string in ``x-claim``, set as the request header x-authz-user
              and the response header x-authz-resp, under the name ``x-claim-name`` gives (JSON too)
              (default x-authz-user); ``deny-reflect``: denied with it as the header x-reason
  (missing)   denied, as ``deny``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2, wrappers_pb2
from google.protobuf.json_format import MessageToDict
from google.rpc import status_pb2

OK, PERMISSION_DENIED = 0, 7


def _option(key: str, value: str, append: bool | None = None) -> base_pb2.HeaderValueOption:
    option = base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key, value=value))
    if append is not None:
        option.append.CopyFrom(wrappers_pb2.BoolValue(value=append))
    return option


class Authorization(external_auth_pb2_grpc.AuthorizationServicer):
    async def Check(self, request, context):  # noqa: N802 - the gRPC method name
        print("CHECK " + json.dumps(MessageToDict(request)), flush=True)
        headers = request.attributes.request.http.headers
        decision = headers.get("x-authz", "deny")
        if decision == "slow":
            await asyncio.sleep(3)
            decision = "allow"
        if decision == "allow":
            ok = external_auth_pb2.OkHttpResponse(
                headers=[_option("x-authz-user", "alice"), _option("x-added", "from-authz", append=True)],
                headers_to_remove=["x-remove-me"],
                response_headers_to_add=[_option("x-authz-resp", "yes")],
                query_parameters_to_set=[base_pb2.QueryParameter(key="checked", value="yes")],
                query_parameters_to_remove=["drop"],
            )
            metadata = struct_pb2.Struct()
            metadata.update({"user": "alice", "groups": ["a", "b"]})
            return external_auth_pb2.CheckResponse(
                status=status_pb2.Status(code=OK), ok_response=ok, dynamic_metadata=metadata
            )
        if decision in ("reflect", "deny-reflect"):
            claim = json.loads(headers.get("x-claim", '""'))
            name = json.loads(headers.get("x-claim-name", '"x-authz-user"'))
            if decision == "deny-reflect":
                denied = external_auth_pb2.DeniedHttpResponse(
                    status=http_status_pb2.HttpStatus(code=403), headers=[_option("x-reason", claim)]
                )
                return external_auth_pb2.CheckResponse(
                    status=status_pb2.Status(code=PERMISSION_DENIED), denied_response=denied
                )
            ok = external_auth_pb2.OkHttpResponse(
                headers=[_option(name, claim)], response_headers_to_add=[_option("x-authz-resp", claim)]
            )
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=OK), ok_response=ok)
        if decision == "deny-bare":
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=PERMISSION_DENIED))
        denied = external_auth_pb2.DeniedHttpResponse(
            status=http_status_pb2.HttpStatus(code=401),
            headers=[_option("www-authenticate", 'Bearer realm="test"'), _option("x-reason", "no-token")],
            body="denied by the test authorizer\n",
        )
        return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=PERMISSION_DENIED), denied_response=denied)


async def serve_grpc(port: int, cert: str | None, key: str | None, client_ca: str | None) -> None:
    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(Authorization(), server)
    if cert and key:
        with open(cert, "rb") as c, open(key, "rb") as k:
            pair = (k.read(), c.read())
        roots = None
        if client_ca:
            with open(client_ca, "rb") as f:
                roots = f.read()
        creds = grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)
        server.add_secure_port(f"127.0.0.1:{port}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


async def _http_handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            print(
                "CHECK "
                + json.dumps({"method": method, "path": path, "headers": headers, "body": body.decode("latin-1")}),
                flush=True,
            )
            decision = headers.get("x-authz", "deny")
            if decision == "slow":
                await asyncio.sleep(3)
                decision = "allow"
            if decision == "allow":
                status, extra, out = 200, [("x-authz-user", "alice"), ("x-not-copied", "1")], b"ok"
            elif decision == "allow-json":
                user = headers.get("x-user", "alice")
                out = json.dumps({"user": user, "tier": "gold", "groups": ["a", "b"]}).encode()
                status, extra = 200, [("x-authz-user", user), ("content-type", "application/json")]
            elif decision == "deny-bare":
                status, extra, out = 403, [], b""
            else:
                status = 401
                extra = [("www-authenticate", 'Bearer realm="http"'), ("x-reason", "no-token")]
                out = b"denied by the http authorizer\n"
            fields = [*extra, ("content-length", str(len(out)))]
            writer.write(
                f"HTTP/1.1 {status} X\r\n".encode()
                + "".join(f"{k}: {v}\r\n" for k, v in fields).encode()
                + b"\r\n"
                + out
            )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_http(port: int) -> None:
    server = await asyncio.start_server(_http_handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--client-ca")
    args = parser.parse_args()
    if args.mode == "grpc":
        asyncio.run(serve_grpc(args.port, args.cert, args.key, args.client_ca))
    else:
        asyncio.run(serve_http(args.port))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
