"""How the hub console looks: the live rich view (nodes and their cameras, alerts, clips
asked of the poles, the poles' hardware, tracked objects, malformed messages) and the
one-line form of an event for --plain logs. Reads a HubState and draws; no I/O.

The screen is put together here from the tables in view_tables.py (nodes, cameras, alerts,
clips, objects) and view_pole.py (the poles' hardware), whose cells share view_cells.py.
Every string that came over the network goes through printable() and into a rich Text, so
a node (or anyone on the broker) cannot inject console markup or terminal escapes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Group, RenderableType
from rich.text import Text

from hub.alerts import AlertRecord
from hub.events import HubEvent
from hub.state import HubState
from hub.view_cells import hms, printable
from hub.view_pole import pole_table
from hub.view_tables import alerts_table, cameras_table, clips_table, nodes_table, objects_table

__all__ = [
    "ALERT_ROWS",
    "CLIP_ROWS",
    "OBJECT_ROWS",
    "alerts_table",
    "cameras_table",
    "clips_table",
    "event_line",
    "garbage_line",
    "nodes_table",
    "objects_table",
    "pole_table",
    "printable",
    "render",
]

ALERT_ROWS = 15  # the alerts table shows this many, newest first; `a N` counts in it
OBJECT_ROWS = 5  # few: objects are context, alerts (a citizen's call) must stay on screen
CLIP_ROWS = 3


def garbage_line(state: HubState) -> Text:
    counts, recent = state.garbage()
    if not counts:
        return Text("malformed messages: none", style="dim")
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
    line = Text(f"malformed messages: {sum(counts.values())} ({by_reason})", style="red")
    last = recent[-1]
    line.append(f" | last at {hms(last.at)}: {last.reason} on "
                f"{printable(last.topic, 60)}: {printable(last.error, 160)}")
    return line


def render(
    state: HubState, alerts: list[AlertRecord], *, now: datetime, header: str, notice: str
) -> RenderableType:
    """The whole screen: header, nodes and their cameras, alerts, clips, the poles' hardware,
    tracked objects, malformed messages, operator hints. Alerts come before the rest: if the
    terminal is too short, rich cuts the bottom, and a citizen's call matters most."""
    nodes = state.nodes()
    parts: list[RenderableType] = [
        Text(f"{header}   {hms(now)} UTC", style="bold"),
        nodes_table(nodes, now),
    ]
    cameras = cameras_table(nodes)
    if cameras is not None:
        parts.append(cameras)
    parts.append(alerts_table(alerts))
    clips = clips_table(state.clips.records(CLIP_ROWS))
    if clips is not None:
        parts.append(clips)
    pole = pole_table(nodes)
    if pole is not None:
        parts.append(pole)
    parts += [
        objects_table(state.objects(OBJECT_ROWS)),
        garbage_line(state),
    ]
    if notice:
        parts.append(Text(printable(notice, 200), style="cyan"))
    return Group(*parts)


def event_line(ev: HubEvent) -> str:
    """One event as a log line: UTC time to the millisecond, kind, what happened."""
    stamp = ev.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return f"{stamp} {ev.kind.upper():<12} {printable(ev.text, 400)}"
