"""Fake providers and an LLM gateway for integration tests (module-scoped: starting them once per
test module keeps the suite fast)."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway import Gateway, Process, free_port, wait_for
from tests.support.llm_fakes import API_KEY, AWS_KEY, AWS_SECRET

KINDS = ("openai", "azure", "anthropic", "gemini", "vertex", "bedrock")
# baseUrl of each kind: a path in it is a path prefix (agentgateway's pathPrefix), which replaces
# the /v1 base of OpenAI and Anthropic and goes in front of the default path of the others, so
# the fakes of those are named by scheme, host and port only.
AWS_ENV = {"AWS_ACCESS_KEY_ID": AWS_KEY, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}


class FakeProvider(Process):
    def __init__(self, tmp: Path, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.llm_fakes", "--kind", kind, "--port", str(self.port)]
        super().__init__(args, tmp / f"fake-{kind}-{self.port}.log")

        def listening() -> bool:
            if not self.alive():
                raise RuntimeError(f"fake {kind} exited:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
            return False

        wait_for(listening, 30, f"fake provider {kind}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/_last", timeout=5).json()  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(httpx.get(f"{self.base}/_count", timeout=5).json()["count"])


def model_entries(fakes: dict[str, FakeProvider]) -> list[dict[str, Any]]:
    """One model per provider kind, named after it, each with the provider's own key."""
    p = {k: f.base for k, f in fakes.items()}
    return [
        {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{p['openai']}/v1"}},
        {
            "name": "azure-gpt",
            "provider": "azure",
            "params": {"apiKey": API_KEY, "baseUrl": p["azure"], "model": "gpt-4o"},
        },
        {
            "name": "azure-dated",
            "provider": "azure",
            "params": {
                "apiKey": API_KEY,
                "baseUrl": p["azure"],
                "azureApiVersion": "2024-10-21",
                "model": "gpt4-deploy",
            },
        },
        {
            "name": "claude-haiku",
            "provider": "anthropic",
            "params": {"apiKey": API_KEY, "baseUrl": f"{p['anthropic']}/v1"},
        },
        {
            "name": "gemini-2.5-flash",
            "provider": "gemini",
            "params": {"apiKey": API_KEY, "baseUrl": p["gemini"]},
        },
        {
            "name": "gemini-native",
            "provider": "gemini",
            "params": {"apiKey": API_KEY, "baseUrl": p["gemini"], "nativeApi": True, "model": "gemini-2.5-pro"},
        },
        {
            "name": "vertex-gemini",
            "provider": "vertex",
            "params": {
                "apiKey": API_KEY,
                "vertexProject": "proj-1",
                "vertexRegion": "us-central1",
                "baseUrl": p["vertex"],
                "model": "gemini-2.0-flash",
            },
        },
        {
            "name": "bedrock-claude",
            "provider": "bedrock",
            "params": {
                "awsRegion": "us-east-1",
                "baseUrl": p["bedrock"],
                "model": "anthropic.claude-3-haiku-20240307-v1:0",
            },
        },
    ]


# model name → provider kind that serves it
MODELS = {
    "gpt-4o-mini": "openai",
    "azure-gpt": "azure",
    "azure-dated": "azure",
    "claude-haiku": "anthropic",
    "gemini-2.5-flash": "gemini",
    "gemini-native": "gemini",
    "vertex-gemini": "vertex",
    "bedrock-claude": "bedrock",
}


class LlmSetup:
    def __init__(self, gateway: Gateway, port: int, fakes: dict[str, FakeProvider]) -> None:
        self.gateway = gateway
        self.port = port
        self.fakes = fakes
        self.route_port = 0
        self._clients: dict[tuple[str, int], Any] = {}

    def openai(self, port: int | None = None, key: str = "sk-client-must-not-leak") -> Any:
        """An OpenAI SDK client on the gateway (one per port, closed with the setup)."""
        import openai

        port = port or self.port
        client = self._clients.get(("openai", port))
        if client is None:
            client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
            self._clients[("openai", port)] = client
        return client

    def anthropic(self, key: str = "sk-client-must-not-leak") -> Any:
        import anthropic

        client = self._clients.get(("anthropic", self.port))
        if client is None:
            client = anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0)
            self._clients[("anthropic", self.port)] = client
        return client

    def access_line(self, needle: str) -> str:
        """The last access-log line containing ``needle`` (lines are flushed every 100 ms)."""

        def find() -> str | None:
            lines = [x for x in self.gateway.access_lines() if needle in x]
            return lines[-1] if lines else None

        return str(wait_for(find, 5, f"an access-log line with {needle}"))

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
