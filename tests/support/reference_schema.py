"""agentgateway's config schema as the tests see it: the live file when it is on this machine, else
a committed *interface snapshot* derived from it.

The snapshot keeps what a config loader must accept (key names, JSON types, enum and const values,
one-of / any-of alternatives, required keys, numeric bounds, references between definitions) and
drops everything else (descriptions, titles, defaults, examples). It is regenerated with

    .venv/bin/python -m tests.support.reference_schema --update

and ``tests/unit/config/test_schema_walk.py`` fails when it no longer matches the live schema.
``--check`` exits non-zero when it is stale; ``--readme`` prints the README's key table (see
``tests/support/schema_walk.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

LIVE = Path(os.environ.get("AGENTGATEWAY_REFERENCE_SCHEMA", "/work/shared/reference/agentgateway-config.schema.json"))
SNAPSHOT = Path(__file__).resolve().parent.parent / "data" / "agentgateway-schema-keys.json"

# JSON Schema keywords that describe the interface; any other keyword (description, title,
# default, examples, writeOnly, $schema, ...) is prose or documentation and is dropped.
_STRUCTURAL = frozenset(
    {
        "type",
        "$ref",
        "$defs",
        "properties",
        "required",
        "items",
        "additionalProperties",
        "unevaluatedProperties",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "enum",
        "const",
        "format",
        "minimum",
        "maximum",
        "minItems",
        "uniqueItems",
        "deprecated",
    }
)
# Keywords whose value maps names (of keys, of definitions) to schemas.
_NAMED = frozenset({"properties", "$defs"})


def derive(node: Any) -> Any:
    """The interface of a schema node: structural keywords only, recursively."""
    if isinstance(node, list):
        return [derive(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _STRUCTURAL:
            continue
        if key in _NAMED:
            out[key] = {name: derive(sub) for name, sub in value.items()}
        elif key in ("enum", "const", "required"):
            out[key] = value
        else:
            out[key] = derive(value)
    return out


def live_interface() -> dict[str, Any] | None:
    """The interface derived from the live schema, or None when the file is not here."""
    if not LIVE.is_file():
        return None
    result: dict[str, Any] = derive(json.loads(LIVE.read_text(encoding="utf-8")))
    return result


def snapshot() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    return result


def load() -> tuple[dict[str, Any], str]:
    """(schema interface, where it came from): the live schema when present, else the snapshot."""
    live = live_interface()
    if live is not None:
        return live, str(LIVE)
    return snapshot(), str(SNAPSHOT)


def render(interface: dict[str, Any]) -> str:
    # the schema's own order: the walk visits keys in it
    return json.dumps(interface, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--update", action="store_true", help="rewrite the snapshot from the live schema")
    group.add_argument("--check", action="store_true", help="exit 1 when the snapshot is stale")
    group.add_argument("--readme", action="store_true", help="print the README's schema key table")
    args = parser.parse_args(argv)
    if args.readme:
        from tests.support.schema_walk import readme_block, walk

        print(readme_block(walk()), end="")
        return 0
    live = live_interface()
    if live is None:
        print(f"the live schema is not at {LIVE} (set AGENTGATEWAY_REFERENCE_SCHEMA)", file=sys.stderr)
        return 2
    if args.update:
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(render(live), encoding="utf-8")
        print(f"wrote {SNAPSHOT}")
        return 0
    if not SNAPSHOT.is_file() or SNAPSHOT.read_text(encoding="utf-8") != render(live):
        print(f"{SNAPSHOT} is stale: run python -m tests.support.reference_schema --update", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
