"""The registry file: YAML in, a typed and validated ``Registry`` out (pure: no database).

The file lists POS systems with their API clients, companies, locations and terminals, and per
company its marketing setup (widgets, templates, rules). ``parse`` refuses a malformed file as a
whole with ``file:line: field: problem``; every company's marketing setup is validated (its rules
parsed) here, once, so ``apply`` writes what was checked without parsing it again.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import phonenumbers
import yaml

from cmc import credentials, rules
from cmc.errors import RegistryError
from cmc.profiles import normalize_email
from cmc.quiet_hours import parse_window
from cmc.registry import setup
from cmc.roles import Role
from cmc_client import wire

MIN_SECRET = 6
MIN_PASSWORD = 8

_IdStr = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^/\s]+$")]
"""Ids appear in URL paths: no slashes, no spaces."""


class Spec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Registry file entries: unknown keys are typos, so they are refused."""


class TerminalSpec(Spec):
    id: _IdStr
    cfs: bool = True


class LocationSpec(Spec):
    id: _IdStr
    name: str
    timezone: str
    country: str = "US"
    quietHours: str = "21:00-08:00"
    """Local time window in which SMS waits (``HH:MM-HH:MM``; equal ends: no quiet hours)."""
    terminals: list[TerminalSpec] = []


class MerchantClientSpec(Spec):
    """An API client of the merchant's own automation (scope ``merchant``), bound to its company."""

    clientId: _IdStr
    secret: str
    role: Role


class UserSpec(Spec):
    """A console user: ``password`` is hashed by ``cmc apply``; ``passwordHash`` (argon2) is kept as is."""

    email: Annotated[str, msgspec.Meta(max_length=320)]
    role: Role
    password: str | None = None
    passwordHash: str | None = None


class CompanySpec(Spec):
    id: _IdStr
    name: str
    locations: list[LocationSpec] = []
    merchantClients: list[MerchantClientSpec] = []
    users: list[UserSpec] = []
    branding: dict[str, Any] = {}
    widgets: list[dict[str, Any]] = []
    cfsTemplates: list[dict[str, Any]] = []
    messageTemplates: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []


class ClientSpec(Spec):
    clientId: _IdStr
    secret: str


class SettingsSpec(wire.CompanySettings, forbid_unknown_fields=True):
    """ClearLine's six feature flags, as the settings lookup answers them; a misspelt flag is refused."""


class PosSystemSpec(Spec):
    id: _IdStr
    name: str
    status: Literal["Accepted", "Disabled", "NotAvailable"] = "Accepted"
    settings: SettingsSpec = msgspec.field(default_factory=SettingsSpec)
    clients: list[ClientSpec] = []
    companies: list[CompanySpec] = []


class RegistrySpec(Spec):
    posSystems: list[PosSystemSpec]


@dataclass(frozen=True)
class Registry:
    """A parsed, validated registry file: the spec and each company's marketing setup."""

    spec: RegistrySpec
    setups: dict[tuple[str, str], setup.Document]
    """(posSystemId, companyId) → the company's validated marketing setup."""

    @property
    def posSystems(self) -> list[PosSystemSpec]:
        """The POS systems the file declares."""
        return self.spec.posSystems


def parse(text: str, *, source: str = "<registry>") -> Registry:
    """Parse and type-check a registry file; ``RegistryError`` names ``source:line`` and the field."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise RegistryError(f"{source}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if (duplicate := _duplicate_key(root)) is not None:
        raise RegistryError(f"{source}:{duplicate[0]}: key {duplicate[1]!r} appears twice in one mapping")
    try:
        spec = msgspec.convert(data, RegistrySpec)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).rpartition(" - at `")
        path = path.rstrip("`") if message else "$"
        message = message or str(exc)
        raise RegistryError(
            f"{source}:{_line_of(root, path)}: {path.removeprefix('$.')}: {message}"
        ) from None
    setups: dict[tuple[str, str], setup.Document] = {}
    for path, problem in _semantic_problems(spec, setups):
        raise RegistryError(f"{source}:{_line_of(root, '$.' + path)}: {path}: {problem}")
    return Registry(spec, setups)


def load_file(path: str) -> Registry:
    """Read and parse a registry file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, source=path)


