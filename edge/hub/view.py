"""How the hub console looks: the live rich view (nodes and their cameras, alerts, clips
asked of the poles, tracked objects, malformed messages) and the one-line form of an event
for --plain logs. Reads a HubState and draws; no I/O.

Every string that came over the network goes through printable() and into a rich Text, so
a node (or anyone on the broker) cannot inject console markup or terminal escapes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from edge.contract.payloads import CameraStats
from edge.hub.clips import ClipRecord
from edge.hub.state import AlertRecord, HubEvent, HubState, NodeView, ObjectRecord, duration

ALERT_ROWS = 15  # the alerts table shows this many, newest first; `a N` counts in it
OBJECT_ROWS = 5  # few: objects are context, alerts (a citizen's call) must stay on screen
CLIP_ROWS = 3


def printable(text: str, limit: int = 120) -> str:
    """Text made safe for a terminal: control characters shown as '?', cut to limit."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _hms(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%H:%M:%S")


def _age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    return f"{duration((now - then).total_seconds())} ago"


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _state_cell(node: NodeView) -> Text:
    style = {"online": "bold green", "offline": "bold red"}.get(node.state, "dim")
    cell = Text(node.state, style=style)
    if node.reason:
        cell.append(f"\n{printable(node.reason, 40)}", style="red")
    return cell


def nodes_table(nodes: list[NodeView], now: datetime) -> Table:
    # show_edge=False: no blank line above and below each table, so all fits 120x40
    t = Table(title="Nodes", title_justify="left", expand=True, box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, collapse_padding=True)
    t.add_column("Node", no_wrap=True, min_width=6)
    t.add_column("State", min_width=7, max_width=14)
    t.add_column("Site", ratio=1, min_width=10, no_wrap=True, overflow="ellipsis")
    t.add_column("Version", overflow="ellipsis")
    t.add_column("Heartbeat", no_wrap=True)  # when the hub last received one
    t.add_column("Outbox", justify="right", no_wrap=True)  # pending/unacked on the pole
    t.add_column("Conn", justify="right", no_wrap=True)  # link connects since the pole started
    t.add_column("Gaps", justify="right", no_wrap=True)  # seqs never received: possible loss
    for n in nodes:
        t.add_row(
            Text(n.node_id, style="bold"),
            _state_cell(n),
            Text(printable(n.site, 40)),
            Text(printable(n.version, 20)),
            Text(_age(n.heartbeat_at, now)),
            Text(f"{_int(n.outbox_pending)}/{_int(n.outbox_unacked)}",
                 style="yellow" if n.outbox_pending or n.outbox_unacked else ""),
            Text(_int(n.link_connects)),
            Text(str(n.seq_missing), style="bold red" if n.seq_missing else ""),
        )
    if not nodes:
        t.caption = "no node heard yet"
    return t


def _ack_cell(a: AlertRecord) -> Text:
    if a.acked_at is None:
        return Text("pending", style="bold yellow")
    return Text(f"ACKED {_hms(a.acked_at)}", style="green")


