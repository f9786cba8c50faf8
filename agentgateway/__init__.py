"""agentgateway: an LLM, MCP and A2A gateway with a Python core and a Rust hot path."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("agentgateway")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"
