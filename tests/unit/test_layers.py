"""The layers of the package (pyproject.toml, [tool.importlinter]): every module belongs to one,
and the contract fails when a lower layer imports an upper one, even for type checking only."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "agentgateway"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def _layer_modules() -> list[str]:
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    assert isinstance(layers, list)
    names: list[str] = []
    for layer in layers:
        for sep in ("|", ":"):
            layer = layer.replace(sep, " ")
        names += layer.split()
    return names


def _modules() -> list[str]:
    out = []
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def test_every_module_belongs_to_a_layer():
    layers = _layer_modules()
    # Package markers that hold no code of their own are not layers.
    containers = {"agentgateway", "agentgateway.server", "agentgateway.config"}
    outside = [
        m for m in _modules() if m not in containers and not any(m == x or m.startswith(x + ".") for x in layers)
    ]
    assert outside == [], "modules outside every layer of pyproject.toml's import-linter contract"
    for container in containers - {"agentgateway"}:
        init = PACKAGE / container.split(".", 1)[1] / "__init__.py"
        assert "import" not in init.read_text(), f"{init} must stay empty: it is in no layer"


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_contract_holds_and_fails_on_an_upward_import(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(PACKAGE, root / "agentgateway", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    kept = _lint(root)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    # core importing the worker, for type checking only, breaks the layers contract.
    context = root / "agentgateway" / "core" / "context.py"
    text = context.read_text()
    assert "from typing import Protocol\n" in text
    context.write_text(
        text.replace(
            "from typing import Protocol\n",
            "from typing import TYPE_CHECKING, Protocol\n\nif TYPE_CHECKING:\n"
            "    from agentgateway.server.worker import Worker  # noqa: F401\n",
            1,
        )
    )
    broken = _lint(root)
    assert broken.returncode != 0
    assert "agentgateway.core is not allowed to import agentgateway.server.worker" in broken.stdout