def _semantic_problems(
    spec: RegistrySpec, setups: dict[tuple[str, str], setup.Document]
) -> Iterable[tuple[str, str]]:
    """What types alone cannot check: duplicates, time zones, countries, the marketing setups.

    Each company's validated setup is put into ``setups`` as it is checked.
    """
    yield from _duplicates((p.id for p in spec.posSystems), "posSystems[{}].id")
    yield from _client_problems(spec)
    for i, pos in enumerate(spec.posSystems):
        yield from _duplicates((c.id for c in pos.companies), f"posSystems[{i}].companies[{{}}].id")
        for j, company in enumerate(pos.companies):
            yield from _user_problems(company, f"posSystems[{i}].companies[{j}]")
            try:
                setups[(pos.id, company.id)] = _setup(company, f"posSystems[{i}].companies[{j}]")
            except setup.SetupError as exc:
                yield exc.field, exc.message
            except rules.RuleError as exc:
                yield exc.field, (f"rule {exc.rule!r}: " if exc.rule else "") + exc.message
        locations = [(j, k, loc) for j, c in enumerate(pos.companies) for k, loc in enumerate(c.locations)]
        seen = set()
        for j, k, loc in locations:
            where = f"posSystems[{i}].companies[{j}].locations[{k}]"
            if loc.id in seen:
                yield f"{where}.id", f"duplicate location id {loc.id!r} in POS system {pos.id!r}"
            seen.add(loc.id)
            if not _is_timezone(loc.timezone):
                yield f"{where}.timezone", f"unknown time zone {loc.timezone!r}"
            if loc.country.upper() not in phonenumbers.SUPPORTED_REGIONS:
                yield f"{where}.country", f"unknown country code {loc.country!r} (ISO 3166 alpha-2)"
            try:
                parse_window(loc.quietHours)
            except ValueError as exc:
                yield f"{where}.quietHours", str(exc)
            yield from _duplicates((t.id for t in loc.terminals), f"{where}.terminals[{{}}].id")


def _client_problems(spec: RegistrySpec) -> Iterable[tuple[str, str]]:
    """Client ids are one namespace (``/connect/token``): POS and merchant clients alike, every POS system."""
    clients = [
        (f"posSystems[{i}].clients[{j}]", c.clientId, c.secret)
        for i, p in enumerate(spec.posSystems)
        for j, c in enumerate(p.clients)
    ] + [
        (f"posSystems[{i}].companies[{j}].merchantClients[{k}]", c.clientId, c.secret)
        for i, p in enumerate(spec.posSystems)
        for j, company in enumerate(p.companies)
        for k, c in enumerate(company.merchantClients)
    ]
    seen: set[str] = set()
    for where, client_id, secret in clients:
        if client_id in seen:
            yield f"{where}.clientId", f"duplicate clientId {client_id!r}"
        seen.add(client_id)
        if len(secret) < MIN_SECRET:
            yield f"{where}.secret", f"secret must have at least {MIN_SECRET} characters"


def _user_problems(company: CompanySpec, path: str) -> Iterable[tuple[str, str]]:
    seen: set[str] = set()
    for k, user in enumerate(company.users):
        where = f"{path}.users[{k}]"
        email = normalize_email(user.email)
        if email is None:
            yield f"{where}.email", f"not an email address: {user.email!r}"
        elif email in seen:
            yield f"{where}.email", f"duplicate user {email!r} in this company"
        seen.add(email or "")
        if (user.password is None) == (user.passwordHash is None):
            yield where, "give exactly one of password, passwordHash"
        elif user.password is not None and len(user.password) < MIN_PASSWORD:
            yield f"{where}.password", f"password must have at least {MIN_PASSWORD} characters"
        elif user.passwordHash is not None and not credentials.is_password_hash(user.passwordHash):
            yield f"{where}.passwordHash", "not an argon2 hash (e.g. $argon2id$v=19$m=65536,t=3,p=4$...)"


def _duplicates(ids: Iterable[str], path: str) -> Iterable[tuple[str, str]]:
    seen: set[str] = set()
    for index, value in enumerate(ids):
        if value in seen:
            yield path.format(index), f"duplicate id {value!r}"
        seen.add(value)


def _is_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _setup(company: CompanySpec, path: str) -> setup.Document:
    raw = {
        "branding": company.branding,
        "widgets": company.widgets,
        "cfsTemplates": company.cfsTemplates,
        "messageTemplates": company.messageTemplates,
        "rules": company.rules,
    }
    return setup.check(raw, locations=[loc.id for loc in company.locations], path=path)


def _duplicate_key(node: yaml.Node | None) -> tuple[int, str] | None:
    """The first key written twice in one mapping (YAML forbids it; PyYAML keeps the last silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[object] = set()
        for key, value in node.value:
            if key.value in seen:
                return key.start_mark.line + 1, str(key.value)
            seen.add(key.value)
            if (found := _duplicate_key(value)) is not None:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if (found := _duplicate_key(item)) is not None:
                return found
    return None


_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _line_of(root: yaml.Node | None, path: str) -> int:
    """The 1-based line of the YAML node at a msgspec-style path like ``$.a[0].b``."""
    node = root
    line = node.start_mark.line + 1 if node else 1
    for key, index in _STEP.findall(path.removeprefix("$")):
        child: yaml.Node | None = None
        if key and isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
            if child is None:
                break
            # Point at the key's line: for a scalar that is where the value is too.
            line = next(k for k, v in node.value if v is child).start_mark.line + 1
        elif index and isinstance(node, yaml.SequenceNode) and int(index) < len(node.value):
            child = node.value[int(index)]
            line = child.start_mark.line + 1
        else:
            break
        node = child
    return line
