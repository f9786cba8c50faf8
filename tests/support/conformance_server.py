"""An MCP server (official SDK, ``mcp`` 2.x) with the fixtures the server scenarios of the MCP
conformance suite (``@modelcontextprotocol/conformance``) call by name.

    python -m tests.support.conformance_server --transport http --port 9001   (streamable HTTP, /mcp)
    python -m tests.support.conformance_server --transport stdio

The names and behaviours come from the suite's scenario descriptions: ``test_simple_text``,
``test_image_content``, ``test_tool_with_progress``, ``test_sampling``, ... as tools;
``test://static-text``, ``test://template/{id}/data``, ... as resources; ``test_simple_prompt``,
``test_prompt_with_arguments``, ... as prompts; completion of prompt arguments; resource
subscriptions and ``logging/setLevel``. Over HTTP, SSE events are stored so that a stream the server
closes mid-call (``test_reconnection``) can be resumed with ``Last-Event-ID``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import struct
import sys
import warnings
import zlib
from typing import Any

from mcp.server.mcpserver import Context, MCPServer, UserMessage
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp.shared.exceptions import MCPDeprecationWarning
from mcp_types import (
    AudioContent,
    Completion,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    JSONRPCMessage,
    PromptReference,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)

# Logging and sampling are deprecated in the 2026 revision, but the suite still exercises them.
warnings.simplefilter("ignore", MCPDeprecationWarning)

LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")


def _png_pixel() -> bytes:
    """A 1x1 red PNG, built here so the fixture needs no binary file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)  # width, height, 8 bits, RGB
    pixels = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, then one red pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def _wav_silence(samples: int = 80, rate: int = 8000) -> bytes:
    """A short mono 8-bit PCM WAV of silence."""
    data = b"\x80" * samples
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


PNG = base64.b64encode(_png_pixel()).decode()
WAV = base64.b64encode(_wav_silence()).decode()


