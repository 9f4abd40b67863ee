"""``cmc-pos``: send a tender, inspect, drain and verify the outbox, simulate a shop.

Connection settings come from flags or the environment: ``CMC_URL``, ``CMC_POS_SYSTEM``,
``CMC_CLIENT_ID``, ``CMC_CLIENT_SECRET``, ``CMC_OUTBOX``. The defaults are the demo's (``make run``):
``http://127.0.0.1:8080``, POS system ``pax``, client ``pax-demo`` / ``s3cr3t!``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO, get_args

import httpx2

from cmc_client._client import Client
from cmc_client._errors import CmcClientError
from cmc_client._outbox import Outbox, OutboxState
from cmc_client._results import TenderResult
from cmc_client.simulate import simulate

DEMO_SECRET = "s3cr3t!"  # noqa: S105 - the demo registry's published secret (examples/demo.yaml)


def main(argv: Sequence[str] | None = None, *, http: httpx2.Client | None = None) -> int:
    """Run ``cmc-pos``; return the exit status. ``http`` lets tests and embedders pass a transport."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, http))
    except (CmcClientError, KeyError, OSError, ValueError) as exc:
        print(f"cmc-pos: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="cmc-pos", description="POS-side client for CMC.")
    parser.add_argument("--url", default=env("CMC_URL", "http://127.0.0.1:8080"), help="CMC base URL")
    parser.add_argument("--pos-system", default=env("CMC_POS_SYSTEM", "pax"), help="posSystemId")
    parser.add_argument("--client-id", default=env("CMC_CLIENT_ID", "pax-demo"), help="OAuth2 client id")
    parser.add_argument(
        "--client-secret", default=env("CMC_CLIENT_SECRET", DEMO_SECRET), help="OAuth2 client secret"
    )
    parser.add_argument("--outbox", default=env("CMC_OUTBOX", "cmc-outbox.sqlite3"), help="outbox file")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    send = commands.add_parser("send", help="post one tender from a JSON file ('-' for stdin)")
    send.add_argument("file")
    send.add_argument("--deadline", type=float, default=2.0)
    send.set_defaults(run=_send)

    outbox = commands.add_parser("outbox", help="inspect or drain the outbox").add_subparsers(
        required=True, metavar="ACTION"
    )
    outbox.add_parser("status", help="counts, oldest queued age, last error").set_defaults(run=_status)
    listing = outbox.add_parser("list", help="tenders oldest first")
    listing.add_argument("--state", choices=get_args(OutboxState))
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(run=_list)
    outbox.add_parser("drain", help="deliver queued tenders now").set_defaults(run=_drain)
    verify = outbox.add_parser("verify", help="check every delivered tender against CMC")
    verify.set_defaults(run=_verify)
    retry = outbox.add_parser("retry", help="move a rejected tender back to queued")
    retry.add_argument("id", type=int)
    retry.set_defaults(run=_retry)

    sim = commands.add_parser("simulate", help="N terminals ringing up sales")
    sim.add_argument(
        "--terminal-ids", default="term5,term6,term7", help="comma-separated terminal ids (the demo's)"
    )
    sim.add_argument("--location", default="loc5", help="posLocationId of the terminals (the demo's)")
    sim.add_argument("--rate", type=float, default=10.0, help="tenders per second, all terminals")
    sim.add_argument("--duration", type=float, default=10.0, help="seconds")
    sim.add_argument("--seed", type=int)
    sim.add_argument("--deadline", type=float, default=2.0)
    sim.set_defaults(run=_simulate)
    return parser


def _client(args: argparse.Namespace, http: httpx2.Client | None) -> Client:
    return Client(
        args.url, args.pos_system, args.client_id, args.client_secret, outbox_path=args.outbox, http=http
    )


def _send(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    with _client(args, http) as client:
        result = client.post_tender(json.loads(raw), deadline=args.deadline)
    show_result(result, sys.stdout)
    return 0 if result.status in ("delivered", "queued") else 2


def show_result(result: TenderResult, out: TextIO) -> None:
    """Print a tender result, its QR link, and the QR itself when ``segno`` is installed."""
    out.write(f"{result.status}  transactionId={result.transaction_id}  outbox id={result.outbox_id}\n")
    if result.reason:
        out.write(f"  reason: {result.reason}\n")
    if result.problem and result.problem.errors:
        for field, messages in result.problem.errors.items():
            out.write(f"  {field}: {'; '.join(messages)}\n")
    if result.response:
        data = result.response.data
        if data.profile:
            out.write(f"  profile: {data.profile.id} {data.profile.firstName or ''}\n")
        if result.cfs_carousel_url:
            out.write(f"  CFS carousel: {result.cfs_carousel_url}\n")
    if result.qr_link:
        out.write(f"  QR link: {result.qr_link}\n")
        out.write(terminal_qr(result.qr_link))


def terminal_qr(link: str) -> str:
    """The QR code as terminal text, or ``""`` when the optional ``segno`` is not installed."""
    try:
        import segno  # optional: not an SDK dependency
    except ImportError:
        return ""
    lines = []
    matrix = [list(row) for row in segno.make(link, error="m").matrix_iter(border=2)]
    for top, bottom in zip(matrix[::2], [*matrix[1::2], [0] * len(matrix[0])], strict=True):
        lines.append("".join(" ▀▄█"[bool(t) + 2 * bool(b)] for t, b in zip(top, bottom, strict=True)))
    return "\n".join(lines) + "\n"


def _status(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    status = Outbox(args.outbox).status(now=dt.datetime.now(dt.UTC).timestamp())
    for name in ("queued", "delivered", "rejected", "disabled", "not_accepted"):
        print(f"{name.replace('_', '-'):>13}: {getattr(status, name)}")
    if status.oldest_queued_age is not None:
        print(f"oldest queued: {status.oldest_queued_age:.0f} s ago")
    if status.last_error:
        print(f"   last error: {status.last_error}")
    return 0


def _list(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    for entry in Outbox(args.outbox).entries(args.state, limit=args.limit):
        when = dt.datetime.fromtimestamp(entry.created_at, dt.UTC).isoformat(timespec="seconds")
        note = entry.last_error or ""
        print(
            f"{entry.id:>6}  {entry.state:<12} {when}  {entry.transaction_id}  tries={entry.attempts}  {note}"
        )
    return 0


def _drain(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    with _client(args, http) as client:
        report = client.drain()
    print(
        f"delivered {report.delivered}, rejected {report.rejected}, skipped {report.skipped},"
        f" still queued {report.remaining}"
    )
    if report.error:
        print(f"stopped: {report.error}")
    return 0 if report.error is None else 3


def _verify(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    with _client(args, http) as client:
        report = client.verify()
    for found in report.discrepancies:
        print(f"{found.kind:>12}  {found.entry.id:>6}  {found.entry.transaction_id}  {found.detail}")
    print(f"{report.confirmed} of {report.checked} delivered tenders confirmed by CMC")
    return 0 if report.ok else 3


def _retry(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    entry = Outbox(args.outbox).retry(args.id, now=dt.datetime.now(dt.UTC).timestamp())
    print(f"{entry.id} {entry.transaction_id}: queued again")
    return 0


def _simulate(args: argparse.Namespace, http: httpx2.Client | None) -> int:
    terminals = [t.strip() for t in args.terminal_ids.split(",") if t.strip()]
    if not terminals:
        raise ValueError("--terminal-ids names no terminal")
    with _client(args, http).start() as client:
        report = simulate(
            lambda tender: client.post_tender(tender, deadline=args.deadline),
            terminals=terminals,
            location=args.location,
            rate=args.rate,
            duration=args.duration,
            seed=args.seed,
            progress=sys.stderr,
        )
        drained = client.drain()
    print(f"{report.sent} tenders in {report.elapsed:.1f} s from {len(terminals)} terminals")
    for status, count in sorted(report.statuses.items()):
        print(f"  {status:>12}: {count}")
    print("  latency ms: " + "  ".join(f"p{p} {report.percentile(p):.1f}" for p in (50, 90, 99, 100)))
    print(
        f"  after drain: {drained.remaining} still queued" + (f" ({drained.error})" if drained.error else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
