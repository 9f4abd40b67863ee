"""The real ``cmc`` console script, run as a subprocess: migrate, apply, serve."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from cmc import cli

ROOT = Path(__file__).resolve().parent.parent
CMC = ROOT / ".venv" / "bin" / "cmc"
DEMO = ROOT / "examples" / "demo.yaml"


def cmc_env(database: Path | str, **extra: str) -> dict[str, str]:
    """The process environment without any CMC_* setting of the caller, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    env.update({"CMC_DATABASE_URL": url, "CMC_LOG_LEVEL": "warning", **extra})
    return env


def cmc(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CMC), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str

    def get(self, path: str) -> httpx2.Response:
        return httpx2.get(self.url + path, timeout=5)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        """Signal the server; return its exit code (kill its process group if it hangs)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
                raise
        return self.process.returncode


STARTUP_SECONDS = 30.0
"""A hang guard, not a benchmark: idle, one worker answers /health in about 3 s, but importing the app
costs about 3 s of CPU and a 2-CPU machine running several suites at once takes four times that."""
WORKERS_STARTUP_SECONDS = 60.0
"""N workers import the app N times over."""


def start_server(database: Path, *args: str, within: float = STARTUP_SECONDS) -> Server:
    """``cmc serve --port P`` in its own process group; waits until /health answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [str(CMC), "serve", "--port", str(port), *args],
        env=cmc_env(database),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"cmc serve exited with {process.returncode}:\n{output}")
        try:
            if server.get("/health").status_code == 200:
                return server
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)
    raise AssertionError(f"cmc serve did not answer /health within {within} s")