def alerts_table(alerts: list[AlertRecord]) -> Table:
    t = Table(title="Alerts (newest first; 'a N' acks row N)", title_justify="left",
              title_style="bold", expand=True, box=box.SIMPLE_HEAD, show_edge=False,
              pad_edge=False, collapse_padding=True)
    t.add_column("#", justify="right", no_wrap=True, min_width=2)
    t.add_column("Raised", no_wrap=True, min_width=9)
    t.add_column("Node", no_wrap=True, min_width=6, overflow="ellipsis")
    t.add_column("Seq", justify="right", no_wrap=True)
    t.add_column("Kind", no_wrap=True, min_width=4)
    t.add_column("Source", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")
    t.add_column("Copies", justify="right", no_wrap=True)
    t.add_column("Lat ms", justify="right", no_wrap=True)  # raised on the pole → at the hub
    t.add_column("State", no_wrap=True, min_width=14)
    for row, a in enumerate(alerts, start=1):
        # '?' marks a time from a node whose clock was not synchronised: latency is a guess
        raised = _hms(a.raised_at) + ("" if a.clock_synced else "?")
        t.add_row(
            str(row), raised, Text(a.node), str(a.seq), Text(a.kind),
            Text(printable(a.source, 30)),
            Text(str(a.copies), style="yellow" if a.copies > 1 else ""),
            f"{a.latency_ms:.0f}", _ack_cell(a),
        )
    if not alerts:
        t.caption = "no alert yet"
    return t


def _camera_cells(node: str, name: str, c: CameraStats) -> list[Text]:
    if c.online:
        state = Text("online", style="green")
    else:
        state = Text("OFFLINE", style="bold red")
        if c.reason:
            state.append(f" {printable(c.reason, 40)}", style="red")
    restarts = sum(c.restarts.values())
    which = ", ".join(f"{printable(w, 20)} {n}" for w, n in sorted(c.restarts.items()) if n)
    return [
        Text(node, style="bold"), Text(printable(name, 20)), state,
        Text(f"{c.capture_fps:.1f}/{c.processed_fps:.1f} fps"),
        Text(f"skipped {c.skipped_frames}"),
        Text(f"{c.inference_ms:.0f} ms ×{c.inferences_per_frame:.1f}"),
        Text(f"{c.events_per_min:.1f} ev/min"),
        Text(f"restarts {restarts}" + (f" ({which})" if which else ""),
             style="yellow" if restarts else ""),
    ]


def cameras_table(nodes: list[NodeView]) -> Table | None:
    """One row per camera, as in its node's last heartbeat; None when no node has cameras
    (an alarm-only pole), so the screen spends no line on it."""
    rows = [_camera_cells(n.node_id, name, c)
            for n in nodes for name, c in sorted(n.cameras.items())]
    if not rows:
        return None
    # no header: each cell carries its unit; the title says how to read the ms column
    t = Table(title="Cameras (fps captured/processed, inference ms × per frame)",
              title_justify="left", show_header=False, box=None, pad_edge=False,
              collapse_padding=True)
    t.add_column("Node", no_wrap=True, overflow="ellipsis")
    t.add_column("Camera", no_wrap=True, overflow="ellipsis")
    t.add_column("State", no_wrap=True, overflow="ellipsis", max_width=40)
    for justify in ("right", "right", "right", "right"):
        t.add_column(justify=justify, no_wrap=True)
    t.add_column("Restarts", no_wrap=True, overflow="ellipsis", max_width=40)
    for cells in rows:
        t.add_row(*cells)
    return t


_CLIP_STYLE = {"done": "green", "failed": "bold red", "rejected": "bold red",
               "not sent": "bold red", "accepted": "yellow", "requested": "yellow"}


def _verified_cell(c: ClipRecord) -> Text:
    if c.verified is None:
        return Text("-", style="dim")
    if c.verified:
        return Text("yes", style="bold green")
    return Text(f"NO {printable(c.problem, 60)}", style="bold red")


def clips_table(clips: list[ClipRecord]) -> Table | None:
    """The clips the hub asked for, newest first; None before the first request."""
    if not clips:
        return None
    t = Table(title="Clips (evidence asked of the poles)", title_justify="left", expand=True,
              box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    t.add_column("Request", no_wrap=True, max_width=38, overflow="ellipsis")
    t.add_column("Node", no_wrap=True, min_width=6, overflow="ellipsis")
    t.add_column("Camera", no_wrap=True, max_width=16, overflow="ellipsis")
    t.add_column("Window", no_wrap=True)  # asked for, UTC
    t.add_column("Status", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")
    t.add_column("Size", justify="right", no_wrap=True)
    t.add_column("Verified", no_wrap=True, max_width=64, overflow="ellipsis")
    for c in clips:
        status = Text(c.status, style=_CLIP_STYLE.get(c.status, ""))
        if c.error:
            status.append(f" {printable(c.error, 80)}", style="red")
        size = "-" if c.result is None else f"{c.result.bytes / 1e6:.1f} MB, {c.covered_s:.1f} s"
        t.add_row(Text(printable(c.request_id, 38)), Text(c.node), Text(printable(c.camera, 16)),
                  f"{_hms(c.start)}–{_hms(c.end)}", status, size, _verified_cell(c))
    return t


def _object_state(o: ObjectRecord) -> Text:
    cell = (Text(f"open {duration(o.seen_s)}", style="bold") if o.open
            else Text(f"ended {duration(o.seen_s)}", style="dim"))
    if o.loitering:
        cell.append(f" LOITERING {printable(', '.join(o.loitering), 30)}", style="bold yellow")
    elif o.loitered:
        cell.append(" loitered", style="yellow")
    if o.stationary and o.open:
        cell.append(" stationary", style="yellow")
    return cell


def objects_table(objects: list[ObjectRecord]) -> Table:
    t = Table(title="Objects seen (newest first)", title_justify="left", expand=True,
              box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True,
              style="dim")
    t.add_column("Seen", no_wrap=True, min_width=9)  # first seen, by the pole's clock
    t.add_column("Node", no_wrap=True, min_width=6, overflow="ellipsis")
    t.add_column("Camera", no_wrap=True, max_width=16, overflow="ellipsis")
    t.add_column("Label", no_wrap=True, max_width=12, overflow="ellipsis")
    t.add_column("Track", justify="right", no_wrap=True)
    t.add_column("Zones", ratio=1, min_width=8, no_wrap=True, overflow="ellipsis")  # in order
    t.add_column("State", no_wrap=True, max_width=50, overflow="ellipsis")
    for o in objects:
        t.add_row(
            _hms(o.started), Text(o.node), Text(printable(o.camera, 16)),
            Text(printable(o.label, 12)), f"#{o.track}",
            Text(printable(", ".join(o.zones_seen), 60) or "-"), _object_state(o),
        )
    if not objects:
        t.caption = "no object reported yet"
    return t


def garbage_line(state: HubState) -> Text:
    counts, recent = state.garbage()
    if not counts:
        return Text("malformed messages: none", style="dim")
    by_reason = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
    line = Text(f"malformed messages: {sum(counts.values())} ({by_reason})", style="red")
    last = recent[-1]
    line.append(f" | last at {_hms(last.at)}: {last.reason} on "
                f"{printable(last.topic, 60)}: {printable(last.error, 160)}")
    return line


def render(
    state: HubState, alerts: list[AlertRecord], *, now: datetime, header: str, notice: str
) -> RenderableType:
    """The whole screen: header, nodes and their cameras, alerts, clips, tracked objects,
    malformed messages, operator hints. Alerts come before objects: if the terminal is too
    short, rich cuts the bottom, and a citizen's call matters most."""
    nodes = state.nodes()
    parts: list[RenderableType] = [
        Text(f"{header}   {_hms(now)} UTC", style="bold"),
        nodes_table(nodes, now),
    ]
    cameras = cameras_table(nodes)
    if cameras is not None:
        parts.append(cameras)
    parts.append(alerts_table(alerts))
    clips = clips_table(state.clips.records(CLIP_ROWS))
    if clips is not None:
        parts.append(clips)
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