class MemoryEventStore(EventStore):
    """Keeps every SSE event in order, so a client can resume a stream after ``Last-Event-ID``."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._events: list[tuple[EventId, StreamId, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        event_id = f"e{next(self._ids)}"
        self._events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        index = next((i for i, event in enumerate(self._events) if event[0] == last_event_id), None)
        if index is None:
            return None
        stream_id = self._events[index][1]
        for event_id, stream, message in self._events[index + 1 :]:
            if stream == stream_id and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream_id


class ForgetfulEventStore(MemoryEventStore):
    """Names its events but cannot replay them: a stream closed mid-call cannot be resumed."""

    async def replay_events_after(self, last_event_id: EventId, send_callback: EventCallback) -> StreamId | None:
        return None


ELICIT_USER = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}

ELICIT_DEFAULTS = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "User name", "default": "John Doe"},
        "age": {"type": "integer", "description": "User age", "default": 30},
        "score": {"type": "number", "description": "User score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "User status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verification status", "default": True},
    },
}


def _titled(prefix: str, titles: tuple[str, ...]) -> list[dict[str, str]]:
    return [{"const": f"{prefix}{i}", "title": title} for i, title in enumerate(titles, 1)]


ELICIT_ENUMS = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "oneOf": _titled("value", ("First Option", "Second Option", "Third Option")),
        },
        "legacyEnum": {
            "type": "string",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {"type": "array", "items": {"type": "string", "enum": ["option1", "option2", "option3"]}},
        "titledMulti": {
            "type": "array",
            "items": {"anyOf": _titled("value", ("First Choice", "Second Choice", "Third Choice"))},
        },
    },
}

JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
    "additionalProperties": False,
}


def _json_schema_tool() -> Tool:
    """A tool whose input schema is written by hand (2020-12 keywords the SDK would not generate)."""

    def json_schema_2020_12_tool(name: str | None = None, address: dict[str, Any] | None = None) -> str:
        return f"name={name!r} address={json.dumps(address)}"

    tool = Tool.from_function(json_schema_2020_12_tool, description="Tool with JSON Schema 2020-12 features")
    return tool.model_copy(update={"parameters": JSON_SCHEMA_2020_12})


def build() -> MCPServer:
    server = MCPServer(
        "conformance-fixtures",
        version="1.0.0",
        instructions="Fixtures of the MCP conformance suite's server scenarios.",
        tools=[_json_schema_tool()],
        log_level="WARNING",
    )
    state: dict[str, Any] = {"level": "debug", "subscriptions": set()}

    async def log(ctx: Context, level: str, text: str) -> None:
        if LOG_LEVELS.index(level) >= LOG_LEVELS.index(state["level"]):
            await ctx.log(level, text, logger_name="conformance")  # type: ignore[arg-type]

    # Tools ------------------------------------------------------------------------------------
    @server.tool(description="Returns one text block")
    def test_simple_text() -> str:
        return "This is a simple text response for testing."

    @server.tool(description="Returns a PNG image")
    def test_image_content() -> list[ImageContent]:
        return [ImageContent(type="image", data=PNG, mime_type="image/png")]

    @server.tool(description="Returns a WAV clip")
    def test_audio_content() -> list[AudioContent]:
        return [AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @server.tool(description="Returns an embedded text resource")
    def test_embedded_resource() -> list[EmbeddedResource]:
        resource = TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."
        )
        return [EmbeddedResource(type="resource", resource=resource)]

    @server.tool(description="Returns text, an image and an embedded resource")
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        resource = TextResourceContents(
            uri="test://mixed-content-resource",
            mime_type="application/json",
            text=json.dumps({"test": "data", "value": 123}),
        )
        return [
            TextContent(type="text", text="Multiple content types test:"),
            ImageContent(type="image", data=PNG, mime_type="image/png"),
            EmbeddedResource(type="resource", resource=resource),
        ]

    @server.tool(description="Sends three info log messages while it runs")
    async def test_tool_with_logging(ctx: Context) -> str:
        await log(ctx, "info", "Tool execution started")
        await asyncio.sleep(0.05)
        await log(ctx, "info", "Tool processing data")
        await asyncio.sleep(0.05)
        await log(ctx, "info", "Tool execution completed")
        return "Tool with logging executed successfully"

    @server.tool(description="Always fails with a tool error")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @server.tool(description="Reports progress 0, 50 and 100 of 100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for step, progress in enumerate((0, 50, 100)):
            if step:
                await asyncio.sleep(0.05)
            await ctx.report_progress(progress, 100)
        return "Tool with progress executed successfully"

    @server.tool(description="Asks the client's LLM (sampling/createMessage)")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        result = await ctx.session.create_message(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        text = result.content.text if isinstance(result.content, TextContent) else str(result.content)
        return f"LLM response: {text}"

    async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> str:
        result = await ctx.session.elicit_form(message, schema, related_request_id=ctx.request_id)
        return f"action={result.action}, content={json.dumps(result.content)}"

    @server.tool(description="Asks the user for a name and an email (elicitation/create)")
    async def test_elicitation(message: str, ctx: Context) -> str:
        return "User response: " + await elicit(ctx, message, ELICIT_USER)

    @server.tool(description="Elicitation whose fields all have defaults (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        text = await elicit(ctx, "Test client default value handling - please accept with defaults", ELICIT_DEFAULTS)
        return f"Elicitation completed: {text}"

    @server.tool(description="Elicitation with every enum shape (SEP-1330)")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        return "Elicitation completed: " + await elicit(ctx, "Pick from each kind of enum", ELICIT_ENUMS)

    @server.tool(description="Closes its SSE stream mid-call, then answers (resumed with Last-Event-ID)")
    async def test_reconnection(ctx: Context) -> str:
        await asyncio.sleep(0.1)
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        return "Reconnection test completed successfully"

    # Resources ---------------------------------------------------------------------------------
    @server.resource(
        "test://static-text", name="static-text", description="A static text resource", mime_type="text/plain"
    )
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", name="static-binary", description="A static PNG", mime_type="image/png")
    def static_binary() -> bytes:
        return _png_pixel()

    @server.resource("test://watched-resource", name="watched-resource", description="A resource to subscribe to")
    def watched() -> str:
        return "Watched resource content."

    @server.resource(
        "test://template/{id}/data", name="template-data", description="Data for an id", mime_type="application/json"
    )
    def template_data(id: str) -> str:
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    # Prompts -----------------------------------------------------------------------------------
    @server.prompt(description="A prompt without arguments")
    def test_simple_prompt() -> str:
        return "This is a simple prompt for testing."

    @server.prompt(description="A prompt with two required arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
        return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"

    @server.prompt(description="A prompt that embeds a resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        resource = TextResourceContents(
            uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
        )
        return [
            UserMessage(EmbeddedResource(type="resource", resource=resource)),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage("Please analyze the image above."),
        ]

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion:
        if isinstance(ref, PromptReference) and ref.name == "test_prompt_with_arguments":
            words = ("paris", "park", "party", "test", "testing", "tested")
            values = [w for w in words if w.startswith(argument.value)]
            return Completion(values=values, total=len(values), has_more=False)
        return Completion(values=[])

    # Methods MCPServer has no decorator for (legacy revisions only) ----------------------------
    lowlevel = server._lowlevel_server

    async def set_level(ctx: Any, params: SetLevelRequestParams) -> EmptyResult:
        state["level"] = params.level
        return EmptyResult()

    async def subscribe(ctx: Any, params: SubscribeRequestParams) -> EmptyResult:
        state["subscriptions"].add(str(params.uri))
        return EmptyResult()

    async def unsubscribe(ctx: Any, params: UnsubscribeRequestParams) -> EmptyResult:
        state["subscriptions"].discard(str(params.uri))
        return EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--forget-events", action="store_true", help="streams closed mid-call cannot be resumed")
    args = parser.parse_args()
    server = build()
    if args.transport == "stdio":
        print("conformance fixtures on stdio", file=sys.stderr, flush=True)
        server.run("stdio")
    else:
        server.run(
            "streamable-http",
            host="127.0.0.1",
            port=args.port,
            event_store=ForgetfulEventStore() if args.forget_events else MemoryEventStore(),
            retry_interval=500,
        )


if __name__ == "__main__":
    main()
