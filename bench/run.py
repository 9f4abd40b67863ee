"""``make bench``: the real service against the framework-free baseline, same load, same machine.

Three servers, each a subprocess on loopback with a fresh database, loaded in turn by ``load.py``'s
generator for a bounded time:

- ``cmc``: the service with the demo registry's POS Rules active (QR widgets, CFS templates, emails
  and SMS queued and dispatched by the in-process outbox dispatcher);
- ``cmc-no-rules``: the same registry without its rules (the figure the rules' cost is measured from);
- ``baseline``: a framework-free raw ASGI + msgspec server doing the minimal durable work on the same
  engine (stdlib sqlite3, or an asyncpg pool with ``--database postgresql``).

Each server's row also gives its CPU per tender over the measured window, from ``/proc``: the
server's processes, PostgreSQL's (every process of the local server, which serves only the
benchmark here) and the load generator's (this process), then the CPU time the hypervisor stole
(``steal``: a run where it is high measured the machine's neighbours as much as the server); the
summary compares the two cmc servers' server + database CPU per tender.
The table gives ours/baseline against the targets (SQLite: at least 0.40, p99 under 25 ms;
PostgreSQL: at least 0.45, p99 under 50 ms; 16 connections) and the cost of the rules (within 15%).
``--database postgresql --workers N`` runs on PostgreSQL (throw-away databases on
``CMC_BENCH_POSTGRES_URL``, default the local server's ``test``) and prints tenders/s per worker.
``--runs N`` repeats the set N times, servers interleaved, and prints each run and the mean ratio.
``--record`` appends the figures and a description of the machine to ``bench/RESULTS.md``.

Run: ``.venv/bin/python bench/run.py [--duration 15] [--runs 5] [--only cmc,baseline] [--record]``
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import yaml

import load

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
"""The virtualenv's bin directory: ``cmc`` is installed next to the Python running us."""
DEMO_REGISTRY = ROOT / "examples" / "demo.yaml"
RESULTS = ROOT / "bench" / "RESULTS.md"
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
TARGETS = {"sqlite": (0.40, 25.0), "postgresql": (0.45, 50.0)}
"""Per engine: the least ours/baseline and the most p99 (ms) cmc without rules may show."""
SERVERS = ("cmc", "cmc-no-rules", "baseline")
RULES_BUDGET = 0.15
POSTGRES_URL = os.environ.get("CMC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 30) -> str:
    """The end of a server's log, to explain a failure."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Poll ``GET /health`` until 200; fail early if the server exits, or after STARTUP_TIMEOUT."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not healthy after {STARTUP_TIMEOUT:.0f} s:\n{log_tail(log)}")


@contextmanager
def serving(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """Run a server subprocess until the block ends (yields its pid), then stop it (SIGTERM, SIGKILL
    if it hangs)."""
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_healthy(process, port, log)
            yield process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT)


TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces), or [] once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _processes() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        fields = _stat(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / TICKS_PER_SECOND


def with_descendants(pid: int) -> list[int]:
    """``pid`` and every process under it (a server's workers)."""
    parents = {p: int(fields[1]) for p in _processes() if (fields := _stat(p))}
    found, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def postgres_processes() -> list[int]:
    """Every process of the local PostgreSQL server: its backends and its background writers."""
    names = {}
    for pid in _processes():
        with contextlib.suppress(OSError):
            names[pid] = Path(f"/proc/{pid}/comm").read_text().strip()
    return [pid for pid, name in names.items() if name == "postgres"]


def stolen_seconds() -> float:
    """CPU time the hypervisor gave other guests while this machine's processes were ready to run
    (``steal`` in ``/proc/stat``, all cores): where it grows, tenders/s measure the neighbours too."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / TICKS_PER_SECOND if len(fields) > 8 else 0.0


def cpu_meter(server: int, kind: str) -> Callable[[], dict[str, float]]:
    """What ``load.Options.cpu`` reads: the server's CPU, PostgreSQL's (the whole local server,
    which serves only the benchmark here), the load generator's own (this process) and the time
    stolen by the hypervisor."""

    def read() -> dict[str, float]:
        used = {"server": cpu_seconds(with_descendants(server)), "load": time.process_time()}
        if kind == "postgresql":
            used["database"] = cpu_seconds(postgres_processes())
        used["stolen"] = stolen_seconds()
        return used

    return read


def without_rules(tmp: Path) -> Path:
    """The demo registry with every company's rules removed (widgets and templates stay)."""
    data = yaml.safe_load(DEMO_REGISTRY.read_text())
    for pos in data["posSystems"]:
        for company in pos.get("companies", []):
            company.pop("rules", None)
    path = tmp / "demo-no-rules.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def database(tmp: Path, kind: str, name: str) -> Iterator[str]:
    """A fresh database URL: a SQLite file in ``tmp``, or a throw-away PostgreSQL database."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / (name + '.db')}"
        return
    db_name = f"cmc_bench_{name.replace('-', '_')}_{os.getpid()}"
    admin = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    _psql(admin, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    _psql(admin, f'CREATE DATABASE "{db_name}"')
    try:
        yield admin.rsplit("/", 1)[0] + "/" + db_name
    finally:
        _psql(admin, f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


def _psql(url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def bench_cmc(
    tmp: Path, options: load.Options, *, registry: Path, kind: str, workers: int, name: str
) -> load.Result:
    """The real service: apply ``registry`` to a fresh database, serve with ``workers``, load it."""
    if not (BIN / "cmc").exists() or not DEMO_REGISTRY.exists():
        raise SystemExit(f"need {BIN / 'cmc'} and {DEMO_REGISTRY}; run `make install` first")
    with database(tmp, kind, name) as url:
        env = {**os.environ, "CMC_DATABASE_URL": url, "CMC_LOG_LEVEL": "warning"}
        apply = subprocess.run(
            [str(BIN / "cmc"), "apply", str(registry)], env=env, cwd=ROOT, capture_output=True, timeout=120
        )
        if apply.returncode != 0:
            raise SystemExit(f"cmc apply failed:\n{apply.stdout.decode()}{apply.stderr.decode()}")
        port = free_port()
        argv = [
            str(BIN / "cmc"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
        with serving(argv, env, port, tmp / f"{name}.log") as pid:
            return load.run(replace(options, url=f"http://127.0.0.1:{port}", cpu=cpu_meter(pid, kind)))


def bench_baseline(tmp: Path, options: load.Options, *, kind: str) -> load.Result:
    """The framework-free baseline on the same engine, same load."""
    port = free_port()
    with database(tmp, kind, "baseline") as url:
        store = ["--postgres", url] if kind == "postgresql" else ["--db", url.removeprefix("sqlite:///")]
        argv = [sys.executable, str(ROOT / "bench" / "baseline.py"), "--port", str(port), *store]
        with serving(argv, dict(os.environ), port, tmp / "baseline.log") as pid:
            return load.run(replace(options, url=f"http://127.0.0.1:{port}", cpu=cpu_meter(pid, kind)))


def machine() -> str:
    """One line describing where the figures were taken."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line), "?"
    )
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else "MemTotal: 0 kB"
    mem_kib = int(meminfo.split("MemTotal:", 1)[1].split()[0])
    cores = len(os.sched_getaffinity(0))
    return (
        f"{model}, {cores} cores, {mem_kib / 1024**2:.1f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )


def git_revision() -> str:
    """Short commit of the tree measured, marked when it had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, timeout=10
        )
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    revision = head.stdout.decode().strip() or "no commit"
    return revision + (" + uncommitted changes" if dirty.stdout.strip() else "")


def table(results: dict[str, load.Result], labels: dict[str, str], *, workers: int = 1) -> list[str]:
    """Markdown table of the figures, with the ratio ours/baseline and the rules' cost when they ran."""
    rows = [
        "| server | tenders/s | per worker | p50 ms | p99 ms | errors "
        "| CPU µs/tender: server, database, load; stolen |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        per = r.tenders_per_s / (1 if name == "baseline" else workers)
        figures = f"{r.tenders_per_s:,.0f} | {per:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors}"
        rows.append(f"| {labels[name]} | {figures} | {_cpu(r)} |")
    for name in ("cmc-no-rules", "cmc"):
        if name not in results or "baseline" not in results:
            continue
        ours, base = results[name], results["baseline"]
        rows.append(
            f"| **{name} / baseline** | **{ratio(ours, base):.2f}** | | {_times(ours.p50_ms, base.p50_ms)} | "
            f"{_times(ours.p99_ms, base.p99_ms)} | | |"
        )
    return rows


def _cpu(result: load.Result) -> str:
    if not result.cpu_us:
        return "-"
    # SQLite runs inside the server process: its CPU is the server's.
    parts = [result.cpu_us.get(p) for p in ("server", "database", "load", "stolen")]
    server, database, generator, stolen = ("in server" if us is None else f"{us:,.0f}" for us in parts)
    return f"{server}, {database}, {generator}; {stolen}"


def cpu_per_tender(result: load.Result) -> float:
    """Server and database CPU per tender (µs): what the machine spends on one, load generator aside."""
    return result.cpu_us.get("server", 0.0) + result.cpu_us.get("database", 0.0)


def ratio(ours: load.Result, base: load.Result) -> float:
    """Ours / baseline tenders per second."""
    return ours.tenders_per_s / base.tenders_per_s if base.tenders_per_s else 0.0


def _times(ours: float, base: float) -> str:
    """How many times the baseline's latency ours is."""
    return f"{ours / base:.1f}x" if base else "-"


def verdicts(results: dict[str, load.Result], kind: str) -> list[str]:
    """The targets, checked: cmc without rules against the baseline, and the rules' cost."""
    notes = []
    least, most_p99 = TARGETS[kind]
    if "cmc-no-rules" in results and "baseline" in results:
        ours = results["cmc-no-rules"]
        value = ratio(ours, results["baseline"])
        met = value >= least and ours.p99_ms < most_p99
        notes.append(
            f"cmc-no-rules vs baseline ({kind} target >= {least:.2f}, p99 < {most_p99:.0f} ms): "
            f"{'met' if met else 'NOT met'} ({value:.2f}, p99 {ours.p99_ms:.1f} ms); product goal 0.50"
        )
    if "cmc" in results and "cmc-no-rules" in results:
        rules, bare = results["cmc"], results["cmc-no-rules"]
        cost = 1 - rules.tenders_per_s / bare.tenders_per_s if bare.tenders_per_s else 0.0
        notes.append(
            f"rules' cost (<= {RULES_BUDGET:.0%} of tenders/s): "
            f"{'met' if cost <= RULES_BUDGET else 'NOT met'} "
            f"({cost:.0%} fewer tenders/s with the demo rules active)"
        )
    return notes


def record(runs: list[dict[str, load.Result]], labels: dict[str, str], options: load.Options, *, kind: str,
           workers: int) -> None:  # fmt: skip
    """Append a dated section with the machine, the load, each run's table and the mean to RESULTS.md."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"### {stamp} (commit {git_revision()})",
        "",
        f"- Machine: {machine()}",
        f"- Load: {options.concurrency} keep-alive connections on loopback, {options.warmup:.0f} s warm-up, "
        f"{options.duration:.0f} s measured; a tender = startInteraction + transaction (3 products, a "
        f"customer with email and phone from a pool of {load.CUSTOMER_POOL_SIZE:,}, loyalty card for ~40%); "
        "the load generator shares the machine's cores with the server.",
        "",
    ]
    for number, results in enumerate(runs, start=1):
        if len(runs) > 1:
            lines += [f"Run {number} of {len(runs)}:", ""]
        lines += [
            *table(results, labels, workers=workers),
            "",
            *[f"{note}.\n" for note in verdicts(results, kind)],
        ]
    if len(runs) > 1:
        lines += [*summary(runs), ""]
    with RESULTS.open("a") as out:
        out.write("\n".join(lines) + "\n")
    print(f"recorded in {RESULTS.relative_to(ROOT)}")


def summary(runs: list[dict[str, load.Result]]) -> list[str]:
    """The mean of each run's ratios (and the range), and the mean rules' cost."""
    lines = []
    for name in ("cmc-no-rules", "cmc"):
        values = [ratio(r[name], r["baseline"]) for r in runs if name in r and "baseline" in r]
        p99 = [r[name].p99_ms for r in runs if name in r]
        if values:
            lines.append(
                f"- {name} / baseline over {len(values)} runs: mean {sum(values) / len(values):.2f} "
                f"(range {min(values):.2f}-{max(values):.2f}); p99 {min(p99):.1f}-{max(p99):.1f} ms"
            )
    costs = [
        1 - r["cmc"].tenders_per_s / r["cmc-no-rules"].tenders_per_s
        for r in runs
        if {"cmc", "cmc-no-rules"} <= r.keys()
    ]
    if costs:
        lines.append(f"- rules' cost over {len(costs)} runs: mean {sum(costs) / len(costs):.0%} (range "
                     f"{min(costs):.0%}-{max(costs):.0%})")  # fmt: skip
    cpu = [
        cpu_per_tender(r["cmc"]) / cpu_per_tender(r["cmc-no-rules"]) - 1
        for r in runs
        if {"cmc", "cmc-no-rules"} <= r.keys() and cpu_per_tender(r["cmc-no-rules"])
    ]
    if cpu:
        lines.append(f"- rules' cost in server + database CPU per tender: mean {sum(cpu) / len(cpu):+.0%} "
                     f"(range {min(cpu):+.0%} to {max(cpu):+.0%})")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    """Benchmark the servers one after the other (``--runs`` times); exit 1 if any tender failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per server first")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--terminals", default="term5", help="comma-separated terminal ids of the demo registry"
    )
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(SERVERS)}")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite", help="the engine")
    parser.add_argument("--workers", type=int, default=1, help="cmc serve --workers")
    parser.add_argument("--runs", type=int, default=1, help="repeat the whole set this many times")
    parser.add_argument("--record", action="store_true", help=f"append the figures to {RESULTS.name}")
    args = parser.parse_args(argv)
    options = load.Options(
        terminals=tuple(t for t in args.terminals.split(",") if t),
        concurrency=max(1, args.concurrency),
        duration=max(1.0, args.duration),
        warmup=max(0.0, args.warmup),
    )
    chosen = [n for n in (args.only or ",".join(SERVERS)).split(",") if n]
    if unknown := set(chosen) - set(SERVERS):
        parser.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    where = f"{args.database}, {args.workers} worker{'s' if args.workers > 1 else ''}"
    driver = "asyncpg" if args.database == "postgresql" else "sqlite3"
    labels = {
        "cmc": f"cmc, demo rules active ({where})",
        "cmc-no-rules": f"cmc, no rules ({where})",
        "baseline": f"baseline (raw ASGI + msgspec + {driver}, 1 worker)",
    }
    runs: list[dict[str, load.Result]] = []
    with tempfile.TemporaryDirectory(prefix="cmc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        registries = {"cmc": DEMO_REGISTRY, "cmc-no-rules": without_rules(tmp)}
        for number in range(max(1, args.runs)):
            results: dict[str, load.Result] = {}
            # Interleaved: each run measures every server, so a run's ratios share the machine's mood.
            for name in chosen if number % 2 == 0 else reversed(chosen):
                print(f"{name}: {options.warmup:.0f} s warm-up + {options.duration:.0f} s ...", flush=True)
                if name == "baseline":
                    results[name] = bench_baseline(tmp, options, kind=args.database)
                else:
                    results[name] = bench_cmc(
                        tmp, options, registry=registries[name], kind=args.database, workers=args.workers,
                        name=name,
                    )  # fmt: skip
                print(f"{name}: {results[name].summary()}", flush=True)
            runs.append({name: results[name] for name in chosen})
            print("\n" + "\n".join(table(runs[-1], labels, workers=args.workers)))
            for note in verdicts(runs[-1], args.database):
                print(note)
    if len(runs) > 1:
        print("\n".join(["", *summary(runs)]))
    if args.record:
        record(runs, labels, options, kind=args.database, workers=args.workers)
    return 1 if any(r.errors or not r.tenders for results in runs for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
