"""The config file's YAML text as nodes with positions: which line a config path is on, the
scalars of a text by path, and edits of scalars in place (comments and layout kept)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import yaml

Path = tuple[str | int, ...]

# libyaml's composer (as the config loader, msgspec, uses) bounds nesting and does not recurse
# in Python; the pure-Python one is the fallback.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_TOKEN = re.compile(r"""\[(\d+)\]|\[["']([^"']*)["']\]|\.?([^.\[\]]+)""")


class YamlTextError(Exception):
    """The text is not YAML; ``line`` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text`` (None when empty). Raises YamlTextError with the line."""
    try:
        return yaml.compose(text, Loader=_LOADER)
    except RecursionError:  # the pure-Python composer recurses once per level of nesting
        raise YamlTextError(0, "invalid YAML: nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise YamlTextError(line, f"invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise YamlTextError(0, f"invalid YAML: {exc}") from None


def parse_path(path: str) -> Path:
    """``binds[0].listeners[0].routes[2].policies.x`` → ("binds", 0, "listeners", 0, …)."""
    out: list[str | int] = []
    for m in _TOKEN.finditer(path):
        if m.group(1) is not None:
            out.append(int(m.group(1)))
        elif m.group(2) is not None:
            out.append(m.group(2))
        else:
            out.append(m.group(3))
    return tuple(out)


def line_of(root: yaml.Node | None, path: Path) -> tuple[int, bool]:
    """The 1-based line of the deepest node of ``path`` found in ``root`` (the key's line for a
    mapping entry), and whether the whole path was found. (1, False) when nothing matched."""
    line, node, found = 1, root, 0
    for step in path:
        if isinstance(node, yaml.MappingNode) and isinstance(step, str):
            entry = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == step), None)
            if entry is None:
                break
            line, node = entry[0].start_mark.line + 1, entry[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
            node = node.value[step]
            line = node.start_mark.line + 1
        else:
            break
        found += 1
    return line, found == len(path)


def scalars(root: yaml.Node | None, path: Path = ()) -> Iterator[tuple[Path, yaml.ScalarNode]]:
    """Every scalar value (not keys) of the tree with its path; a node reached twice through an
    alias is given once."""
    seen: set[int] = set()
    # A stack, not recursion: an edit may nest as deep as libyaml allows (1000 levels).
    stack: list[tuple[yaml.Node | None, Path]] = [(root, path)]
    while stack:
        node, at = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            yield at, node
        elif isinstance(node, yaml.MappingNode):
            entries = [(value, (*at, key.value)) for key, value in node.value if isinstance(key, yaml.ScalarNode)]
            stack.extend(reversed(entries))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, (*at, i)) for i, item in enumerate(node.value)]))


def replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end) range replaced; ranges must not overlap."""
    out = []
    last = 0
    for start, end, new in sorted(spans):
        if start < last:
            continue
        out.append(text[last:start])
        out.append(new)
        last = end
    out.append(text[last:])
    return "".join(out)


def dotted(path: Path) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out
