"""Quiet hours (pure): parsing windows, and when an SMS may go out, across midnight and DST."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmc.outbox.dispatch import retry_delay
from cmc.quiet_hours import QuietHours, next_allowed, parse_window

NY = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
NIGHT = parse_window("21:00-08:00")


def local(tz: ZoneInfo, y: int, mo: int, d: int, h: int, mi: int, s: int = 0, *, fold: int = 0) -> datetime:
    """An aware instant given as wall-clock time in ``tz``."""
    return datetime(y, mo, d, h, mi, s, tzinfo=tz, fold=fold)


def test_parse_window() -> None:
    assert parse_window("21:00-08:00") == QuietHours(time(21), time(8))
    assert parse_window(" 9:30 - 17:45 ") == QuietHours(time(9, 30), time(17, 45))
    assert str(parse_window("7:05-8:00")) == "07:05-08:00"
    assert parse_window("00:00-00:00").empty
    assert parse_window("21:00-08:00").wraps
    assert not parse_window("12:00-13:00").wraps


@pytest.mark.parametrize(
    "text", ["", "21:00", "21-08", "24:00-08:00", "21:60-08:00", "9pm-8am", "21:00-08:00x"]
)
def test_parse_window_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


def test_outside_quiet_hours_is_now() -> None:
    now = local(NY, 2026, 6, 15, 12, 0).astimezone(UTC)
    assert next_allowed(now, NY, NIGHT) == now
    assert next_allowed(local(NY, 2026, 6, 15, 8, 0), NY, NIGHT) == local(NY, 2026, 6, 15, 8, 0)
    assert next_allowed(local(NY, 2026, 6, 15, 20, 59, 59), NY, NIGHT) == local(NY, 2026, 6, 15, 20, 59, 59)


def test_returns_utc() -> None:
    result = next_allowed(local(NY, 2026, 6, 15, 23, 0), NY, NIGHT)
    assert result.tzinfo is UTC
    assert result == datetime(2026, 6, 16, 12, 0, tzinfo=UTC)


def test_evening_waits_for_next_morning() -> None:
    assert next_allowed(local(NY, 2026, 6, 15, 21, 0), NY, NIGHT) == local(NY, 2026, 6, 16, 8, 0)
    assert next_allowed(local(NY, 2026, 6, 15, 23, 59), NY, NIGHT) == local(NY, 2026, 6, 16, 8, 0)


def test_after_midnight_waits_for_same_morning() -> None:
    assert next_allowed(local(NY, 2026, 6, 16, 0, 0), NY, NIGHT) == local(NY, 2026, 6, 16, 8, 0)
    assert next_allowed(local(NY, 2026, 6, 16, 7, 59, 59), NY, NIGHT) == local(NY, 2026, 6, 16, 8, 0)


def test_window_within_one_day() -> None:
    lunch = parse_window("12:00-13:30")
    assert next_allowed(local(NY, 2026, 6, 15, 12, 10), NY, lunch) == local(NY, 2026, 6, 15, 13, 30)
    assert next_allowed(local(NY, 2026, 6, 15, 11, 0), NY, lunch) == local(NY, 2026, 6, 15, 11, 0)
    assert next_allowed(local(NY, 2026, 6, 15, 22, 0), NY, lunch) == local(NY, 2026, 6, 15, 22, 0)


def test_empty_window_never_delays() -> None:
    now = local(NY, 2026, 6, 15, 23, 0)
    assert next_allowed(now, NY, parse_window("08:00-08:00")) == now


def test_wall_clock_end_on_spring_forward_night() -> None:
    # 2026-03-08: New York jumps 02:00 EST -> 03:00 EDT; quiet hours still end at 08:00 on the wall.
    result = next_allowed(local(NY, 2026, 3, 8, 1, 0), NY, NIGHT)
    assert result == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert result.astimezone(NY).hour == 8


def test_wall_clock_end_on_fall_back_night() -> None:
    # 2026-11-01: New York falls back 02:00 EDT -> 01:00 EST.
    result = next_allowed(local(NY, 2026, 10, 31, 22, 0), NY, NIGHT)
    assert result == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    assert result.astimezone(NY).hour == 8


def test_end_inside_spring_forward_gap_is_never_early() -> None:
    window = parse_window("21:00-02:30")  # 02:30 does not exist on 2026-03-08 in New York
    now = local(NY, 2026, 3, 8, 1, 0)
    result = next_allowed(now, NY, window)
    assert result > now
    assert result >= datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # the gap ends at 07:00 UTC (03:00 EDT)
    assert not window.contains(result.astimezone(NY).time())


def test_end_inside_repeated_hour() -> None:
    window = parse_window("21:00-01:30")  # 01:30 happens twice on 2026-11-01 in New York
    first = next_allowed(local(NY, 2026, 11, 1, 0, 30), NY, window)
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, the first one
    second_pass = local(NY, 2026, 11, 1, 1, 15, fold=1)  # 01:15 EST, after the first 01:30
    assert next_allowed(second_pass, NY, window) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError):
        next_allowed(datetime(2026, 6, 15, 12, 0), NY, NIGHT)


instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
)
minutes = st.times().map(lambda t: t.replace(second=0, microsecond=0))
zones = st.sampled_from(["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Tokyo", "UTC"])


@settings(max_examples=150, deadline=None)
@given(now=instants, start=minutes, end=minutes, zone=zones)
def test_result_is_never_early_nor_inside_the_window(
    now: datetime, start: time, end: time, zone: str
) -> None:
    tz, window = ZoneInfo(zone), QuietHours(start, end)
    result = next_allowed(now, tz, window)
    assert result >= now
    wall = result.astimezone(tz)
    if result > now and wall.time() != end:
        # Only an end skipped by a spring-forward gap lands elsewhere (just after the gap).
        assert (result - timedelta(hours=3)).astimezone(tz).utcoffset() != wall.utcoffset()
    else:
        assert not window.contains(wall.time())
    assert (result == now) == (not window.contains(now.astimezone(tz).time()))
    # Without DST, the wait is the shortest possible: a moment earlier is still quiet.
    if zone in {"Asia/Tokyo", "UTC"} and result > now:
        assert window.contains((result - timedelta(microseconds=1)).astimezone(tz).time())
        assert result - now <= timedelta(hours=24)


def test_retry_delays_grow_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    base = timedelta(seconds=2)
    for _ in range(200):
        delays = [retry_delay(n, base=base, rng=rng) for n in range(1, 16)]
        assert timedelta(seconds=1.6) <= delays[0] <= timedelta(seconds=2.4)
        assert all(a < b for a, b in itertools.pairwise(delays[:12]))
        assert max(delays) <= timedelta(hours=1)
        assert delays[-1] >= timedelta(hours=0.8)
    assert len({retry_delay(3, base=base, rng=rng) for _ in range(20)}) > 1  # jittered
