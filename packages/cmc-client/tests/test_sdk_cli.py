"""cmc-pos: send, outbox status/list/drain/retry, simulate (against the fake CMC)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import pytest
from sdk_fake_cmc import FakeCmc

from cmc_client.cli import main, terminal_qr

TX = {"transactionId": "T-1", "terminalId": "TERM-05", "posLocationId": "LOC123", "transactionAmount": 9.5}


def run(argv: list[str], cmc: FakeCmc, outbox: Path) -> int:
    with httpx2.Client(transport=cmc.transport()) as http:
        return main(["--url", "https://cmc.test", "--client-id", "pos-demo", "--client-secret", "s3cr3t!",
                     "--outbox", str(outbox), *argv], http=http)  # fmt: skip


def test_send_prints_the_result_and_qr_link(
    cmc: FakeCmc, outbox_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tx = tmp_path / "tx.json"
    tx.write_text(json.dumps(TX))

    assert run(["send", str(tx)], cmc, outbox_path) == 0
    out = capsys.readouterr().out
    assert out.startswith("delivered  transactionId=T-1")
    assert "QR link: https://cmc.test/s/abc1" in out


def test_outbox_commands(
    cmc: FakeCmc, outbox_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tx = tmp_path / "tx.json"
    tx.write_text(json.dumps(TX))
    cmc.faults["transaction"] = [400]
    assert run(["send", str(tx)], cmc, outbox_path) == 2

    assert run(["outbox", "status"], cmc, outbox_path) == 0
    assert "rejected: 1" in capsys.readouterr().out
    assert run(["outbox", "list", "--state", "rejected"], cmc, outbox_path) == 0
    assert "T-1" in capsys.readouterr().out
    assert run(["outbox", "retry", "1"], cmc, outbox_path) == 0
    assert run(["outbox", "drain"], cmc, outbox_path) == 0
    assert "delivered 1" in capsys.readouterr().out
    assert run(["outbox", "retry", "1"], cmc, outbox_path) == 1  # delivered: nothing to retry


def test_simulate_reports_percentiles(
    cmc: FakeCmc, outbox_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--terminals", "3", "--rate", "60", "--duration", "0.4", "--seed", "1"]
    assert run(argv, cmc, outbox_path) == 0
    out = capsys.readouterr().out
    assert "delivered" in out
    assert "p99" in out
    assert len(cmc.committed) >= 5


def test_terminal_qr_renders_blocks() -> None:
    pytest.importorskip("segno")
    assert "█" in terminal_qr("https://cmc.test/s/abc1")
