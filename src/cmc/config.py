"""Settings: every ``CMC_*`` environment variable, read once into one frozen object.

The object is passed explicitly to whatever needs it; nothing else reads the environment.
The README's "Settings" table lists the same variables; a test keeps the two in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from cmc.errors import ConfigError

if TYPE_CHECKING:
    from cmc.store.database import Database


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Service settings; ``Settings.from_env()`` builds them from ``CMC_*`` variables."""

    database_url: str = field(default="sqlite:///./var/cmc.db", metadata={"env": "CMC_DATABASE_URL"})
    public_url: str = field(default="http://127.0.0.1:8080", metadata={"env": "CMC_PUBLIC_URL"})
    jwt_secret: str | None = field(default=None, metadata={"env": "CMC_JWT_SECRET"})
    token_ttl: timedelta = field(default=timedelta(hours=1), metadata={"env": "CMC_TOKEN_TTL_SECONDS"})
    session_ttl: timedelta = field(default=timedelta(minutes=15), metadata={"env": "CMC_SESSION_TTL_SECONDS"})
    session_secrets: str | None = field(default=None, metadata={"env": "CMC_SESSION_SECRETS"})
    max_body_bytes: int = field(default=1024 * 1024, metadata={"env": "CMC_MAX_BODY_BYTES"})
    log_level: str = field(default="info", metadata={"env": "CMC_LOG_LEVEL"})
    access_log: bool = field(default=True, metadata={"env": "CMC_ACCESS_LOG"})
    registry_refresh: timedelta = field(
        default=timedelta(seconds=1), metadata={"env": "CMC_REGISTRY_REFRESH_SECONDS"}
    )
    sqlite_synchronous: str = field(default="NORMAL", metadata={"env": "CMC_SQLITE_SYNCHRONOUS"})
    db_pool_size: int = field(default=10, metadata={"env": "CMC_DB_POOL_SIZE"})
    smtp_url: str | None = field(default=None, metadata={"env": "CMC_SMTP_URL"})
    smtp_from: str = field(default="CMC <cmc@localhost>", metadata={"env": "CMC_SMTP_FROM"})
    sms_url: str | None = field(default=None, metadata={"env": "CMC_SMS_URL"})
    sms_from: str = field(default="CMC", metadata={"env": "CMC_SMS_FROM"})
    sms_auth_token: str | None = field(default=None, metadata={"env": "CMC_SMS_AUTH_TOKEN"})
    dispatcher: bool = field(default=True, metadata={"env": "CMC_DISPATCHER"})
    outbox_poll: timedelta = field(default=timedelta(seconds=1), metadata={"env": "CMC_OUTBOX_POLL_SECONDS"})
    outbox_backoff: timedelta = field(
        default=timedelta(seconds=2), metadata={"env": "CMC_OUTBOX_BACKOFF_SECONDS"}
    )
    outbox_max_attempts: int = field(default=6, metadata={"env": "CMC_OUTBOX_MAX_ATTEMPTS"})
    cfs_poll: timedelta = field(default=timedelta(milliseconds=250), metadata={"env": "CMC_CFS_POLL_SECONDS"})
    auth_failures_per_client: int = field(default=10, metadata={"env": "CMC_AUTH_FAILURES_PER_CLIENT"})
    auth_failures_per_address: int = field(default=50, metadata={"env": "CMC_AUTH_FAILURES_PER_ADDRESS"})
    auth_failure_window: timedelta = field(
        default=timedelta(minutes=1), metadata={"env": "CMC_AUTH_FAILURE_WINDOW_SECONDS"}
    )
    auth_tarpit: timedelta = field(default=timedelta(seconds=1), metadata={"env": "CMC_AUTH_TARPIT_SECONDS"})
    rollup_every: timedelta = field(
        default=timedelta(minutes=5), metadata={"env": "CMC_ROLLUP_SECONDS", "zero_turns_off": True}
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``CMC_*`` variables; a malformed value is a ``ConfigError`` naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(name, raw, f.default, zero=f.metadata.get("zero_turns_off", False))
        values.update(overrides)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse settings that cannot work, before anything starts."""
        if self.sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ConfigError("CMC_SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError("CMC_LOG_LEVEL must be debug, info, warning or error")
        if self.db_pool_size < 1:
            raise ConfigError("CMC_DB_POOL_SIZE must be at least 1")
        if self.max_body_bytes < 1:
            raise ConfigError("CMC_MAX_BODY_BYTES must be at least 1")
        if min(self.auth_failures_per_client, self.auth_failures_per_address) < 1:
            raise ConfigError(
                "CMC_AUTH_FAILURES_PER_CLIENT and CMC_AUTH_FAILURES_PER_ADDRESS must be at least 1"
            )
        if self.outbox_max_attempts < 1:
            raise ConfigError("CMC_OUTBOX_MAX_ATTEMPTS must be at least 1")
        if self.smtp_url and not self.smtp_url.startswith(("smtp://", "smtps://")):
            raise ConfigError("CMC_SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        if self.sms_url and not self.sms_url.startswith(("http://", "https://")):
            raise ConfigError("CMC_SMS_URL must be an http(s) URL")
        if self.session_secrets is not None and any(len(k) < 32 for k in self.session_keys or (b"",)):
            raise ConfigError("CMC_SESSION_SECRETS: each comma-separated secret needs at least 32 characters")
        if not self.public_url.startswith(("http://", "https://")):
            raise ConfigError("CMC_PUBLIC_URL must be an http(s) URL")

    def open_database(self) -> Database:
        """The store these settings name."""
        from cmc.store.database import Database  # the store imports settings' errors: import late

        return Database.open(
            self.database_url, sqlite_synchronous=self.sqlite_synchronous, pool_size=self.db_pool_size
        )

    @property
    def session_keys(self) -> tuple[bytes, ...] | None:
        """``CMC_SESSION_SECRETS`` as keys (the first signs, all verify); None: the database's keys."""
        if not self.session_secrets:
            return None
        return tuple(secret.strip().encode() for secret in self.session_secrets.split(",") if secret.strip())

    @property
    def sms_callback_key(self) -> bytes | None:
        """What SMS delivery reports are signed with: ``CMC_SMS_AUTH_TOKEN``, else the SMS URL's password.

        None (no SMS provider, or nothing to check a signature with): CMC asks for no reports and
        refuses every one.
        """
        if not self.sms_url:
            return None
        token = self.sms_auth_token or unquote(urlsplit(self.sms_url).password or "")
        return token.encode() if token else None

    @property
    def base_url(self) -> str:
        """``public_url`` without a trailing slash, for building absolute links."""
        return self.public_url.rstrip("/")


def env_names() -> list[str]:
    """Every environment variable the service reads (the README documents each)."""
    return [f.metadata["env"] for f in fields(Settings)]


def _parse(name: str, raw: str, default: object, *, zero: bool = False) -> object:
    """``raw`` as the type of ``default``; a duration is positive, or also 0 where ``zero`` (off)."""
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int) and not isinstance(default, bool):
            return int(raw)
        if isinstance(default, timedelta):
            seconds = float(raw)
            if not (seconds >= 0 if zero else seconds > 0) or seconds >= 10**9:
                raise ValueError(raw)
            return timedelta(seconds=seconds)
    except (ValueError, OverflowError):
        raise ConfigError(f"{name}={raw!r} is not a valid value") from None
    return raw
