"""``cmc demo``: the service on a temp SQLite file, the POS simulator against it, rules and a QR shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports the whole service; let it cache bytecode (outside the repo) when this run
    # does not write any, or every run compiles it all again.
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "cmc-test-pycache"))
    return env


def test_cmc_demo_shows_tenders_rules_and_a_qr_code(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmc.cli",
            "demo",
            "--seconds",
            "3",
            "--exit",
            "--dir",
            str(tmp_path / "demo"),
        ],
        cwd=tmp_path,  # examples/demo.yaml is found without the repo as working directory
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert "demo.yaml applied" in out
    assert re.search(r"Service up at http://127\.0\.0\.1:\d+", out)
    assert "\x1b[Ksent " in out  # the simulator's live progress line (redrawn in place)

    sent = re.search(r"Tenders sent: (\d+) \((\d+) delivered\)", out)
    assert sent, out
    assert int(sent.group(1)) > 0
    assert sent.group(1) == sent.group(2)  # every tender reached CMC

    fired = re.search(r"Rules that fired:\n  mid-basket coupon: (\d+) times?", out)
    assert fired, out
    assert int(fired.group(1)) > 0

    qr = re.search(r"One QR code a rule produced \((http://127\.0\.0\.1:\d+/s/\S+)\):\n((?:.*\n){10,})", out)
    assert qr, out
    block = qr.group(2).splitlines()
    assert all(set(line) <= set(" ▀▄█") for line in block[:10])
    assert sum("█" in line for line in block) >= 10
    assert out.rstrip().endswith("Service stopped.\nData kept in " + str(tmp_path / "demo"))
    assert (tmp_path / "demo" / "cmc.db").exists()


def test_cmc_demo_keeps_serving_until_it_is_stopped(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    child = subprocess.Popen(
        [sys.executable, "-m", "cmc.cli", "demo", "--seconds", "1", "--rate", "2"],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = child.stdout.readline()
            lines.append(line)
            if "Press Ctrl-C to stop" in line or not line:
                break
        text = "".join(lines)
        assert "Still serving at" in text, text
        url = re.search(r"Service up at (http://127\.0\.0\.1:\d+)", text)
        assert url, text
        with urllib.request.urlopen(url.group(1) + "/health", timeout=5) as answer:
            assert answer.status == 200
        child.send_signal(signal.SIGTERM)
        rest, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        assert "Service stopped." in rest
    finally:
        if child.poll() is None:
            child.kill()
