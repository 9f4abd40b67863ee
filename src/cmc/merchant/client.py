"""``cmc marketing pull|push|versions|simulate|activate``: a merchant's automation, as a client of the API.

It talks to a running CMC over HTTP (``--url``) with a merchant client's credentials from the
environment (``CMC_MERCHANT_CLIENT_ID``, ``CMC_MERCHANT_CLIENT_SECRET``), never to the database:
whatever it does, the merchant API checks, records and audits as it would for any other client.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

import httpx2
import yaml

from cmc.config import Settings
from cmc.errors import CmcError

ENV_URL = "CMC_URL"
ENV_CLIENT_ID = "CMC_MERCHANT_CLIENT_ID"
ENV_CLIENT_SECRET = "CMC_MERCHANT_CLIENT_SECRET"  # noqa: S105 (the variable's name, not a secret)
ENV_POS_SYSTEM = "CMC_MERCHANT_POS_SYSTEM"
ENV_COMPANY = "CMC_MERCHANT_COMPANY"
TIMEOUT = 60.0
"""A simulation of 10,000 sales takes seconds, not minutes."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``marketing`` command's actions and their options."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(ENV_URL, "http://127.0.0.1:8080"),
        help=f"CMC's base URL (default ${ENV_URL} or http://127.0.0.1:8080)",
    )
    common.add_argument(
        "--pos-system",
        default=os.environ.get(ENV_POS_SYSTEM),
        help=f"the POS system of the company (default ${ENV_POS_SYSTEM})",
    )
    common.add_argument("--company", default=os.environ.get(ENV_COMPANY),
                        help=f"the company (posCompanyId; default ${ENV_COMPANY})")  # fmt: skip
    actions = parser.add_subparsers(required=True, metavar="ACTION")
    pull = actions.add_parser("pull", parents=[common], help="print (or save) the active marketing document")
    pull.add_argument("--output", "-o", help="write the document to this file (JSON) instead of stdout")
    pull.set_defaults(action=_pull)
    push = actions.add_parser(
        "push", parents=[common], help="create a draft version from a JSON or YAML file"
    )
    push.add_argument("file", help="the marketing document (as pull writes it), JSON or YAML")
    push.add_argument("--note", help="a note for the audit trail")
    push.set_defaults(action=_push)
    listing = actions.add_parser("versions", parents=[common], help="list the versions, newest first")
    listing.set_defaults(action=_versions)
    simulate = actions.add_parser(
        "simulate", parents=[common], help="replay stored sales through a version and the active one"
    )
    simulate.add_argument("version", type=int)
    simulate.add_argument(
        "--from", dest="start", help="window start, RFC 3339 (default: 30 days before --to)"
    )
    simulate.add_argument("--to", dest="end", help="window end, RFC 3339 (default: now)")
    simulate.add_argument("--limit", type=int, help="at most this many sales (default 10,000)")
    simulate.add_argument("--json", action="store_true", help="print the API's answer as JSON")
    simulate.set_defaults(action=_simulate)
    activate = actions.add_parser(
        "activate", parents=[common], help="make a version live (an older one: rollback)"
    )
    activate.add_argument("version", type=int)
    activate.add_argument(
        "--if-match", type=int, help="the version you expect to be active (default: the current one)"
    )
    activate.set_defaults(action=_activate)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the chosen action; a refusal by CMC is a ``CmcError`` naming its problems."""
    if not args.pos_system or not args.company:
        raise CmcError(f"name the company: --pos-system and --company (or ${ENV_POS_SYSTEM}, ${ENV_COMPANY})")
    with Merchant(args.url, args.pos_system, args.company) as merchant:
        action: Any = args.action
        text: str = action(merchant, args)
    print(text)
    return 0


class Merchant:
    """The merchant API for one company, with a token from the environment's client credentials."""

    def __init__(self, url: str, pos_system_id: str, company_id: str) -> None:
        client_id, secret = os.environ.get(ENV_CLIENT_ID), os.environ.get(ENV_CLIENT_SECRET)
        if not client_id or not secret:
            raise CmcError(f"set {ENV_CLIENT_ID} and {ENV_CLIENT_SECRET} to a merchant client's credentials")
        self._http = httpx2.Client(base_url=url.rstrip("/"), timeout=TIMEOUT)
        self.base = f"/v1/pos/{pos_system_id}/companies/{company_id}"
        try:
            answer = self._http.post(
                "/connect/token",
                auth=(client_id, secret),
                data={"grant_type": "client_credentials", "scope": "merchant"},
            )
        except httpx2.HTTPError as exc:
            self._http.close()
            raise CmcError(f"cannot reach CMC at {url}: {exc}") from None
        self._token = _body(answer)["access_token"]

    def __enter__(self) -> Merchant:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        """One request under the company's path; an error answer becomes a ``CmcError``."""
        headers = {"Authorization": f"Bearer {self._token}", **kwargs.pop("headers", {})}
        try:
            answer = self._http.request(method, self.base + path, headers=headers, **kwargs)
        except httpx2.HTTPError as exc:
            raise CmcError(f"{method} {path}: {exc}") from None
        _body(answer)
        return answer


