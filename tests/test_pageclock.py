"""A page's update schedule as plain calls: no Bokeh, no browser, time passed in."""

from __future__ import annotations

import pytest

from streamvis._pageclock import ACK_TIMEOUT, PageClock


@pytest.fixture
def clock() -> PageClock:
    return PageClock(interval=0.05)


def test_changes_go_at_most_once_per_interval(clock: PageClock) -> None:
    assert clock.due(0.0) is None  # nothing to send
    clock.changed({"a"})
    assert clock.due(0.0) == pytest.approx(0.05)
    assert clock.begin(0.05) == {"a"}
    tick = clock.send(0.05, [])
    assert clock.echo(f"{tick} cpu", 0.06) is not None
    clock.changed({"b"})
    assert clock.due(0.07) == pytest.approx(0.10)  # an interval after the last update
    clock.hurry()  # a person moved the page: no interval to wait out
    assert clock.due(0.07) is not None and clock.due(0.07) <= 0.07  # type: ignore[operator]


def test_one_update_is_in_flight_until_the_page_echoes_it(clock: PageClock) -> None:
    clock.changed({"a"})
    clock.begin(1.0)
    tick = clock.send(1.0, [])
    clock.changed({"b"})
    assert clock.begin(1.2) is None  # still painting: changes accumulate
    clock.changed({"c"})
    assert clock.due(1.2) == pytest.approx(1.0 + ACK_TIMEOUT)  # unless the echo comes first
    echo = clock.echo(f"{tick} gpu", 1.3)
    assert echo is not None and echo.caught_up and echo.gpu
    assert clock.due(1.3) == pytest.approx(1.05) and clock.begin(1.3) == {"b", "c"}


def test_a_page_that_never_echoes_gets_an_update_per_ack_timeout(clock: PageClock) -> None:
    now = 0.0
    for _ in range(3):
        clock.changed({"a"})
        assert clock.begin(now) == {"a"}
        clock.send(now, ["a"])  # and no echo ever comes
        clock.changed({"a"})
        assert clock.begin(now + ACK_TIMEOUT / 2) is None
        assert clock.due(now) == pytest.approx(now + ACK_TIMEOUT)
        now += ACK_TIMEOUT
    for _ in range(200):  # and many more updates that carry large replaces, never echoed
        clock.send(now, ["a"])
    assert len(clock._large) == 64  # what it remembers of unechoed ticks stays bounded


def test_a_held_back_replace_goes_with_the_next_update_or_alone_once_due(
    clock: PageClock,
) -> None:
    clock.changed({"big", "small"})
    assert clock.begin(0.0) == {"big", "small"}
    clock.defer("big", 0.25, 0.0)  # its last replace was too recent
    tick = clock.send(0.0, [])
    clock.echo(f"{tick} cpu", 0.01)
    assert clock.due(0.01) == pytest.approx(0.30)  # alone: its time, then an interval
    clock.changed({"small"})
    assert clock.begin(0.1) == {"small"}  # not due yet: it stays held
    clock.send(0.1, [])
    clock.echo(f"{tick + 1} cpu", 0.11)
    assert clock.begin(0.3) == {"big"}


def test_the_echo_times_the_large_replaces_of_its_own_tick_only(clock: PageClock) -> None:
    first = clock.send(0.0, ["big"])
    second = clock.send(0.1, ["big"])
    echo = clock.echo(f"{second} cpu", 0.4)
    assert echo is not None and echo.costs == {"big": pytest.approx(0.3)}
    assert clock.echo(f"{first} cpu", 0.5) is not None  # late and stale: times nothing more
    third = clock.send(1.0, ["big"])
    ready = clock.echo(f"{third} cpu ready", 1.5)  # a page that loaded holds it: no timing
    assert ready is not None and ready.costs == {}
    assert clock.echo("not an echo", 2.0) is None
