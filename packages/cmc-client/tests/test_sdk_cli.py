"""cmc-pos: send, outbox status/list/drain/retry/verify, simulate (against the fake CMC)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import msgspec
import pytest
from sdk_fake_cmc import FakeCmc

from cmc_client import wire
from cmc_client._cli import _parser, main, terminal_qr

TX = {"transactionId": "T-1", "terminalId": "term5", "posLocationId": "loc5", "transactionAmount": 9.5}


def run(argv: list[str], cmc: FakeCmc, outbox: Path) -> int:
    with httpx2.Client(transport=cmc.sync_transport()) as http:
        return main(["--url", "https://cmc.test", "--outbox", str(outbox), *argv], http=http)


@pytest.fixture
def tx_file(tmp_path: Path) -> Path:
    path = tmp_path / "tx.json"
    path.write_text(json.dumps(TX))
    return path


def test_the_defaults_are_the_demo_registrys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CMC_URL", "CMC_POS_SYSTEM", "CMC_CLIENT_ID", "CMC_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    args = _parser().parse_args(["simulate"])
    assert (args.url, args.pos_system, args.client_id, args.client_secret) == (
        "http://127.0.0.1:8080",
        "pax",
        "pax-demo",
        "s3cr3t!",
    )
    assert (args.terminal_ids, args.location) == ("term5,term6,term7", "loc5")


def test_send_prints_the_result_and_qr_link(
    cmc: FakeCmc, outbox_path: Path, tx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["send", str(tx_file)], cmc, outbox_path) == 0
    out = capsys.readouterr().out
    assert out.startswith("delivered  transactionId=T-1")
    assert "QR link: https://cmc.test/s/abc1" in out


def test_outbox_commands(
    cmc: FakeCmc, outbox_path: Path, tx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmc.faults["transaction"] = [400]
    assert run(["send", str(tx_file)], cmc, outbox_path) == 2

    assert run(["outbox", "status"], cmc, outbox_path) == 0
    assert "rejected: 1" in capsys.readouterr().out
    assert run(["outbox", "list", "--state", "rejected"], cmc, outbox_path) == 0
    assert "T-1" in capsys.readouterr().out
    assert run(["outbox", "retry", "1"], cmc, outbox_path) == 0
    assert run(["outbox", "drain"], cmc, outbox_path) == 0
    assert "delivered 1" in capsys.readouterr().out
    assert run(["outbox", "retry", "1"], cmc, outbox_path) == 1  # delivered: nothing to retry


def test_drain_that_stops_exits_3(cmc: FakeCmc, outbox_path: Path, tx_file: Path) -> None:
    cmc.faults["token"] = ["network"] * 4
    assert run(["send", str(tx_file)], cmc, outbox_path) == 0  # queued is fine for a till
    assert run(["outbox", "drain"], cmc, outbox_path) == 3


def test_verify_exits_nonzero_when_a_delivered_tender_is_not_in_cmc(
    cmc: FakeCmc, outbox_path: Path, tx_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["send", str(tx_file)], cmc, outbox_path) == 0
    capsys.readouterr()
    assert run(["outbox", "verify"], cmc, outbox_path) == 0
    assert "1 of 1 delivered tenders confirmed by CMC" in capsys.readouterr().out

    cmc.committed.clear()
    assert run(["outbox", "verify"], cmc, outbox_path) == 3
    out = capsys.readouterr().out
    assert "missing" in out
    assert "T-1" in out
    assert "0 of 1 delivered tenders confirmed by CMC" in out


def test_simulate_rings_up_the_demo_terminals_and_reports_percentiles(
    cmc: FakeCmc, outbox_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["simulate", "--rate", "60", "--duration", "0.4", "--seed", "1"]
    assert run(argv, cmc, outbox_path) == 0
    out = capsys.readouterr().out
    assert "delivered" in out
    assert "p99" in out
    assert len(cmc.committed) >= 5
    starts = [msgspec.json.decode(b, type=wire.StartInteractionRequest) for b in cmc.bodies("start")]
    assert {s.terminalId for s in starts} <= {"term5", "term6", "term7"}
    assert {s.posLocationId for s in starts} == {"loc5"}


def test_terminal_qr_renders_blocks() -> None:
    pytest.importorskip("segno")
    assert "█" in terminal_qr("https://cmc.test/s/abc1")
