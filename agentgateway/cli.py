"""``agentgateway``: run the gateway on a config file, inline config, or the embedded default."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agentgateway import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentgateway",
        description="LLM, MCP and A2A gateway. With no config it serves the embedded default config.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("-f", "--file", type=Path, help="config file (YAML or JSON); watched and hot-reloaded")
    source.add_argument("-c", "--config", help="inline config (YAML or JSON)")
    parser.add_argument(
        "--validate-only", action="store_true", help="check the config and exit: 0 if valid, 1 with the error"
    )
    parser.add_argument("-V", "--version", action="version", version=f"agentgateway {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Lets configs start Python MCP servers with this interpreter (the default config does).
    os.environ.setdefault("AGENTGATEWAY_PYTHON", sys.executable)
    from agentgateway.config.errors import ConfigError
    from agentgateway.server.supervisor import ConfigSource, load, run_supervisor

    source = ConfigSource(path=args.file, inline=args.config)
    if args.validate_only:
        try:
            load(source)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{source.describe()}: valid")
        return 0
    return run_supervisor(source)


if __name__ == "__main__":
    sys.exit(main())
