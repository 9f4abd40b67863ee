"""Settings: ``Settings.from_env`` reads every ``CMC_*`` variable from a mapping, or refuses it by name."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from cmc.config import Settings, env_names
from cmc.errors import CmcError, ConfigError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == "sqlite:///./var/cmc.db"
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.jwt_secret is None
    assert settings.token_ttl == timedelta(hours=1)
    assert settings.session_ttl == timedelta(minutes=15)
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.log_level == "info"
    assert settings.access_log is True
    assert settings.registry_refresh == timedelta(seconds=1)
    assert settings.sqlite_synchronous == "NORMAL"


def test_the_mapping_is_all_that_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMC_PUBLIC_URL", "https://from-the-process.example")
    assert Settings.from_env({}).public_url == "http://127.0.0.1:8080"
    assert Settings.from_env().public_url == "https://from-the-process.example"


def test_every_field_has_one_documented_variable() -> None:
    names = env_names()
    assert len(names) == len(set(names)) == len(dataclasses.fields(Settings))
    assert all(name.startswith("CMC_") and name.isupper() for name in names)
    assert {"CMC_DATABASE_URL", "CMC_PUBLIC_URL"} <= set(names)


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.public_url = "http://elsewhere"  # type: ignore[misc]


def test_strings_are_taken_as_written() -> None:
    settings = Settings.from_env(
        {
            "CMC_DATABASE_URL": "postgresql://cmc@db/cmc",
            "CMC_PUBLIC_URL": "https://cmc.example.com/",
            "CMC_JWT_SECRET": "a-long-signing-key",
            "CMC_LOG_LEVEL": "debug",
            "CMC_SQLITE_SYNCHRONOUS": "FULL",
        }
    )
    assert settings.database_url == "postgresql://cmc@db/cmc"
    assert settings.public_url == "https://cmc.example.com/"
    assert settings.base_url == "https://cmc.example.com"
    assert settings.jwt_secret == "a-long-signing-key"
    assert settings.log_level == "debug"
    assert settings.sqlite_synchronous == "FULL"


@pytest.mark.parametrize(
    ("name", "attribute"),
    [
        ("CMC_TOKEN_TTL_SECONDS", "token_ttl"),
        ("CMC_SESSION_TTL_SECONDS", "session_ttl"),
        ("CMC_REGISTRY_REFRESH_SECONDS", "registry_refresh"),
    ],
)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("60", timedelta(minutes=1)), ("0.25", timedelta(milliseconds=250)), ("86400", timedelta(days=1))],
)
def test_seconds_become_timedeltas(name: str, attribute: str, raw: str, expected: timedelta) -> None:
    assert getattr(Settings.from_env({name: raw}), attribute) == expected


def test_the_roll_up_may_be_turned_off_with_zero_and_other_durations_may_not() -> None:
    assert Settings.from_env({"CMC_ROLLUP_SECONDS": "0"}).rollup_every == timedelta(0)
    assert Settings.from_env({"CMC_ROLLUP_SECONDS": "60"}).rollup_every == timedelta(minutes=1)
    for name, raw in (("CMC_ROLLUP_SECONDS", "-1"), ("CMC_SESSION_TTL_SECONDS", "0")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: raw})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True), ("true", True), ("TRUE", True), ("yes", True), ("on", True),
        ("0", False), ("false", False), ("False", False), ("no", False), ("off", False),
    ],
)  # fmt: skip
def test_booleans(raw: str, expected: bool) -> None:
    assert Settings.from_env({"CMC_ACCESS_LOG": raw}).access_log is expected


@pytest.mark.parametrize(("raw", "expected"), [("2048", 2048), ("10485760", 10 * 1024 * 1024)])
def test_integers(raw: str, expected: int) -> None:
    assert Settings.from_env({"CMC_MAX_BODY_BYTES": raw}).max_body_bytes == expected


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "WARNING"])
def test_log_levels(level: str) -> None:
    assert Settings.from_env({"CMC_LOG_LEVEL": level}).log_level == level


@pytest.mark.parametrize("mode", ["OFF", "normal", "FULL", "extra"])
def test_sqlite_synchronous_modes(mode: str) -> None:
    assert Settings.from_env({"CMC_SQLITE_SYNCHRONOUS": mode}).sqlite_synchronous == mode


def test_an_empty_value_means_the_default() -> None:
    settings = Settings.from_env(dict.fromkeys(env_names(), ""))
    assert settings == Settings()


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.from_env({"CMC_LOG_LEVEL": "debug"}, log_level="error", access_log=False)
    assert (settings.log_level, settings.access_log) == ("error", False)


def test_unknown_cmc_variables_are_ignored() -> None:
    assert Settings.from_env({"CMC_NOT_A_SETTING": "x", "PATH": "/bin"}) == Settings()


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("CMC_TOKEN_TTL_SECONDS", "an hour"),
        ("CMC_TOKEN_TTL_SECONDS", "0"),
        ("CMC_TOKEN_TTL_SECONDS", "-5"),
        ("CMC_TOKEN_TTL_SECONDS", "nan"),
        ("CMC_SESSION_TTL_SECONDS", "15m"),
        ("CMC_SESSION_TTL_SECONDS", "-0.5"),
        ("CMC_REGISTRY_REFRESH_SECONDS", "soon"),
        ("CMC_MAX_BODY_BYTES", "1MiB"),
        ("CMC_MAX_BODY_BYTES", "1.5"),
        ("CMC_ACCESS_LOG", "maybe"),
        ("CMC_ACCESS_LOG", "2"),
        ("CMC_LOG_LEVEL", "loud"),
        ("CMC_LOG_LEVEL", "trace"),
        ("CMC_SQLITE_SYNCHRONOUS", "sometimes"),
        ("CMC_PUBLIC_URL", "cmc.example.com"),
        ("CMC_PUBLIC_URL", "ftp://cmc.example.com"),
    ],
)
def test_invalid_values_are_refused_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: raw})


def test_config_errors_are_cmc_errors() -> None:
    """The CLI turns every ``CmcError`` into exit code 2 and one line (no traceback)."""
    assert issubclass(ConfigError, CmcError)


@pytest.mark.parametrize("raw", ["inf", "1e400"])
def test_an_infinite_duration_is_refused_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError, match="CMC_SESSION_TTL_SECONDS"):
        Settings.from_env({"CMC_SESSION_TTL_SECONDS": raw})


@pytest.mark.parametrize("raw", ["0", "-1"])
def test_a_non_positive_body_limit_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="CMC_MAX_BODY_BYTES"):
        Settings.from_env({"CMC_MAX_BODY_BYTES": raw})
