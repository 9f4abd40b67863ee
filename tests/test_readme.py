"""The README's promises: the curl session works as printed, settings and Quickstart are documented."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from cmc.config import env_names

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SCRIPT = ROOT / "examples" / "curl-session.sh"
MERCHANT_SCRIPT = ROOT / "examples" / "merchant-session.sh"
CMC = ROOT / ".venv" / "bin" / "cmc"


def readme() -> str:
    if not README.is_file():
        pytest.fail("README.md is missing")
    return README.read_text(encoding="utf-8")


def fenced_blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """Every fenced code block as (the nearest heading above it, its lines)."""
    blocks: list[tuple[str, list[str]]] = []
    lines: list[str] = []
    heading, inside, fence = "", False, ""
    for line in markdown.splitlines():
        stripped = line.strip()
        if not inside and re.match(r"^#{1,6} ", line):
            heading = line.lstrip("#").strip()
        elif not inside and stripped.startswith(("```", "~~~")):
            inside, lines, fence = True, [], stripped[:3]
        elif inside and stripped.startswith(fence) and stripped.strip(fence[0]) == "":
            blocks.append((heading, lines))
            inside = False
        elif inside:
            lines.append(line)
    return blocks


def commands(lines: list[str]) -> list[str]:
    """The lines that do something: no blanks, no comments."""
    return [line.rstrip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


# --- the curl session, run for real ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class DemoServer:
    url: str
    log: Path
    """The server's stderr: its JSON logs."""


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """``cmc apply examples/demo.yaml`` then ``cmc serve --port P`` on a temp SQLite file."""
    folder = tmp_path_factory.mktemp("readme")
    database, log = folder / "cmc.db", folder / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
    env.update(CMC_DATABASE_URL=f"sqlite:///{database}", CMC_LOG_LEVEL="info", CMC_ACCESS_LOG="true")
    applied = subprocess.run(
        [str(CMC), "apply", "examples/demo.yaml"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert applied.returncode == 0, applied.stderr
    port = free_port()
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [str(CMC), "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"cmc serve exited with {process.returncode}: {log.read_text()}"
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "cmc serve did not answer /health within 30 s"
            time.sleep(0.1)
        yield DemoServer(url, log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def run_session(url: str) -> dict[str, object]:
    env = {**os.environ, "CMC": url}
    result = subprocess.run(
        ["bash", str(SCRIPT)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    assert "data" in answer, answer
    return answer


def test_the_curl_session_works_as_printed(demo_server: DemoServer) -> None:
    answer = run_session(demo_server.url)
    data = answer["data"]
    assert isinstance(data, dict)
    assert isinstance(data["id"], str)
    assert data["id"]
    assert data["posStatus"] == "Accepted"
    assert "qrCodeWidget" in data
    assert "cfsTemplate" in data
    profile = data["profile"]
    assert isinstance(profile, dict)
    assert profile["customerEmail"] == "ada@example.com"
    assert profile["customerPhone"] == "+14155550100"
    assert (profile["firstName"], profile["lastName"]) == ("Ada", "Lovelace")

    # Pasting it again is another sale (a fresh transactionId) by the same customer.
    again = run_session(demo_server.url)["data"]
    assert isinstance(again, dict)
    assert again["id"] != data["id"]
    assert again["profile"]["id"] == profile["id"]


def test_the_server_logs_hold_no_contacts(demo_server: DemoServer) -> None:
    """The real process's JSON logs: an access line per request with its id, and no email or phone."""
    run_session(demo_server.url)
    answer = httpx2.get(demo_server.url + "/health", headers={"X-Request-ID": "readme-log-check"}, timeout=5)
    assert answer.status_code == 200
    deadline = time.monotonic() + 5
    while "readme-log-check" not in demo_server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = demo_server.log.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("event") == "request"]
    assert any(r.get("route") == "/pos/{pos_system_id}/transaction" and r["status"] == 200 for r in access), (
        text
    )
    assert all(r.get("request_id") for r in access)
    assert "readme-log-check" in {r["request_id"] for r in access}
    for contact in ("ada@example.com", "(415) 555-0100", "555-0100", "+14155550100", "4155550100"):
        assert contact not in text, contact


# --- what the README says ----------------------------------------------------------------------


def test_the_readme_prints_the_curl_session() -> None:
    script = commands(SCRIPT.read_text(encoding="utf-8").splitlines())
    assert script
    blocks = fenced_blocks(readme())
    curl_blocks = [lines for heading, lines in blocks if "curl" in heading.lower()]
    assert curl_blocks, "README.md has no fenced block under a heading mentioning curl"
    assert any(commands(lines) == script for lines in curl_blocks), (
        "the README's curl session differs from examples/curl-session.sh"
    )
    text = readme()
    for line in script:
        assert line in text, line


def test_every_setting_is_documented() -> None:
    text = readme()
    missing = [name for name in env_names() if not re.search(rf"\b{name}\b", text)]
    assert not missing, f"README.md does not mention {missing}"


def test_the_quickstart_is_exactly_make_run_and_make_test() -> None:
    blocks = [lines for heading, lines in fenced_blocks(readme()) if heading.lower() == "quickstart"]
    assert blocks, "README.md has no fenced block under a 'Quickstart' heading"
    first = [line.strip().removeprefix("$ ") for line in commands(blocks[0])]
    assert first == ["make run", "make test"]


def test_the_makefile_has_what_the_quickstart_promises() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("install", "run", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.MULTILINE), target
    assert "examples/demo.yaml" in makefile
    assert "examples/curl-session.sh" in makefile
    default = subprocess.run(["make", "-n", "run"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "--host 127.0.0.1 --port 8080" in default.stdout
    moved = subprocess.run(
        ["make", "-n", "run", "PORT=9000", "HOST=0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--host 0.0.0.0 --port 9000" in moved.stdout
    assert "http://0.0.0.0:9000" in moved.stdout  # the links CMC hands out follow
    assert re.search(r"^\s*make test\s*$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.MULTILINE)


SCREENSHOTS = ("cfs-idle.png", "cfs-sale.png", "qr-page.png", "qr-preview.png")
CONSOLE_SCREENSHOTS = ("console-login.png", "console-overview.png", "console-rules.png", "console-draft.png",
                       "console-customer.png", "console-messages.png", "console-tablet.png")  # fmt: skip


def test_the_readme_shows_the_screens_and_how_to_pair_them() -> None:
    text = readme()
    for name in (*SCREENSHOTS, *CONSOLE_SCREENSHOTS):
        assert f"](docs/images/{name})" in text, name
    assert "cmc screens url --pos-system pax --location loc5 --terminal term5" in text
    assert "cmc screens rotate" in text and "/v2/pos/pax/carousel" in text


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium is not installed")
def test_the_screenshot_script_takes_the_readme_pictures(tmp_path: Path) -> None:
    """``docs/screenshots.py`` against a real ``cmc serve``: the PNGs of the sizes the README shows."""
    from PIL import Image

    taken = subprocess.run(
        [str(CMC.with_name("python")), "docs/screenshots.py", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert taken.returncode == 0, taken.stderr
    sizes = {name: Image.open(tmp_path / name).size for name in SCREENSHOTS}
    assert sizes == {"cfs-idle.png": (1280, 720), "cfs-sale.png": (1280, 720), "qr-page.png": (1280, 720),
                     "qr-preview.png": (440, 136)}  # fmt: skip
    console = {name: Image.open(tmp_path / name).size for name in CONSOLE_SCREENSHOTS}
    assert console == {name: (820, 1180) if "tablet" in name else (1280, 800) for name in CONSOLE_SCREENSHOTS}


def test_the_docs_stand_alone() -> None:
    """A clone holds everything the docs point to: no path outside the repository, no dead link."""
    docs = [
        ROOT / "README.md",
        ROOT / "packages" / "cmc-client" / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
    ]
    for doc in docs:
        text = doc.read_text(encoding="utf-8")
        assert "../" not in text, f"{doc.name} points outside its folder"
        for target in re.findall(r"\]\(([^)#]+)", text):
            if "://" not in target:
                assert (doc.parent / target).exists(), f"{doc.name}: dead link {target}"
        for path in re.findall(r"`((?:docs|bench|examples|src|tests|packages)/[\w./-]+)`", text):
            assert (ROOT / path).exists(), f"{doc.name} names {path}, which does not exist"


# --- the merchant session, run for real (last: it activates a new version on the demo server) -----


def test_the_readme_prints_the_merchant_session() -> None:
    script = commands(MERCHANT_SCRIPT.read_text(encoding="utf-8").splitlines())
    blocks = [lines for heading, lines in fenced_blocks(readme()) if "merchant" in heading.lower()]
    assert any(commands(lines) == script for lines in blocks), (
        "the README's merchant session differs from examples/merchant-session.sh"
    )


def test_the_merchant_session_works_as_printed(demo_server: DemoServer) -> None:
    run_session(demo_server.url)  # a stored sale for the simulation to replay
    env = {**os.environ, "CMC": demo_server.url}
    result = subprocess.run(
        ["bash", str(MERCHANT_SCRIPT)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    *report, activated = result.stdout.strip().splitlines()
    assert re.match(r"^\d+ sales replayed, \d+ with another outcome$", report[0]), report
    assert report[1].startswith("mid-basket coupon firings: "), report
    answer = json.loads(activated)["data"]
    assert answer["status"] == "active"
    assert answer["version"] == answer["previous"] + 1
