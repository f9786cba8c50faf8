"""The config editor's redacted view and the way back: secrets shown as <redacted> (by the schema's
markers and by value, comments included), put back server-side when left untouched, replaced when
typed, refused when a placeholder was changed or moved; error paths placed at their lines; the
atomic write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentgateway.admin import yamltext
from agentgateway.admin.editor import EditError, Redactor, write_atomically
from agentgateway.config.loader import decode_config
from agentgateway.config.schema import LocalConfig

KEY = "sk-provider-secret-0123456789"
RAW = f"""# gateway; an old key was sk-proj-abcdefghijklmnopqrstuvwxyz1234
llm:
  port: 4000
  models:
  - name: gpt
    provider: openAI
    params:
      apiKey: {KEY}   # the key
      baseUrl: http://user:hunter22@127.0.0.1:9/v1
  - name: env
    provider: openAI
    params:
      apiKey: "${{UI_TEST_UNSET_KEY}}"
  - name: block
    provider: openAI
    params:
      apiKey: |
        multi-line-secret
        second-line
      model: x
binds:
- port: 8080
  listeners:
  - routes:
    - name: r
      policies:
        requestHeaderModifier:
          set:
            authorization: Bearer header-secret-value
            x-plain: visible
"""


@pytest.fixture
def redactor() -> Redactor:
    os.environ.pop("UI_TEST_UNSET_KEY", None)
    return Redactor(RAW, LocalConfig())


def test_the_view_shows_no_secret(redactor: Redactor) -> None:
    view = redactor.view
    for secret in (
        KEY,
        "hunter22",
        "multi-line-secret",
        "header-secret-value",
        "sk-proj-abcdefghijklmnopqrstuvwxyz1234",
    ):
        assert secret not in view, secret
    assert 'apiKey: "<redacted>"   # the key' in view
    assert "http://user:<redacted>@127.0.0.1:9/v1" in view
    assert 'apiKey: "${UI_TEST_UNSET_KEY}"' in view  # a bare reference is no secret
    assert "x-plain: visible" in view and "# gateway; an old key was <redacted>" in view
    assert view.count("\n") < RAW.count("\n")  # the block scalar became one line; the rest kept its layout


def test_untouched_placeholders_get_their_secrets_back(redactor: Redactor) -> None:
    edited = redactor.view.replace("name: env", "name: renamed")
    restored = redactor.restore(edited)
    assert f"apiKey: {KEY}   # the key" in restored
    assert "baseUrl: http://user:hunter22@127.0.0.1:9/v1" in restored
    assert "authorization: Bearer header-secret-value" in restored
    assert "name: renamed" in restored
    cfg = decode_config(restored.replace("${UI_TEST_UNSET_KEY}", "k"))
    assert cfg.llm is not None and cfg.llm.models[2].params is not None
    assert cfg.llm.models[2].params.api_key == "multi-line-secret\nsecond-line\n"
    # The comment's secret is not config: it stays redacted.
    assert "sk-proj-" not in restored


def test_a_typed_value_replaces_the_secret(redactor: Redactor) -> None:
    edited = redactor.view.replace('apiKey: "<redacted>"   # the key', "apiKey: sk-new-value-typed   # the key")
    restored = redactor.restore(edited)
    assert "sk-new-value-typed" in restored and KEY not in restored


@pytest.mark.parametrize(
    "change",
    [
        # A placeholder edited around: its secret cannot be put back.
        ('apiKey: "<redacted>"   # the key', 'apiKey: "x<redacted>"   # the key'),
        # A placeholder moved where the file has no secret.
        ("x-plain: visible", 'x-plain: "<redacted>"'),
    ],
)
def test_a_changed_or_moved_placeholder_is_refused_at_its_line(redactor: Redactor, change: tuple[str, str]) -> None:
    edited = redactor.view.replace(*change)
    with pytest.raises(EditError) as caught:
        redactor.restore(edited)
    error = caught.value.errors[0]
    assert change[1] in edited.splitlines()[error["line"] - 1]
    assert "type the value" in error["message"]


def test_placeholders_of_a_reordered_list_are_not_swapped(redactor: Redactor) -> None:
    """The secrets are put back by path: moving an entry changes its path, so it is refused."""
    lines = redactor.view.splitlines(keepends=True)
    start = next(i for i, x in enumerate(lines) if "- name: gpt" in x)
    end = next(i for i, x in enumerate(lines) if "- name: env" in x)
    block = lines[start:end]
    reordered = lines[:start] + lines[end : end + 4] + block + lines[end + 4 :]
    with pytest.raises(EditError):
        redactor.restore("".join(reordered))


def test_error_paths_map_to_lines() -> None:
    text = "binds:\n- port: 8080\n  listeners:\n  - routes:\n    - name: a\n    - name: b\n      policies:\n        bogus: 1\n"
    root = yamltext.compose(text)
    assert yamltext.line_of(root, yamltext.parse_path("binds[0].listeners[0].routes[1].policies.bogus")) == (8, True)
    assert yamltext.line_of(root, yamltext.parse_path("binds[0].listeners[0].routes[1].policies.missing")) == (7, False)
    assert yamltext.line_of(root, yamltext.parse_path("binds[3]")) == (1, False)
    assert yamltext.parse_path('gateways["a.b"].listeners[0]') == ("gateways", "a.b", "listeners", 0)
    with pytest.raises(yamltext.YamlTextError) as caught:
        yamltext.compose("a: [1, 2\nb: 3\n")
    assert caught.value.line >= 2


def test_the_write_is_atomic_and_keeps_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("old\n")
    path.chmod(0o640)
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    write_atomically(link, "new\n")
    assert link.is_symlink() and path.read_text() == "new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "link.yaml"]
