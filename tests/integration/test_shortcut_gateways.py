"""Where the ``llm:`` and ``mcp:`` shortcuts serve, as agentgateway decides it, through the real
daemon: without ``port`` (and ``gateways``) on the gateway named ``default`` when there is one,
after the routes of its listeners and under its gateway-level policies; on the gateways their
``gateways`` name; else on a port of their own (4000 and 3000 when none is given)."""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest
import yaml
from mcp import Client

from tests.support.gateway import REPO, free_port, stdio_target
from tests.support.llm import FakeProvider
from tests.support.llm_fakes import API_KEY

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def fake_openai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProvider]:
    fake = FakeProvider(tmp_path_factory.mktemp("fake"), "openai")
    try:
        yield fake
    finally:
        fake.stop()


def _llm(fake: FakeProvider, **extra: object) -> dict[str, object]:
    model = {"name": "gpt-4o-mini", "provider": "openAI", "params": {"apiKey": API_KEY, "baseUrl": f"{fake.base}/v1"}}
    return {"models": [model], **extra}


def _chat(port: int, key: str | None = None) -> str | None:
    with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key or "none", max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=HI)  # type: ignore[arg-type]
    return answer.choices[0].message.content


def test_llm_without_port_attaches_to_the_default_gateway(gateway, upstream, fake_openai):
    up = upstream("api")
    port = free_port()
    gw = gateway(
        {
            "gateways": {
                "default": {"port": port, "apiKey": {"mode": "strict", "keys": [{"key": "sk-gw"}]}},
            },
            "routes": [
                {"name": "api", "matches": [{"path": {"pathPrefix": "/api"}}], "backends": [{"host": up.address}]}
            ],
            "llm": _llm(fake_openai),
        }
    )
    # The gateway's own routes still win for their paths; everything else is the LLM API.
    r = httpx.get(f"http://127.0.0.1:{port}/api/x", headers={"authorization": "Bearer sk-gw"})
    assert r.headers["x-upstream"] == "api"
    assert _chat(port, "sk-gw")
    # The gateway-level apiKey guards the attached LLM routes too.
    with pytest.raises(openai.AuthenticationError):
        _chat(port, "wrong")
    assert gw.metric("agentgateway_requests_total", listener="default", route="llm") == 2


@pytest.mark.anyio
async def test_mcp_without_port_attaches_to_the_default_gateway(gateway, upstream):
    up = upstream("site")
    port = free_port()
    gateway(
        {
            "gateways": {"default": {"port": port}},
            "routes": [{"name": "site", "backends": [{"host": up.address}]}],
            "mcp": {"targets": [stdio_target("alpha")]},
        }
    )
    async with Client(f"http://127.0.0.1:{port}/mcp") as client:
        assert "echo" in {t.name for t in (await client.list_tools()).tools}
        assert (await client.call_tool("whoami", {})).content[0].text == "alpha"
    # The catch-all route of the file keeps the other paths.
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"http://127.0.0.1:{port}/index.html")).headers["x-upstream"] == "site"


def test_llm_gateways_names_a_listener(gateway, upstream, fake_openai):
    up = upstream("web")
    port = free_port()
    gateway(
        {
            "gateways": {
                "edge": {"port": port, "listeners": [{"name": "ai", "hostname": "ai.test"}, {"name": "web"}]},
            },
            "routes": [{"gateways": "edge/web", "backends": [{"host": up.address}]}],
            "llm": _llm(fake_openai, gateways="edge/ai"),
        }
    )
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0, default_headers={"host": "ai.test"}
    ) as client:
        assert client.chat.completions.create(model="gpt-4o-mini", messages=HI).choices  # type: ignore[arg-type]
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers={"host": "web.test"}, json={})
    assert r.headers["x-upstream"] == "web"  # the LLM API is not on the other listener


def test_llm_with_a_port_keeps_its_own_port_next_to_a_default_gateway(gateway, upstream, fake_openai):
    up = upstream("site")
    gw_port, llm_port = free_port(), free_port()
    gateway(
        {
            "gateways": {"default": {"port": gw_port}},
            "routes": [{"backends": [{"host": up.address}]}],
            "llm": _llm(fake_openai, port=llm_port),
        }
    )
    assert _chat(llm_port)
    r = httpx.post(f"http://127.0.0.1:{gw_port}/v1/chat/completions", json={})
    assert r.headers["x-upstream"] == "site"


def test_llm_tls_serves_https_on_its_own_port(gateway, fake_openai, tmp_path):
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    port = free_port()
    gateway(
        {
            "llm": _llm(
                fake_openai, port=port, tls={"cert": str(tmp_path / "cert.pem"), "key": str(tmp_path / "key.pem")}
            )
        }
    )
    with openai.OpenAI(
        base_url=f"https://localhost:{port}/v1",
        api_key="x",
        max_retries=0,
        http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))),
    ) as client:
        assert client.chat.completions.create(model="gpt-4o-mini", messages=HI).choices  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("config", "path", "reason"),
    [
        (
            {"gateways": {"g": {"port": 18101}}, "llm": {"gateways": "g", "port": 18102, "models": []}},
            "llm.gateways",
            "cannot be used with llm.port",
        ),
        (
            {"gateways": {"g": {"port": 18103}}, "mcp": {"gateways": ["nope"], "targets": []}},
            "mcp.gateways[0]",
            "no gateway or listener 'nope'",
        ),
        (
            {"llm": {"port": 18104, "models": []}, "mcp": {"port": 18104, "targets": []}},
            "llm.port",
            "also the mcp shortcut's",
        ),
    ],
)
def test_shortcut_placement_errors_name_the_key(tmp_path, config, path, reason):
    file = tmp_path / "bad.yaml"
    file.write_text(yaml.safe_dump(config))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(file), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 1
    assert f"{path}: " in r.stderr and reason in r.stderr, r.stderr
