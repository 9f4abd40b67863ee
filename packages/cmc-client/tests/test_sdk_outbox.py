"""The outbox file: durability settings, clear errors, ordering, leases, status."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from cmc_client import Client, Outbox, OutboxError, Tender, wire
from cmc_client._tender import encode_tender, transaction_body, validate_tender


def add(outbox: Outbox, tx_id: str, now: float = 100.0) -> int:
    entry, _ = outbox.add(
        b'{"transactionId":"' + tx_id.encode() + b'"}',
        transaction_id=tx_id,
        company="",
        terminal_id="T",
        location_id="L",
        now=now,
        claim=False,
    )
    return entry.id


def test_wal_and_full_sync(outbox_path: Path) -> None:
    outbox = Outbox(outbox_path)
    db = outbox._db
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_corrupt_file_is_a_clear_error_at_construction(outbox_path: Path) -> None:
    outbox_path.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(OutboxError, match="not a usable SQLite file"):
        Client("https://cmc.test", "pax", "id", "secret", outbox_path=outbox_path)


def test_unopenable_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="outbox"):
        Outbox(tmp_path / "file" / "outbox.sqlite3")


def test_newer_schema_is_refused(outbox_path: Path) -> None:
    db = sqlite3.connect(outbox_path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(OutboxError, match="newer"):
        Outbox(outbox_path)


def test_claims_oldest_first_and_respects_leases(outbox_path: Path) -> None:
    outbox = Outbox(outbox_path, lease=10)
    first, second = add(outbox, "A"), add(outbox, "B")

    claimed = outbox.claim_next(now=100)
    assert claimed is not None
    assert claimed.id == first
    assert Outbox(outbox_path).claim(first, now=105) is None  # another process: still leased
    assert outbox.claim_next(now=100, exclude=[second]) is None
    late = outbox.claim_next(now=111)
    assert late is not None
    assert late.id == first


def test_status_counts_age_and_last_error(outbox_path: Path) -> None:
    outbox = Outbox(outbox_path)
    first = add(outbox, "A", now=100)
    add(outbox, "B", now=150)
    outbox.mark_rejected(first, b"{}", now=160)
    outbox.release(2, "ConnectError: refused", now=170)

    status = outbox.status(now=200)
    assert (status.queued, status.rejected, status.delivered) == (1, 1, 0)
    assert status.oldest_queued_age == 50
    assert status.last_error == "ConnectError: refused"
    assert status.last_error_at == 170


def test_entries_page_on_after_an_outbox_id(outbox_path: Path) -> None:
    outbox = Outbox(outbox_path)
    ids = [add(outbox, tx) for tx in "ABCDE"]
    outbox.mark_rejected(ids[2], b"{}", now=100)

    assert [e.transaction_id for e in outbox.entries(limit=2, after=ids[0])] == ["B", "C"]
    assert [e.transaction_id for e in outbox.entries("queued", after=ids[1])] == ["D", "E"]


def test_adding_a_transaction_id_again_returns_the_stored_row_unchanged(outbox_path: Path) -> None:
    outbox = Outbox(outbox_path)
    first = add(outbox, "A")
    entry, new = outbox.add(
        b"{}", transaction_id="A", company="", terminal_id="T", location_id="L", now=200.0, claim=True
    )
    assert (entry.id, new, entry.lease_until) == (first, False, None)
    assert entry.body == b'{"transactionId":"A"}'


def test_tender_survives_reopening(outbox_path: Path) -> None:
    add(Outbox(outbox_path), "A")
    assert [e.transaction_id for e in Outbox(outbox_path).entries("queued")] == ["A"]


def test_tender_has_every_transaction_field_but_the_session() -> None:
    request_fields = set(wire.TransactionRequest.__struct_fields__) - {"sessionId"}
    assert set(Tender.__struct_fields__) == request_fields


def test_transaction_body_is_the_typed_request() -> None:
    body = encode_tender(
        validate_tender(
            {"transactionId": "T", "terminalId": "A", "posLocationId": "L", "transactionAmount": "1.10"}
        )
    )
    spliced = transaction_body(body, "S-1")
    request = msgspec.json.decode(spliced, type=wire.TransactionRequest)
    assert request.sessionId == "S-1"
    assert str(request.transactionAmount) == "1.10"
    assert b'"transactionAmount":1.10' in spliced
