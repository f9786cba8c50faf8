"""agentgateway: an LLM, MCP and A2A gateway with a Python core and a Rust hot path."""

# The package's version is the native crate's (maturin takes it from Cargo.toml), read from the
# extension rather than through importlib.metadata, whose import costs ~45 ms at every start of
# the daemon and of each worker.
from agentgateway._native import __version__ as __version__
