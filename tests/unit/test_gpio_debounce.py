"""The debouncer against recorded-style contact bounce, with times given explicitly."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from drivers.gpio.debounce import Debouncer, Event, EventKind

PRESSED, RELEASED = EventKind.PRESSED, EventKind.RELEASED
LONG_PRESS, STUCK = EventKind.LONG_PRESS, EventKind.STUCK
ms = 0.001

Edges = list[tuple[bool, float]]
Owner = Callable[[Debouncer, Edges, float], list[Event]]


def polling_owner(d: Debouncer, edges: Edges, until: float) -> list[Event]:
    """Feeds edges and polls at every deadline in between, as the button's thread does."""
    events: list[Event] = []
    for level, t in [*edges, (None, until)]:
        while (deadline := d.next_deadline()) is not None and deadline <= t:
            events += d.poll(deadline)
        if level is not None:
            events += d.feed(level, t)
    return events


def lazy_owner(d: Debouncer, edges: Edges, until: float) -> list[Event]:
    """Feeds edges and polls only once at the end, as a late-waking thread would."""
    events: list[Event] = []
    for level, t in edges:
        events += d.feed(level, t)
    return events + d.poll(until)


@pytest.fixture(params=[polling_owner, lazy_owner], ids=["polled", "late-poll"])
def play(request: pytest.FixtureRequest) -> Owner:
    owner: Owner = request.param
    return owner


def button(**kwargs: float | None) -> Debouncer:
    options: dict[str, Any] = {"long_press_s": 3.0, "stuck_after_s": 60.0}
    options.update(kwargs)
    return Debouncer(debounce_s=30 * ms, **options)


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


# A press that chatters seven times within 4 ms, as a worn microswitch does.
PRESS_BURST: Edges = [
    (True, 0.0),
    (False, 0.6 * ms),
    (True, 1.1 * ms),
    (False, 1.9 * ms),
    (True, 2.6 * ms),
    (False, 3.1 * ms),
    (True, 3.8 * ms),
]


def release_burst(start: float) -> Edges:
    """Five release edges over 3 ms, ending open."""
    return [
        (False, start),
        (True, start + 0.7 * ms),
        (False, start + 1.5 * ms),
        (True, start + 2.2 * ms),
        (False, start + 3.0 * ms),
    ]


def test_bouncy_press_and_release_give_one_press_at_the_first_edge(play: Owner) -> None:
    events = play(button(), PRESS_BURST + release_burst(300 * ms), 1.0)
    assert kinds(events) == [PRESSED, RELEASED]
    assert events[0].t == 0.0
    assert events[1].t == pytest.approx(303 * ms)
    assert events[1].duration_s == pytest.approx(303 * ms)


def test_press_is_reported_by_the_edge_itself_without_waiting() -> None:
    d = button()
    assert d.feed(True, 5.0) == [Event(PRESSED, 5.0)]
    assert d.is_active


def test_two_deliberate_presses_200_ms_apart_are_two_presses(play: Owner) -> None:
    first = PRESS_BURST + release_burst(80 * ms)
    second = [(level, t + 200 * ms) for level, t in PRESS_BURST + release_burst(80 * ms)]
    events = play(button(), first + second, 1.0)
    assert kinds(events) == [PRESSED, RELEASED, PRESSED, RELEASED]
    assert events[2].t == pytest.approx(200 * ms)


def test_release_chatter_with_closing_edges_never_makes_a_second_press(play: Owner) -> None:
    # Open, then a late chatter 18 ms later: still inside the lockout.
    release: Edges = [
        (False, 100 * ms),
        (True, 101 * ms),
        (False, 102 * ms),
        (True, 120 * ms),
        (False, 121 * ms),
    ]
    events = play(button(), [(True, 0.0), *release], 1.0)
    assert kinds(events) == [PRESSED, RELEASED]
    assert events[1].t == pytest.approx(121 * ms)


def test_a_press_after_the_release_was_confirmed_is_a_new_press(play: Owner) -> None:
    just_inside: Edges = [(True, 0.0), (False, 100 * ms), (True, 129 * ms), (False, 150 * ms)]
    assert kinds(play(button(), just_inside, 1.0)) == [PRESSED, RELEASED]
    at_boundary: Edges = [(True, 0.0), (False, 100 * ms), (True, 130 * ms), (False, 150 * ms)]
    assert kinds(play(button(), at_boundary, 1.0)) == [PRESSED, RELEASED, PRESSED, RELEASED]


def test_holding_the_button_reports_a_long_press_once(play: Owner) -> None:
    events = play(button(), [(True, 0.0), *release_burst(3.5)], 10.0)
    assert kinds(events) == [PRESSED, LONG_PRESS, RELEASED]
    assert events[1].t == pytest.approx(3.0)
    assert events[2].duration_s == pytest.approx(3.503)


def test_a_press_released_just_before_the_long_press_threshold_is_short(play: Owner) -> None:
    # Opened at 2.99 s; the release is only confirmed at 3.02 s, after the threshold.
    events = play(button(), [(True, 0.0), (False, 2.99)], 10.0)
    assert kinds(events) == [PRESSED, RELEASED]


