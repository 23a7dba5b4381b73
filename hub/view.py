"""How the hub console looks: the live rich view (nodes and their cameras, alerts, clips
asked of the poles, the poles' hardware, tracked objects, malformed messages) and the
one-line form of an event for --plain logs. Reads a HubState and draws; no I/O.

Every string that came over the network goes through printable() and into a rich Text, so
a node (or anyone on the broker) cannot inject console markup or terminal escapes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from contract.payloads import CameraStats
from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from hub.clips import ClipRecord
from hub.state import (
    AlertRecord,
    HubEvent,
    HubState,
    NodeView,
    ObjectRecord,
    PoleHardware,
    duration,
)

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


_HEALTH_STYLE = {"ok": "green", "degraded": "bold yellow", "failed": "bold red"}


def _verdict(node: NodeView) -> Text:
    """The node's health verdict and its reasons, e.g. 'degraded: on battery (ups)'."""
    text = Text(printable(node.health, 10), style=_HEALTH_STYLE.get(node.health, "bold red"))
    if node.reasons:
        text.append(": " + printable("; ".join(node.reasons), 200))
    return text


def _state_cell(node: NodeView) -> RenderableType:
    style = {"online": "bold green", "offline": "bold red"}.get(node.state, "dim")
    cell = Text(node.state, style=style)
    if node.reason:
        cell.append(f"\n{printable(node.reason, 40)}", style="red")
    if node.state != "online" or (node.health == "ok" and not node.reasons):
        return cell
    if node.hardware is not None:  # the pole section below gives the reasons in full
        return cell.append(", ").append(printable(node.health, 10),
                                        style=_HEALTH_STYLE.get(node.health, "bold red"))
    verdict = _verdict(node)
    verdict.no_wrap, verdict.overflow = True, "ellipsis"  # one line, cut
    return Group(cell, verdict)


def nodes_table(nodes: list[NodeView], now: datetime) -> Table:
    # show_edge=False: no blank line above and below each table, so all fits 120x40
    t = Table(title="Nodes", title_justify="left", expand=True, box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, collapse_padding=True)
    t.add_column("Node", no_wrap=True, min_width=6)
    t.add_column("State", min_width=7, max_width=30)
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


def _input(name: str, i: InputStats) -> Text:
    if i.flapping:
        return Text(f"{name} FLAPPING ({i.suppressed} held back)", style="bold yellow")
    if i.active:
        return Text(f"{name} ACTIVE", style="bold yellow")
    return Text(f"{name} ok")


def _output(name: str, o: OutputStats) -> Text:
    if not o.on:
        cell = Text(f"{name} off")
    elif o.off_in_s is not None:
        cell = Text(f"{name} ON {duration(o.off_in_s)} left", style="bold")
    else:
        cell = Text(f"{name} ON", style="bold")
    if o.temperature_c is not None:
        cell.append(f" {o.temperature_c:.1f} °C")
    if o.reason:
        cell.append(f" fail-safe: {printable(o.reason, 40)}", style="yellow")
    return cell


def _ptz(p: PtzStats) -> Text:
    preset = "-" if p.preset is None else str(p.preset)
    if p.mode == "alert":
        cell = Text(f"ALERT preset {p.alert_preset or preset}", style="bold yellow")
        if p.resume_in_s is not None:
            cell.append(f", resumes in {duration(p.resume_in_s)}")
    else:
        cell = Text(f"{p.mode} preset {preset}")
    if p.tours_completed:
        cell.append(f", {p.tours_completed} tours")
    if p.errors:
        cell.append(f", {p.errors} errors" + (f": {printable(p.last_error, 60)}"
                                               if p.last_error else ""), style="red")
    return cell


def _gps(g: GpsStats) -> Text:
    if g.state != "fix":
        cell = Text(g.state.replace("_", " ").upper(), style="bold yellow")
    else:
        cell = Text("fix")
        if g.satellites is not None:
            cell.append(f" {g.satellites} sats")
    if g.clock_offset_s is not None:
        cell.append(f", clock {g.clock_offset_s:+.3f} s")
    return cell


def _sensor(name: str, s: SensorStats) -> Text:
    if s.value is None or not s.ok:
        why = printable(s.error or "no reading", 40)
        value = "" if s.value is None else f" {s.value:g} {printable(s.unit, 8)}".rstrip()
        return Text(f"{name}{value} ({why})", style="yellow")
    return Text(f"{name} {s.value:g} {printable(s.unit, 8)}".rstrip())


def _part(label: str, items: list[Text]) -> Text:
    part = Text(f"{label} ", style="dim")
    return part.append(Text(", ").join(items))


class _Flow:
    """Parts side by side with a bar between, on as few lines as the width allows; a part
    wider than a line is cut with an ellipsis. Each part stays whole on its line, so a label
    is never parted from its values."""

    SEPARATOR = " │ "

    def __init__(self, parts: list[Text]) -> None:
        self.parts = parts

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((p.cell_len for p in self.parts), default=1)
        return Measurement(min(widest, 20), options.max_width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        line: Text | None = None
        for part in self.parts:
            if line is not None and line.cell_len + len(self.SEPARATOR) + part.cell_len <= width:
                line.append(self.SEPARATOR, style="dim").append(part)
                continue
            if line is not None:
                yield line
            line = part.copy()
            line.no_wrap, line.overflow = True, "ellipsis"
        if line is not None:
            yield line


def _pole_parts(node: NodeView, hw: PoleHardware) -> list[Text]:
    """Health, inputs, relays, PTZ, GPS, sensors; what a pole lacks is left out."""
    parts = [_part("health", [_verdict(node)])]
    if hw.inputs:
        parts.append(_part("inputs", [_input(printable(n, 24), i)
                                      for n, i in hw.inputs.items()]))
    if hw.outputs:
        parts.append(_part("relays", [_output(printable(n, 24), o)
                                      for n, o in hw.outputs.items()]))
    if hw.ptz is not None:
        parts.append(_part("PTZ", [_ptz(hw.ptz)]))
    if hw.gps is not None:
        parts.append(_part("GPS", [_gps(hw.gps)]))
    if hw.sensors:
        parts.append(_part("sensors", [_sensor(printable(n, 24), s)
                                       for n, s in hw.sensors.items()]))
    return parts


def pole_table(nodes: list[NodeView]) -> Table | None:
    """Each pole's hardware in a few lines: its health verdict, inputs, relays, PTZ head, GPS
    and sensors as in its last heartbeat; None when no node has any (alarm-only poles), so
    the screen spends no line on it."""
    poles = [(n, n.hardware) for n in nodes if n.hardware is not None]
    if not poles:
        return None
    t = Table(title="Pole hardware (last heartbeat)", title_justify="left", show_header=False,
              box=None, pad_edge=False, collapse_padding=True, expand=True)
    t.add_column("Node", no_wrap=True, overflow="ellipsis", max_width=20)
    t.add_column("Hardware", ratio=1)
    for n, hw in poles:
        t.add_row(Text(n.node_id, style="bold"), _Flow(_pole_parts(n, hw)))
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
    """The whole screen: header, nodes and their cameras, alerts, clips, the poles' hardware,
    tracked objects, malformed messages, operator hints. Alerts come before the rest: if the
    terminal is too short, rich cuts the bottom, and a citizen's call matters most."""
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
