"""The console's screen and log lines: whatever arrives over the network is drawn as text,
never as console markup or terminal escapes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from edge.contract.payloads import Alert, AlertKind, Location, Status
from edge.contract.topics import NodeTopics
from edge.hub import view
from edge.hub.state import HubEvent, HubState
from edge.ids import uuid7

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLE = NodeTopics("pole-1")
HOSTILE = "[bold red]boom[/] [/oops] \x1b[2J\x07"


def draw(state: HubState) -> str:
    out = io.StringIO()
    screen = view.render(state, state.alerts(view.ALERT_ROWS), now=T0 + timedelta(seconds=3),
                         header="hub", notice=HOSTILE)
    Console(file=out, width=220, color_system=None).print(screen)
    return out.getvalue()


def test_hostile_strings_from_a_pole_are_shown_literally() -> None:
    s = HubState()
    s.receive(POLE.status, Status(node="pole-1", state="offline", time=T0, boot="b",
                                  version=HOSTILE, site=HOSTILE, reason=HOSTILE).to_bytes(), T0)
    alert = Alert(id=uuid7(), seq=1, node="pole-1", kind=AlertKind.INPUT, source=HOSTILE,
                  time=T0, clock_synced=False, site=HOSTILE, location=Location(lat=0, lon=0))
    s.receive(POLE.alert, alert.to_bytes(), T0)
    s.receive(f"poles/{HOSTILE}/x/y", HOSTILE.encode(), T0)
    text = draw(s)
    assert "\x1b" not in text and "\x07" not in text
    assert "[/oops]" in text
    assert "pending" in text and "offline" in text
    assert "malformed messages: 1 (topic 1)" in text


def test_an_empty_hub_says_so() -> None:
    text = draw(HubState())
    assert "no node heard yet" in text and "no alert yet" in text
    assert "malformed messages: none" in text


def test_event_lines_are_one_printable_line() -> None:
    seen: list[HubEvent] = []
    s = HubState(on_event=seen.append)
    s.receive("poles/x/y/z", b"{}", T0)
    s.receive(f"poles/a\nb\x1b[31m/{'x' * 5000}", b"{}", T0)
    lines = [view.event_line(ev) for ev in seen]
    assert lines[0].startswith("2025-03-01T12:00:00.000Z GARBAGE")
    assert all("\n" not in line and "\x1b" not in line and len(line) < 500 for line in lines)


def test_printable_cuts_long_text() -> None:
    assert view.printable("abcdef", 4) == "abc…"
    assert view.printable("a\tb", 10) == "a?b"
