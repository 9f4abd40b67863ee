"""A small run of bench/analytics.py: it seeds, times every endpoint through the app, and says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_analytics_benchmark_runs_at_a_small_size() -> None:
    ran = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "analytics.py"),
            "--sales",
            "700",
            "--noise",
            "70",
            "--requests",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for endpoint in (
        "summary (30 days)",
        "timeseries tenders by hour",
        "lift (days=30)",
        "customers by name",
        "customer timeline",
        "messages state=dead",
        "retry a dead message",
    ):
        assert f"| {endpoint}" in ran.stdout, endpoint
    assert "every endpoint under 200 ms p99): met" in ran.stdout
    assert "rolled up the history in" in ran.stdout
