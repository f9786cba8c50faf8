"""A small REST service with its OpenAPI 3 document, for the ``openapi`` MCP target tests.

Run: ``python -m tests.support.rest_service --port N``. The API lives under ``/api/v1`` (the
document's ``servers[0].url``); the document itself is served at ``/openapi.yaml``. What the
service received is logged to stdout as one JSON line per request, so tests can check the
method, path, query, headers and body the gateway wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

DOCUMENT = """\
openapi: 3.0.3
info: {title: Pet store, version: 1.2.0}
servers:
  - url: http://petstore.invalid/api/v1
paths:
  /pets:
    get:
      operationId: listPets
      summary: List the pets
      parameters:
        - {name: limit, in: query, schema: {type: integer}, description: How many at most}
        - {name: tag, in: query, schema: {type: array, items: {type: string}}}
      responses: {"200": {description: ok}}
    post:
      operationId: createPet
      description: Add a pet to the store.
      parameters:
        - {name: X-Request-Tag, in: header, schema: {type: string}}
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/NewPet"}
      responses: {"201": {description: created}}
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, required: true, schema: {type: integer}}
    get:
      operationId: getPet
      summary: One pet by id
      responses: {"200": {description: ok}}
    delete:
      operationId: deletePet
      responses: {"204": {description: gone}}
  /slow:
    get:
      operationId: slowThing
      parameters:
        - {name: seconds, in: query, required: true, schema: {type: number}}
      responses: {"200": {description: ok}}
components:
  schemas:
    NewPet:
      type: object
      required: [name]
      properties:
        name: {type: string}
        tag: {type: string}
"""

PETS = {1: {"id": 1, "name": "Rex", "tag": "dog"}, 2: {"id": 2, "name": "Tom", "tag": "cat"}}


def _log(request: Request, body: bytes) -> None:
    record = {
        "method": request.method,
        "path": request.url.path,
        "query": request.url.query,
        "headers": {
            k: v for k, v in request.headers.items() if k.startswith("x-") or k in ("content-type", "authorization")
        },
        "body": body.decode(errors="replace"),
    }
    print(json.dumps(record), flush=True)


async def list_pets(request: Request) -> Response:
    _log(request, b"")
    tags = request.query_params.getlist("tag")
    pets = [p for p in PETS.values() if not tags or p["tag"] in tags]
    limit = request.query_params.get("limit")
    if limit is not None:
        pets = pets[: int(limit)]
    return JSONResponse(pets)


async def create_pet(request: Request) -> Response:
    body = await request.body()
    _log(request, body)
    new = json.loads(body)
    if not isinstance(new, dict) or "name" not in new:
        return JSONResponse({"error": "name is required"}, status_code=422)
    pet = {"id": max(PETS) + 1, **new, "requestTag": request.headers.get("x-request-tag")}
    PETS[pet["id"]] = pet
    return JSONResponse(pet, status_code=201)


async def get_pet(request: Request) -> Response:
    _log(request, b"")
    pet = PETS.get(int(request.path_params["pet_id"]))
    if pet is None:
        return JSONResponse({"error": "no such pet"}, status_code=404)
    return JSONResponse(pet)


async def delete_pet(request: Request) -> Response:
    _log(request, b"")
    PETS.pop(int(request.path_params["pet_id"]), None)
    return Response(status_code=204)


async def slow(request: Request) -> Response:
    _log(request, b"")
    await asyncio.sleep(float(request.query_params["seconds"]))
    return PlainTextResponse("finally")


async def document(request: Request) -> Response:
    return PlainTextResponse(DOCUMENT, media_type="application/yaml")


app = Starlette(
    routes=[
        Route("/api/v1/pets", list_pets, methods=["GET"]),
        Route("/api/v1/pets", create_pet, methods=["POST"]),
        Route("/api/v1/pets/{pet_id:int}", get_pet, methods=["GET"]),
        Route("/api/v1/pets/{pet_id:int}", delete_pet, methods=["DELETE"]),
        Route("/api/v1/slow", slow, methods=["GET"]),
        Route("/openapi.yaml", document, methods=["GET"]),
    ]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
