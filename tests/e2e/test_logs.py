"""``trackway serve``'s log, as a real process writes it: JSON lines, no email, no whole IP,
no uvicorn access line (its query strings), one request line per request."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.faults.harness import BIN, free_port

pytestmark = pytest.mark.e2e
EMAIL = "log.reader@example.com"


def test_the_server_log_is_json_lines_without_personal_data(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TRACKWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}",
        "TRACKWAY_MASK_IP": "true",
        "TRACKWAY_LOG_LEVEL": "info",
    }
    env.pop("TRACKWAY_LOG_FORMAT", None)
    env.pop("TRACKWAY_ACCESS_LOG", None)
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracktor", "--name", "t", "--id", "tt"],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [str(BIN / "trackway"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        data = json.dumps({"email": EMAIL})
        ok = httpx.get(f"{base}/set?" + urlencode({"sid": "tt", "id": "7", "data": data}), timeout=5)
        assert ok.status_code == 200, ok.text
        refused = httpx.get(f"{base}/set?" + urlencode({"sid": "nope", "id": "7", "data": data}), timeout=5)
        assert refused.status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    assert process.returncode == 0
    written = (out + err).decode()
    assert written.strip()
    parsed = [json.loads(line) for line in written.splitlines() if line.strip()]  # every line is JSON
    requests = [line for line in parsed if line["logger"] == "trackway.request"]
    assert [(r["path"], r["status"], r["reason"], r["source"]) for r in requests[-2:]] == [
        ("/set", 200, None, "tt"),
        ("/set", 401, "unknown_source", "nope"),
    ]
    assert all(r["ip"] == "127.0.0.0" for r in requests)
    assert not [line for line in parsed if line["logger"] == "uvicorn.access"]
    assert EMAIL not in written and "log.reader" not in written
    assert "127.0.0.1:" not in written.replace(f"127.0.0.1:{port}", "")  # no client address:port