def _body(answer: httpx2.Response) -> dict[str, Any]:
    try:
        body: dict[str, Any] = answer.json()
    except ValueError:
        body = {}
    if answer.status_code >= 400:
        raise CmcError(problem_text(answer.status_code, body))
    return body


def problem_text(status: int, problem: Mapping[str, Any]) -> str:
    """A problem details answer as lines: the status and detail, then each field's problems."""
    lines = [f"{status} {problem.get('title', '')}: {problem.get('detail', '')}".rstrip(": ")]
    for field, messages in (problem.get("errors") or {}).items():
        lines += [f"  {field}: {message}" for message in messages]
    return "\n".join(lines)


def _pull(merchant: Merchant, args: argparse.Namespace) -> str:
    answer = merchant.call("GET", "/marketing")
    text = json.dumps(answer.json()["data"]["document"], indent=2, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        return f"version {answer.json()['data']['version']} written to {args.output}"
    return text


def _push(merchant: Merchant, args: argparse.Namespace) -> str:
    try:
        with open(args.file, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)  # YAML reads JSON too
    except (OSError, yaml.YAMLError) as exc:
        raise CmcError(f"{args.file}: cannot read the document: {exc}") from None
    body = json.loads(json.dumps({"document": document, "note": args.note}, default=str))
    draft = merchant.call("POST", "/marketing/versions", json=body).json()["data"]
    return f"draft version {draft['version']} created"


def _versions(merchant: Merchant, args: argparse.Namespace) -> str:
    rows = [["version", "status", "source", "created", "by", "note"]]
    for v in merchant.call("GET", "/marketing/versions").json()["data"]:
        rows.append(
            [
                str(v["version"]),
                v["status"],
                v["source"],
                v["createdAt"][:19],
                v["createdBy"],
                v["note"] or "",
            ]
        )
    return table(rows)


def _simulate(merchant: Merchant, args: argparse.Namespace) -> str:
    window = {"from": args.start, "to": args.end, "limit": args.limit}
    body = {key: value for key, value in window.items() if value is not None}
    answer = merchant.call("POST", f"/marketing/versions/{args.version}/simulate", json=body).json()
    return json.dumps(answer, indent=2) if args.json else simulation_text(answer["data"])


def simulation_text(result: Mapping[str, Any]) -> str:
    """The simulation's per-rule differences as a table, then the differing sales."""
    v, a = result["version"], result["activeVersion"]
    head = (
        f"version {v} against active {a}: {result['sales']} sales from {result['from'][:19]} to "
        f"{result['to'][:19]}{' (the latest; more were in the window)' if result['truncated'] else ''}, "
        f"{result['differing']} with a different outcome"
    )
    rows = [["rule", f"firings v{v}", f"active v{a}", f"messages v{v}", f"active v{a}",
             f"customers v{v}", f"active v{a}", ""]]  # fmt: skip
    for rule in result["rules"]:
        mine, theirs = rule["version"], rule["active"]
        cells = [rule["rule"]]
        for kind in ("firings", "messages", "customers"):
            cells += [str(mine[kind]), str(theirs[kind])]
        rows.append([*cells, "changed" if rule["changed"] else ""])
    lines = [head, "", table(rows)]
    for sample in result["samples"]:
        fired = ", ".join(sample["version"]["fired"]) or "nothing"
        was = ", ".join(sample["active"]["fired"]) or "nothing"
        lines.append(
            f"  {sample['transactionId']} {sample['occurredAt'][:19]}: v{v} fires {fired}; v{a} fired {was}"
        )
    return "\n".join(lines)


def _activate(merchant: Merchant, args: argparse.Namespace) -> str:
    expected = args.if_match
    if expected is None:
        expected = merchant.call("GET", "/marketing").json()["data"]["version"]
    answer = merchant.call(
        "POST", f"/marketing/versions/{args.version}/activate", headers={"If-Match": f'"{expected}"'}
    ).json()["data"]
    return f"version {answer['version']} is active (was {answer['previous']})"


def table(rows: list[list[str]]) -> str:
    """Rows as left-aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )
