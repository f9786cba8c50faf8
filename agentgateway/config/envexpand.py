"""``$VAR`` / ``${VAR}`` / ``${VAR:-default}`` expansion of the config text, as the reference
does with shell-style expansion before parsing. Full-line YAML comments are left alone so a
commented-out ``$SECRET`` does not have to be defined. ``$$`` is a literal ``$``, and so is a
``$name`` used as a mapping key (``$ref:``, ``"$schema":``): JSON Schema and OpenAPI documents
written inline use those keys, and a variable never stands for a key."""

import os
import re
from collections.abc import Mapping

from agentgateway.config.errors import ConfigError

# `$` followed by something that cannot start a name (e.g. the end anchor of a regex) is literal;
# `$$` is an escaped `$`; `$name:` + space is a mapping key, kept as written.
_VAR = re.compile(
    r"\$(?:(?P<dollar>\$)|(?P<key>[A-Za-z_][A-Za-z0-9_]*['\"]?:(?=\s|$))"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if "$" not in text:
        return text
    out: list[str] = []
    for lineno, line in enumerate(text.splitlines(keepends=True), start=1):
        if "$" not in line or line.lstrip().startswith("#"):
            out.append(line)
            continue

        def substitute(m: re.Match[str], lineno: int = lineno) -> str:
            if m.group("dollar"):
                return "$"
            if m.group("key"):
                return m.group(0)
            name = m.group("braced") or m.group("bare")
            value = env.get(name)
            if value is not None:
                return value
            default = m.group("default")
            if default is not None:
                return default
            raise ConfigError(f"line {lineno}", f"environment variable ${name} is not set")

        out.append(_VAR.sub(substitute, line))
    return "".join(out)


# A variable named as a secret: ...TOKEN..., ...SECRET..., ...PASSWORD..., ...CREDENTIAL...,
# ...PRIVATE..., or a part KEY, APIKEY, AUTH, PASS, PAT (``OPENAI_API_KEY``, ``DB_PASS``) between
# underscores. ``KEYCLOAK_URL`` or ``PWD`` are not.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|(?:^|_)(?:KEY|APIKEY|AUTH|PASS|PAT)(?:_|$)", re.IGNORECASE
)


def secret_variable_values(text: str, environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The values of the variables ``text`` refers to whose names say they hold a secret (set in
    the environment; a default written in the file is no secret of the environment). What the
    gateway shows of its config (/config_dump, the UI, reload errors) redacts them wherever they
    ended up, a field the schema does not mark as secret included."""
    env = os.environ if environ is None else environ
    if "$" not in text:
        return frozenset()
    found = set()
    for line in text.splitlines():
        if "$" not in line or line.lstrip().startswith("#"):
            continue
        for m in _VAR.finditer(line):
            name = m.group("braced") or m.group("bare")
            if name and _SECRET_NAME.search(name):
                value = env.get(name)
                if value:
                    found.add(value)
    return frozenset(found)
