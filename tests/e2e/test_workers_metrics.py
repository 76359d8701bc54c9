"""``trackway serve --workers 2``: ``/metrics`` counts the whole server, whichever worker answers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.faults.harness import BIN, free_port
from tests.helpers import tracker_payload

pytestmark = pytest.mark.e2e
SOURCE = "workers-site"


def served_by_tracardi(text: str) -> float:
    """``trackway_requests_total{dialect="tracardi",status="200"}`` in a scrape (0 when absent)."""
    found = re.search(r'^trackway_requests_total\{dialect="tracardi",status="200"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.mark.parametrize("own_dir", [False, True])
def test_metrics_add_up_every_worker(tmp_path: Path, own_dir: bool) -> None:
    """With a directory of its own (``own_dir``), the test also sees that both workers counted."""
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale")  # an earlier run's file: removed at start
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TRACKWAY_", "PROMETHEUS_"))},
        "TRACKWAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'w.db'}",
        "TRACKWAY_LOG_LEVEL": "warning",
        **({"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)} if own_dir else {}),
    }
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracardi", "--name", "w", "--id", SOURCE],
        env=env, capture_output=True, check=True,
    )  # fmt: skip
    process = subprocess.Popen(
        [str(BIN / "trackway"), "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    sent = 40
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        time.sleep(1)  # both workers up (each answers /readyz once started)
        for index in range(sent):  # a new connection each: the kernel hands them to either worker
            response = httpx.post(
                f"{base}/track", json=tracker_payload(SOURCE, session=f"s{index}"), timeout=10
            )
            assert response.status_code == 200, response.text
        scrapes = [httpx.get(f"{base}/metrics", timeout=5).text for _ in range(6)]
        counters = sorted(path.name for path in metrics_dir.glob("counter_*.db"))
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert process.returncode == 0
    for text in scrapes:  # every scrape, from either worker, sees all the requests
        assert served_by_tracardi(text) == sent
        assert "trackway_events_stored_total" in text
    if own_dir:
        assert "counter_1.db" not in counters
        assert len(counters) >= 2, counters  # both workers served and counted
