"""``cmc marketing pull|push|versions|simulate|activate`` against a real ``cmc serve``.

The server is a real ``cmc serve`` process. The client runs as ``cmc.cli.main`` in this process (its
arguments, environment, output streams and exit code exactly as the console script would see them):
each subprocess would cost two seconds of imports and prove nothing more, since the console script is
``cmc.cli:main`` itself. One test still runs the installed ``cmc`` script, so that path stays covered.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import httpx2
import pytest

from cmc import cli
from support import MERCHANT_SECRETS, MERCHANTS
from test_readme import free_port

ROOT = Path(__file__).resolve().parent.parent
CMC = ROOT / ".venv" / "bin" / "cmc"


@dataclass
class Server:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("merchant-cli")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMC_")}
    env.update(
        CMC_DATABASE_URL=f"sqlite:///{folder / 'cmc.db'}", CMC_LOG_LEVEL="warning", CMC_ACCESS_LOG="false"
    )
    applied = run_cli(["apply", str(MERCHANTS)], env)
    assert applied.returncode == 0, applied.stderr
    port = free_port()
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen([str(CMC), "serve", "--port", str(port)], env=env, cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (folder / "serve.log").read_text()
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(url + "/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "cmc serve did not come up"
            time.sleep(0.1)
        yield Server(url, env)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``cmc ARGS`` with exactly ``env`` as its environment, run in-process through ``cli.main``."""
    out, err = io.StringIO(), io.StringIO()
    with (mock.patch.dict(os.environ, env, clear=True), contextlib.redirect_stdout(out),
          contextlib.redirect_stderr(err)):  # fmt: skip
        try:
            code = cli.main(args)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code if isinstance(exc.code, int) else 2
    return subprocess.CompletedProcess(["cmc", *args], code, out.getvalue(), err.getvalue())


def marketing(server: Server, *args: str, who: str = "gl-publisher") -> subprocess.CompletedProcess[str]:
    env = {**server.env, "CMC_URL": server.url, "CMC_MERCHANT_CLIENT_ID": who,
           "CMC_MERCHANT_CLIENT_SECRET": MERCHANT_SECRETS[who]}  # fmt: skip
    return run_cli(["marketing", *args, "--pos-system", "pax", "--company", "comp5"], env)


def test_pull_edit_push_simulate_activate(server: Server, tmp_path: Path) -> None:
    pulled = marketing(server, "pull")
    assert pulled.returncode == 0, pulled.stderr
    document = json.loads(pulled.stdout)
    assert [rule["name"] for rule in document["rules"]] == ["mid-basket coupon", "edibles fan"]

    saved = tmp_path / "marketing.json"
    assert marketing(server, "pull", "-o", str(saved)).stdout.strip() == f"version 1 written to {saved}"
    document["rules"][0]["when"]["all"][0]["amount"] = {"between": ["15", "80"]}
    saved.write_text(json.dumps(document))
    pushed = marketing(server, "push", str(saved), "--note", "wider", who="gl-editor")
    assert (pushed.returncode, pushed.stdout.strip()) == (0, "draft version 2 created"), pushed.stderr

    listing = marketing(server, "versions", who="gl-viewer").stdout.splitlines()
    assert listing[0].split() == ["version", "status", "source", "created", "by", "note"]
    assert listing[1].split()[:3] == ["2", "draft", "api"] and listing[1].endswith("wider")

    simulated = marketing(server, "simulate", "2", who="gl-editor")
    assert simulated.returncode == 0, simulated.stderr
    lines = simulated.stdout.splitlines()
    assert lines[0].startswith("version 2 against active 1: 0 sales from ")
    assert lines[2].split()[:3] == ["rule", "firings", "v2"]
    assert lines[3].startswith("mid-basket coupon")
    as_json = json.loads(marketing(server, "simulate", "2", "--json").stdout)
    assert as_json["data"]["rules"][0]["rule"] == "mid-basket coupon"

    refused = marketing(server, "activate", "2", who="gl-editor")
    assert refused.returncode == 2
    assert "403 Forbidden: The editor role may not activate." in refused.stderr
    activated = marketing(server, "activate", "2")
    assert (activated.returncode, activated.stdout.strip()) == (0, "version 2 is active (was 1)"), (
        activated.stderr
    )
    stale = marketing(server, "activate", "1", "--if-match", "1")
    assert stale.returncode == 2 and "412 Precondition Failed" in stale.stderr
    assert marketing(server, "activate", "1").stdout.strip() == "version 1 is active (was 2)"


def test_an_invalid_document_prints_each_problem(server: Server, tmp_path: Path) -> None:
    draft = tmp_path / "bad.yaml"
    draft.write_text("widgets:\n  - {id: 1, name: X, landingUrl: 'ftp://x', title: T}\nrules:\n"
                     "  - {name: r, then: {qrWidget: 9}}\n")  # fmt: skip
    pushed = marketing(server, "push", str(draft))
    assert pushed.returncode == 2
    assert pushed.stderr.splitlines() == [
        "cmc: error: 400 Bad Request: The document has 2 problems.",
        "  widgets[0].landingUrl: landingUrl must be an absolute http(s) URL",
        "  rules[0].then.qrWidget: rule 'r': unknown widget 9",
    ]


def test_credentials_come_from_the_environment(server: Server) -> None:
    env = {**server.env, "CMC_URL": server.url}
    pull = ["marketing", "pull", "--pos-system", "pax", "--company", "comp5"]
    answer = run_cli(pull, env)
    assert answer.returncode == 2
    assert "CMC_MERCHANT_CLIENT_ID and CMC_MERCHANT_CLIENT_SECRET" in answer.stderr
    wrong = {**env, "CMC_MERCHANT_CLIENT_ID": "gl-viewer", "CMC_MERCHANT_CLIENT_SECRET": "nope"}
    answer = run_cli(pull, wrong)
    assert answer.returncode == 2 and "401 Unauthorized" in answer.stderr


def test_the_installed_console_script_pulls(server: Server) -> None:
    """The one run of the real ``cmc`` script: its output and exit code are the in-process ones."""
    env = {**server.env, "CMC_URL": server.url, "CMC_MERCHANT_CLIENT_ID": "gl-viewer",
           "CMC_MERCHANT_CLIENT_SECRET": MERCHANT_SECRETS["gl-viewer"]}  # fmt: skip
    command = [str(CMC), "marketing", "pull", "--pos-system", "pax", "--company", "comp5"]
    pulled = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout) == json.loads(run_cli(command[1:], env).stdout)
