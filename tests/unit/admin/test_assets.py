"""The UI's assets: the script parses (node --check), the page refers only to its own assets, and
they are package data (shipped in the wheel and the sdist)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UI = REPO / "agentgateway" / "admin" / "ui"


def test_the_script_parses(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: make test-deps installs it")
    module = tmp_path / "app.mjs"
    module.write_text((UI / "app.js").read_text())
    result = subprocess.run([node, "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_the_page_uses_only_its_own_assets() -> None:
    page = (UI / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sorted(refs) == ["/ui/app.css", "/ui/app.js", "data:,"]
    assert "<script>" not in page and "style=" not in page  # the CSP allows no inline script or style attribute
    assert "<!--status-->" in page


def test_the_assets_are_package_data() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    paths = [entry["path"] for entry in config["tool"]["maturin"]["include"]]
    assert "agentgateway/admin/ui/*" in paths
    assert sorted(p.name for p in UI.iterdir()) == ["app.css", "app.js", "index.html"]
