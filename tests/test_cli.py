"""The real ``cmc`` console script, run as a subprocess: migrate, apply, serve."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

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


def start_server(database: Path, *args: str) -> Server:
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
    deadline = time.monotonic() + 15
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
    raise AssertionError("cmc serve did not answer /health within 15 s")


def kill_group(server: Server) -> None:
    """Make sure nothing the test started outlives it (uvicorn's worker processes included)."""
    try:
        os.killpg(server.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
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


def test_migrate_creates_the_database_and_can_run_again(tmp_path: Path) -> None:
    database = tmp_path / "nested" / "x.db"
    first = cmc("migrate", env=cmc_env(database))
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert database.is_file()
    second = cmc("migrate", env=cmc_env(database))
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
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


def test_apply_the_demo_registry_twice(tmp_path: Path) -> None:
    env = cmc_env(tmp_path / "x.db")
    first = cmc("apply", "examples/demo.yaml", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("registry updated")
    assert "pos_systems inserted" in first.stdout
    second = cmc("apply", str(DEMO), env=env)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "registry unchanged"
    with sqlite3.connect(tmp_path / "x.db") as conn:
        terminals = {row[0] for row in conn.execute("SELECT id FROM terminals WHERE pos_system_id = 'pax'")}
        hashes = [row[0] for row in conn.execute("SELECT secret_hash FROM api_clients")]
    assert {"term5", "term6"} <= terminals
    assert hashes
    assert all("s3cr3t!" not in h for h in hashes)


def test_apply_of_a_bad_file_exits_2_naming_the_line(tmp_path: Path) -> None:
    env = cmc_env(tmp_path / "x.db")
    assert cmc("apply", str(DEMO), env=env).returncode == 0
    bad = tmp_path / "bad.yaml"
    text = DEMO.read_text()
    bad.write_text(text.replace("America/Los_Angeles", "America/Atlantis", 1).replace("Downtown", "Changed"))
    line = next(n for n, s in enumerate(text.splitlines(), start=1) if "America/Los_Angeles" in s)
    result = cmc("apply", str(bad), env=env)
    message = assert_one_line_error(result, f"{bad}:{line}:", "timezone", "America/Atlantis")
    assert message.startswith(f"cmc: error: {bad}:{line}: ")
    assert result.stdout == ""
    # Nothing of the bad file was applied.
    with sqlite3.connect(tmp_path / "x.db") as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM locations")}
    assert "Changed" not in names
    assert cmc("apply", str(DEMO), env=env).stdout.strip() == "registry unchanged"


def test_apply_of_bad_yaml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("posSystems:\n  - id: pax\n    name: [unclosed\n")
    result = cmc("apply", str(bad), env=cmc_env(tmp_path / "x.db"))
    assert_one_line_error(result, str(bad), "not valid YAML")


def test_apply_of_a_missing_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = cmc("apply", str(missing), env=cmc_env(tmp_path / "x.db"))
    assert_one_line_error(result, str(missing), "cannot read")


# --- bad settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["migrate"], ["apply", "examples/demo.yaml"], ["serve", "--port", "1"]])
@pytest.mark.parametrize("url", ["mysql://x", "not a url", "sqlite:///:memory:"])
def test_a_bad_database_url_exits_2(tmp_path: Path, command: list[str], url: str) -> None:
    result = cmc(*command, env=cmc_env(url))
    assert_one_line_error(result, "CMC_DATABASE_URL")


@pytest.mark.parametrize(
    ("name", "value"),
    [("CMC_TOKEN_TTL_SECONDS", "an hour"), ("CMC_LOG_LEVEL", "loud"), ("CMC_ACCESS_LOG", "2")],
)
def test_a_bad_setting_exits_2_naming_it(tmp_path: Path, name: str, value: str) -> None:
    result = cmc("migrate", env=cmc_env(tmp_path / "x.db", **{name: value}))
    assert_one_line_error(result, name)
    assert not (tmp_path / "x.db").exists()


def test_usage_errors_exit_2() -> None:
    env = cmc_env("sqlite:///unused.db")
    assert cmc(env=env).returncode == 2
    assert cmc("frobnicate", env=env).returncode == 2
    assert cmc("serve", "--port", "eighty", env=env).returncode == 2
    assert cmc("apply", env=env).returncode == 2
    helped = cmc("--help", env=env)
    assert helped.returncode == 0
    for command in ("serve", "migrate", "apply"):
        assert command in helped.stdout


def test_serve_refuses_zero_workers(tmp_path: Path) -> None:
    result = cmc("serve", "--workers", "0", "--port", str(free_port()), env=cmc_env(tmp_path / "x.db"))
    assert_one_line_error(result, "--workers")


# --- serve -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``cmc serve`` on an empty database (serve migrates it) for the module."""
    database = tmp_path_factory.mktemp("serve") / "x.db"
    running = start_server(database)
    yield running
    kill_group(running)


def test_serve_answers_health_and_ready(server: Server) -> None:
    health = server.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert server.get("/ready").status_code == 200
    assert server.get("/metrics").status_code == 200
    assert server.get("/schema/openapi.json").json()["openapi"].startswith("3.1")


def test_serve_migrated_the_empty_database(server: Server) -> None:
    # An empty registry: a valid client is simply unknown (401), not a server error.
    answer = httpx2.post(
        server.url + "/connect/token",
        auth=("pax-demo", "s3cr3t!"),
        data={"grant_type": "client_credentials", "scope": "pos_integration"},
        timeout=5,
    )
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_stops_cleanly_on_a_signal(tmp_path: Path, sig: int) -> None:
    running = start_server(tmp_path / "x.db")
    try:
        assert running.get("/ready").status_code == 200
        code = running.stop(sig)
        output = running.process.stdout.read() if running.process.stdout else ""
    finally:
        kill_group(running)
    assert code == 0, output
    assert "Traceback" not in output
    with pytest.raises(httpx2.TransportError):
        running.get("/health")


def test_serve_with_two_workers(tmp_path: Path) -> None:
    running = start_server(tmp_path / "x.db", "--workers", "2")
    try:
        ids = set()
        for _ in range(10):
            answer = running.get("/health")
            assert answer.status_code == 200
            ids.add(answer.headers["x-request-id"])
        assert len(ids) == 10
        assert running.get("/ready").status_code == 200
        code = running.stop(signal.SIGTERM)
    finally:
        kill_group(running)
    assert code == 0