def test_bounce_across_the_long_press_threshold_still_counts_as_held() -> None:
    d = button()
    d.feed(True, 0.0)
    assert d.feed(False, 2.99) == []
    assert d.poll(3.0) == []
    assert d.feed(True, 3.005) == [Event(LONG_PRESS, 3.0)]


def test_a_jammed_button_is_reported_stuck_once_and_its_release_as_recovery(
    play: Owner,
) -> None:
    d = button()
    events = play(d, [(True, 0.0)], 65.0)
    assert kinds(events) == [PRESSED, LONG_PRESS, STUCK]
    assert events[2].t == pytest.approx(60.0)
    assert d.poll(600.0) == []
    later = play(d, release_burst(700.0), 800.0)
    assert kinds(later) == [RELEASED]
    assert later[0].duration_s == pytest.approx(700.003)
    assert not d.is_active


def test_a_button_held_at_boot_is_not_a_call_but_is_reported_stuck(play: Owner) -> None:
    d = Debouncer(
        debounce_s=30 * ms, long_press_s=3.0, stuck_after_s=60.0, initial_active=True, t0=100.0
    )
    assert d.is_active
    events = play(d, [], 170.0)
    assert events == [Event(STUCK, 160.0)]
    events = play(d, [*release_burst(200.0), (True, 201.0)], 202.0)
    assert kinds(events) == [RELEASED, PRESSED]


def test_an_input_active_at_start_reports_only_its_release() -> None:
    d = Debouncer(debounce_s=50 * ms, initial_active=True, t0=0.0)
    assert d.next_deadline() is None
    assert d.feed(False, 10.0) == []
    assert d.poll(10.05) == [Event(RELEASED, 10.0, 10.0)]


def test_next_deadline_is_the_earliest_time_poll_could_emit() -> None:
    d = button(long_press_s=3.0, stuck_after_s=60.0)
    assert d.next_deadline() is None
    d.feed(True, 1.0)
    assert d.next_deadline() == pytest.approx(4.0)
    d.feed(False, 2.0)
    assert d.next_deadline() == pytest.approx(2.03)
    assert d.poll(2.029) == []
    d.feed(True, 2.02)
    assert d.next_deadline() == pytest.approx(4.0)
    assert kinds(d.poll(4.0)) == [LONG_PRESS]
    assert d.next_deadline() == pytest.approx(61.0)
    assert kinds(d.poll(61.0)) == [STUCK]
    assert d.next_deadline() is None
    d.feed(False, 70.0)
    assert d.next_deadline() == pytest.approx(70.03)
    assert kinds(d.poll(70.03)) == [RELEASED]
    assert d.next_deadline() is None


def test_without_long_press_or_stuck_a_held_input_has_no_deadline(play: Owner) -> None:
    d = Debouncer(debounce_s=50 * ms)
    events = play(d, [(True, 0.0)], 1000.0)
    assert kinds(events) == [PRESSED]
    assert d.next_deadline() is None


def test_zero_debounce_confirms_the_release_at_the_opening_edge() -> None:
    d = Debouncer(debounce_s=0.0)
    d.feed(True, 1.0)
    assert d.feed(False, 2.0) == []
    assert d.next_deadline() == 2.0
    assert d.poll(2.0) == [Event(RELEASED, 2.0, 1.0)]


def test_a_time_earlier_than_one_already_seen_is_taken_as_the_later_one() -> None:
    d = button()
    d.feed(True, 5.0)
    d.feed(False, 4.0)
    assert d.poll(5.03) == [Event(RELEASED, 5.0, 0.0)]


def test_repeated_levels_are_not_edges() -> None:
    d = button()
    assert kinds(d.feed(True, 0.0)) == [PRESSED]
    assert d.feed(True, 0.001) == []
    assert d.raw_active


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"debounce_s": -0.01}, "debounce_s"),
        ({"debounce_s": float("nan")}, "debounce_s"),
        ({"debounce_s": 0.03, "long_press_s": 0.0}, "long_press_s"),
        ({"debounce_s": 0.03, "stuck_after_s": float("inf")}, "stuck_after_s"),
    ],
)
def test_nonsense_durations_are_refused_naming_the_field(
    options: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        Debouncer(**options)


def test_a_contact_seen_closed_before_its_edge_arrives_cancels_the_pending_release() -> None:
    d = Debouncer(debounce_s=0.03)
    assert kinds(d.feed(True, 0.0)) == [EventKind.PRESSED]
    d.feed(False, 0.010)
    assert d.release_pending
    assert d.seen_closed(0.045) == []  # the release was due at 0.040, but the pin is closed
    assert not d.release_pending and d.is_active
    assert d.feed(True, 0.050) == []  # the late closing edge is no new press
    d.feed(False, 0.200)
    assert kinds(d.poll(0.231)) == [EventKind.RELEASED]
