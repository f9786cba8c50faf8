"""delay through the real daemon: a fixed duration and a CEL one (milliseconds or a duration
text). Only lower bounds are asserted: the delay must have happened; how fast the rest is, is
not a test's business."""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import yaml

from tests.support.gateway import REPO, binds, free_port


def test_fixed_and_expression_delays(gateway, upstream):
    up = upstream()
    port = free_port()
    routes = [
        {
            "name": "fixed",
            "matches": [{"path": {"pathPrefix": "/fixed"}}],
            "policies": {"delay": {"duration": "300ms"}},
            "backends": [{"host": up.address}],
        },
        {
            "name": "cel",
            "matches": [{"path": {"pathPrefix": "/cel"}}],
            "policies": {
                "delay": {"duration": '"x-delay-ms" in request.headers ? int(request.headers["x-delay-ms"]) : 0'}
            },
            "backends": [{"host": up.address}],
        },
        {
            "name": "text",
            "matches": [{"path": {"pathPrefix": "/text"}}],
            "policies": {"delay": {"duration": '"250ms"'}, "directResponse": {"status": 204}},
        },
    ]
    gateway(binds(port, routes))
    base = f"http://127.0.0.1:{port}"

    def timed(path: str, **kw) -> tuple[int, float]:
        start = time.monotonic()
        r = httpx.get(f"{base}{path}", **kw)
        return r.status_code, time.monotonic() - start

    status, elapsed = timed("/fixed")
    assert status == 200 and elapsed >= 0.3
    status, elapsed = timed("/cel", headers={"x-delay-ms": "300"})
    assert status == 200 and elapsed >= 0.3
    # Not positive, not a number: no delay, and the request still goes through.
    for value in ("-5", "abc"):
        assert timed("/cel", headers={"x-delay-ms": value})[0] == 200
    assert timed("/cel")[0] == 200
    status, elapsed = timed("/text")
    assert status == 204 and elapsed >= 0.25  # the delay comes before a direct response


def test_bad_delays(tmp_path):
    for duration, expected in (("bogus(", "delay.duration"), ("2h", "at most")):
        config = binds(1, [{"policies": {"delay": {"duration": duration}}, "backends": [{"host": "127.0.0.1:9"}]}])
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        result = subprocess.run(
            [sys.executable, "-m", "agentgateway", "--validate-only", "-f", str(path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and expected in result.stderr, result.stderr