def kill_group(server: Server) -> None:
    """Make sure nothing the test started outlives it (uvicorn's worker processes included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, signal.SIGKILL)
    if server.process.poll() is None:
        server.process.wait(5)
    if server.process.stdout:
        server.process.stdout.close()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cmc: error: ")
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- migrate -----------------------------------------------------------------------------------


def test_migrate_creates_the_database_and_can_run_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "nested" / "x.db"
    first = cmc("migrate", env=cmc_env(database))
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert database.is_file()
    # The second run in-process (same entry point, without another second of imports).
    code, out, err = run_main(["migrate"], capsys, monkeypatch, CMC_DATABASE_URL=f"sqlite:///{database}")
    assert (code, out, err) == (0, first.stdout, "")
    with sqlite3.connect(database) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    assert {
        "pos_systems",
        "locations",
        "terminals",
        "api_clients",
        "transactions",
        "alembic_version",
    } <= names
    assert mode == "wal"


# --- apply -------------------------------------------------------------------------------------


def test_apply_the_demo_registry_twice_then_a_bad_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = cmc_env(tmp_path / "x.db")
    first = cmc("apply", "examples/demo.yaml", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("registry updated")
    assert "pos_systems inserted" in first.stdout
    url = env["CMC_DATABASE_URL"]
    code, out, err = run_main(["apply", str(DEMO)], capsys, monkeypatch, CMC_DATABASE_URL=url)
    assert (code, out, err) == (0, "registry unchanged\n", "")
    with sqlite3.connect(tmp_path / "x.db") as conn:
        terminals = {row[0] for row in conn.execute("SELECT id FROM terminals WHERE pos_system_id = 'pax'")}
        hashes = [row[0] for row in conn.execute("SELECT secret_hash FROM api_clients")]
        before = conn.execute("SELECT * FROM locations ORDER BY id").fetchall()
    assert {"term5", "term6"} <= terminals
    assert hashes
    assert all("s3cr3t!" not in h for h in hashes)

    bad = tmp_path / "bad.yaml"
    text = DEMO.read_text()
    bad.write_text(text.replace("Downtown", "Changed").replace("America/Los_Angeles", "America/Atlantis", 1))
    line = next(n for n, s in enumerate(text.splitlines(), start=1) if "America/Los_Angeles" in s)
    result = cmc("apply", str(bad), env=env)
    message = assert_one_line_error(result, "timezone", "America/Atlantis")
    assert message.startswith(f"cmc: error: {bad}:{line}: ")
    assert result.stdout == ""
    # Nothing of the bad file was applied.
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("SELECT * FROM locations ORDER BY id").fetchall() == before


def test_a_bad_database_url_exits_2(tmp_path: Path) -> None:
    result = cmc("migrate", env=cmc_env("mysql://x"))
    assert_one_line_error(result, "CMC_DATABASE_URL", "mysql")


# The same error paths, in-process (``cli.main`` is the console script's entry point; a subprocess
# costs over a second of imports each).


def run_main(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, **env: str
) -> tuple[int, str, str]:
    for name in [n for n in os.environ if n.startswith("CMC_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_main_error(code: int, out: str, err: str, *words: str) -> None:
    assert_one_line_error(subprocess.CompletedProcess([], code, out, err), *words)


@pytest.mark.parametrize("command", [["migrate"], ["apply", str(DEMO)], ["serve", "--port", "1"]])
@pytest.mark.parametrize("url", ["mysql://x", "not a url", "sqlite:///:memory:", "oracle://u@h/db"])
def test_a_bad_database_url_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: list[str], url: str
) -> None:
    assert_main_error(*run_main(command, capsys, monkeypatch, CMC_DATABASE_URL=url), "CMC_DATABASE_URL")


@pytest.mark.parametrize(
    "url",
    ["sqlite:////dev/null/x.db", "sqlite:////proc/cmc-x.db", "postgresql://cmc@127.0.0.1:1/cmc"],
    ids=["sqlite-under-a-file", "sqlite-unwritable", "postgres-refused"],
)
def test_an_unreachable_database_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    assert_main_error(*run_main(["migrate"], capsys, monkeypatch, CMC_DATABASE_URL=url), "CMC_DATABASE_URL")


@pytest.mark.parametrize(
    ("name", "value"),
    [("CMC_TOKEN_TTL_SECONDS", "an hour"), ("CMC_LOG_LEVEL", "loud"), ("CMC_ACCESS_LOG", "2")],
)
def test_a_bad_setting_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert_main_error(
        *run_main(["migrate"], capsys, monkeypatch, CMC_DATABASE_URL=url, **{name: value}), name
    )
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("posSystems:\n  - id: pax\n    name: [unclosed\n", ["not valid YAML"]),
        ("posSystems:\n  - id: pax\n    nmae: PAX\n", [":2: posSystems[0]: ", "unknown field `nmae`"]),
        ("posSystems:\n  - id: pax\n    name: PAX\n    status: On\n", [":4: posSystems[0].status: "]),
    ],
)
def test_apply_of_a_bad_file_is_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    words: list[str],
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    url = f"sqlite:///{tmp_path}/x.db"
    result = run_main(["apply", str(bad)], capsys, monkeypatch, CMC_DATABASE_URL=url)
    assert_main_error(*result, str(bad), *words)


def test_apply_of_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "missing.yaml"
    url = f"sqlite:///{tmp_path}/x.db"
    result = run_main(["apply", str(missing)], capsys, monkeypatch, CMC_DATABASE_URL=url)
    assert_main_error(*result, str(missing), "cannot read")


def test_serve_refuses_zero_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    assert_main_error(
        *run_main(["serve", "--workers", "0"], capsys, monkeypatch, CMC_DATABASE_URL=url), "--workers"
    )


@pytest.mark.parametrize(
    "argv", [[], ["frobnicate"], ["serve", "--port", "eighty"], ["apply"], ["migrate", "--extra"]]
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    assert "usage: cmc" in capsys.readouterr().err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "migrate", "apply"):
        assert command in out


# --- serve -------------------------------------------------------------------------------------

CLEAN_EXIT = {signal.SIGINT: {0, 130}, signal.SIGTERM: {0, -signal.SIGTERM}}
"""uvicorn re-raises the signal it caught once it has shut down, so SIGTERM may end as -15."""


def test_serve_migrates_answers_and_stops_on_sigterm(tmp_path: Path) -> None:
    running = start_server(tmp_path / "x.db")
    try:
        health = running.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok"}
        assert running.get("/ready").status_code == 200
        assert running.get("/metrics").status_code == 200
        assert running.get("/schema/openapi.json").json()["openapi"].startswith("3.1")
        # serve migrated the empty database: a client is simply unknown (401), not a server error.
        answer = httpx2.post(
            running.url + "/connect/token",
            auth=("pax-demo", "s3cr3t!"),
            data={"grant_type": "client_credentials", "scope": "pos_integration"},
            timeout=5,
        )
        assert answer.status_code == 401
        assert answer.headers["content-type"].startswith("application/problem+json")
        code = running.stop(signal.SIGTERM)
        output = running.process.stdout.read() if running.process.stdout else ""
    finally:
        kill_group(running)
    assert code in CLEAN_EXIT[signal.SIGTERM], output
    assert "Traceback" not in output
    assert (tmp_path / "x.db").is_file()
    with pytest.raises(httpx2.TransportError):
        running.get("/health")


def test_serve_with_two_workers_stops_on_sigint(tmp_path: Path) -> None:
    running = start_server(tmp_path / "x.db", "--workers", "2", within=WORKERS_STARTUP_SECONDS)
    try:
        ids = set()
        for _ in range(10):
            answer = running.get("/health")
            assert answer.status_code == 200
            ids.add(answer.headers["x-request-id"])
        assert len(ids) == 10
        assert running.get("/ready").status_code == 200
        code = running.stop(signal.SIGINT)
        output = running.process.stdout.read() if running.process.stdout else ""
    finally:
        kill_group(running)
    assert code in CLEAN_EXIT[signal.SIGINT], output
    assert "Traceback" not in output
    with pytest.raises(httpx2.TransportError):
        running.get("/health")
