"""The ``cmc`` command: serve, migrate, apply (and more as the service grows)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection

from cmc import demo, logs, registry, screens
from cmc.clock import system_clock
from cmc.config import Settings
from cmc.errors import CmcError
from cmc.merchant import client as merchant_client
from cmc.registry import Directory, snapshot
from cmc.screens import Screen
from cmc.store import migrate
from cmc.store.database import Database, check_reachable


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        command: Callable[[argparse.Namespace, Settings], int] = args.command
        return command(args, settings)
    except CmcError as exc:
        print(f"cmc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cmc", description="CMC post-purchase marketing service.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(command=_serve)

    migrate_cmd = commands.add_parser("migrate", help="bring the database schema to the newest revision")
    migrate_cmd.set_defaults(command=_migrate)

    apply_cmd = commands.add_parser("apply", help="load a YAML registry file (idempotent)")
    apply_cmd.add_argument("file", help="registry file, e.g. examples/demo.yaml")
    apply_cmd.set_defaults(command=_apply)

    prune = commands.add_parser("prune", help="delete finished outbox rows and old screen events, in batches")
    prune.add_argument(
        "--before", required=True, type=_instant, help="ISO date or date-time (UTC if no offset)"
    )
    prune.add_argument("--batch", type=int, default=1000, help="rows per transaction (default 1000)")
    prune.set_defaults(command=_prune)

    rules_cmd = commands.add_parser("rules", help="POS Rules tools")
    rules_sub = rules_cmd.add_subparsers(required=True, metavar="ACTION")
    rules_test = rules_sub.add_parser(
        "test", help="explain what the rules would do with a transaction (writes nothing)"
    )
    rules_test.add_argument("file", help="a SendTransaction body as JSON (sessionId optional)")
    rules_test.add_argument("--pos-system", help="POS system id (default: the one that has the location)")
    rules_test.add_argument("--json", action="store_true", help="print the dry-run response as JSON")
    rules_test.set_defaults(command=_rules_test)

    sessions_cmd = commands.add_parser("sessions", help="interaction session keys")
    sessions_sub = sessions_cmd.add_subparsers(required=True, metavar="ACTION")
    rotate = sessions_sub.add_parser(
        "rotate-key", help="sign new sessions with a fresh key (sessions already issued stay valid)"
    )
    rotate.set_defaults(command=_rotate_session_key)

    screens_cmd = commands.add_parser("screens", help="customer-facing screens: the URLs that pair them")
    screens_sub = screens_cmd.add_subparsers(required=True, metavar="ACTION")
    for name, text, handler in (
        ("url", "print a terminal's screen URL (open it on the screen's device to pair it)", _screens_url),
        ("rotate", "give a screen a new URL; the old one stops working within seconds", _screens_rotate),
    ):
        action = screens_sub.add_parser(name, help=text)
        action.add_argument("--pos-system", required=True, help="POS system id")
        action.add_argument("--location", required=True, help="location id (posLocationId)")
        action.add_argument("--terminal", required=True, help="terminal id")
        action.set_defaults(command=handler)
    screens_list = screens_sub.add_parser("list", help="every screen of the registry and its URL")
    screens_list.add_argument("--pos-system", help="only this POS system's screens")
    screens_list.set_defaults(command=_screens_list)

    worker = commands.add_parser("worker", help="send the notification outbox until SIGINT/SIGTERM")
    worker.set_defaults(command=_worker)

    marketing = commands.add_parser(
        "marketing", help="a company's marketing through the merchant API: pull, push, simulate, activate"
    )
    merchant_client.add_arguments(marketing)
    marketing.set_defaults(command=merchant_client.run)

    demo_cmd = commands.add_parser(
        "demo", help="the service on a temp SQLite file with the demo registry, and a POS simulator"
    )
    demo.add_arguments(demo_cmd)
    demo_cmd.set_defaults(command=demo.run)
    return parser


def _open(settings: Settings) -> Database:
    db = settings.open_database()
    try:
        check_reachable(db)
    except CmcError:
        asyncio.run(db.close())
        raise
    return db


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    db = _open(settings)
    try:
        migrate.upgrade(db)
    finally:
        asyncio.run(db.close())
    print("database schema is current")
    return 0


def _apply(args: argparse.Namespace, settings: Settings) -> int:
    spec = registry.load_file(args.file)
    db = _open(settings)
    try:
        migrate.upgrade(db)
        report = db.run_sync(registry.apply, spec)
    finally:
        asyncio.run(db.close())
    print(report.summary())
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    if args.workers < 1:
        raise CmcError("--workers must be at least 1")
    logs.configure(settings.log_level)
    _migrate(args, settings)
    uvicorn.run(
        "cmc.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        log_level=settings.log_level,
        lifespan="on",
        # A worker imports the whole service before it answers the supervisor; on a busy machine
        # that takes longer than uvicorn's 5 s default, which would kill and restart it forever.
        timeout_worker_healthcheck=60,
        # Open CFS event streams never end by themselves; shutdown must not wait for them.
        timeout_graceful_shutdown=5,
    )
    return 0


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _prune(args: argparse.Namespace, settings: Settings) -> int:
    from cmc import retention

    if args.batch < 1:
        raise CmcError("--batch must be at least 1")
    db = _open(settings)
    migrate.upgrade(db)

    async def run() -> retention.PruneReport:
        try:
            return await retention.prune(db, before=args.before, batch=args.batch)
        finally:
            await db.close()

    print(asyncio.run(run()).summary())
    return 0


def _rules_test(args: argparse.Namespace, settings: Settings) -> int:
    from cmc import dry_run

    try:
        with open(args.file, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise CmcError(f"{args.file}: cannot read: {exc.strerror}") from None
    db = _open(settings)
    migrate.upgrade(db)

    async def run() -> dry_run.Explained:
        try:
            return await dry_run.explain_file(
                db, raw, pos_system_id=args.pos_system, source=args.file, now=system_clock()
            )
        finally:
            await db.close()

    answer = asyncio.run(run())
    print(answer.json if args.json else answer.text)
    return 0


def _rotate_session_key(args: argparse.Namespace, settings: Settings) -> int:
    from cmc import sessions
    from cmc.registry import store as registry_store

    if settings.session_keys is not None:
        raise CmcError("session keys come from CMC_SESSION_SECRETS: rotate them there (new one first)")
    now = system_clock()

    def rotate(conn: Connection) -> int:
        kept = sessions.rotate(conn, now=now, ttl=settings.session_ttl)
        registry_store.bump_version(conn)  # every process reloads its snapshot, keys included
        return kept

    db = _open(settings)
    try:
        migrate.upgrade(db)
        kept = db.run_sync(rotate)
    finally:
        asyncio.run(db.close())
    print(f"new sessions are signed with a fresh key; {kept} key(s) verify sessions still alive")
    return 0


def _screens_url(args: argparse.Namespace, settings: Settings) -> int:
    screen = Screen(args.pos_system, args.location, args.terminal)
    directory = _with_screens(settings, lambda conn: _screen_snapshot(conn, screen))
    print(_screen_url(directory, screen, settings))
    return 0


def _screens_rotate(args: argparse.Namespace, settings: Settings) -> int:
    screen = Screen(args.pos_system, args.location, args.terminal)

    def rotate(conn: Connection) -> Directory:
        _screen_snapshot(conn, screen)
        screens.rotate(conn, screen, now=system_clock())
        return snapshot.load(conn)

    directory = _with_screens(settings, rotate)
    print(_screen_url(directory, screen, settings))
    return 0


def _screens_list(args: argparse.Namespace, settings: Settings) -> int:
    directory = _with_screens(settings, _screen_snapshot)
    listed = sorted(
        (s, t) for t, s in directory.screens.items() if args.pos_system in (None, s.pos_system_id)
    )
    for screen, token in listed:
        print(f"{screen}  {screens.page_url(settings.base_url, token)}")
    if not listed:
        print("no customer-facing screens (terminals registered with cfs: true)", file=sys.stderr)
    return 0


def _with_screens(settings: Settings, fn: Callable[[Connection], Directory]) -> Directory:
    """Run ``fn`` in one write transaction of a migrated database."""
    db = _open(settings)
    try:
        migrate.upgrade(db)
        return db.run_sync(fn)
    finally:
        asyncio.run(db.close())


def _screen_snapshot(conn: Connection, screen: Screen | None = None) -> Directory:
    """The registry with its screen tokens (the key made if needed); ``screen`` must be one of them."""
    screens.ensure_key(conn)
    directory = snapshot.load(conn)
    if screen is not None and screen not in directory.screens.values():
        location = directory.locations.get((screen.pos_system_id, screen.location_id))
        why = "is not registered"
        if location is not None and screen.terminal_id in location.terminals:
            why = "is registered with cfs: false"
        raise CmcError(f"{screen}: no customer-facing screen (the terminal {why})")
    return directory


def _screen_url(directory: Directory, screen: Screen, settings: Settings) -> str:
    location = directory.locations[(screen.pos_system_id, screen.location_id)]
    return screens.page_url(settings.base_url, location.screen_tokens[screen.terminal_id])


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from cmc.outbox import run_worker

    logs.configure(settings.log_level)
    _migrate(args, settings)
    asyncio.run(run_worker(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
