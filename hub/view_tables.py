"""The console's tables of nodes, cameras, alerts, clips and tracked objects, each drawn
from copies HubState handed out; every string from the network goes through printable().
"""

from __future__ import annotations

from datetime import datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from contract.payloads import CameraStats
from hub.alerts import AlertRecord
from hub.clips import ClipRecord
from hub.nodes import NodeView
from hub.objects import ObjectRecord
from hub.stats import duration
from hub.view_cells import HEALTH_STYLE, age, health_verdict, hms, num, printable


def _state_cell(node: NodeView) -> RenderableType:
    style = {"online": "bold green", "offline": "bold red"}.get(node.state, "dim")
    cell = Text(node.state, style=style)
    if node.reason:
        cell.append(f"\n{printable(node.reason, 40)}", style="red")
    if node.state != "online" or (node.health == "ok" and not node.reasons):
        return cell
    if node.hardware is not None:  # the pole section below gives the reasons in full
        return cell.append(", ").append(printable(node.health, 10),
                                        style=HEALTH_STYLE.get(node.health, "bold red"))
    verdict = health_verdict(node)
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
            Text(age(n.heartbeat_at, now)),
            Text(f"{num(n.outbox_pending)}/{num(n.outbox_unacked)}",
                 style="yellow" if n.outbox_pending or n.outbox_unacked else ""),
            Text(num(n.link_connects)),
            Text(str(n.seq_missing), style="bold red" if n.seq_missing else ""),
        )
    if not nodes:
        t.caption = "no node heard yet"
    return t


def _ack_cell(a: AlertRecord) -> Text:
    if a.acked_at is None:
        return Text("pending", style="bold yellow")
    return Text(f"ACKED {hms(a.acked_at)}", style="green")


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
        raised = hms(a.raised_at) + ("" if a.clock_synced else "?")
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
                  f"{hms(c.start)}–{hms(c.end)}", status, size, _verified_cell(c))
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
            hms(o.started), Text(o.node), Text(printable(o.camera, 16)),
            Text(printable(o.label, 12)), f"#{o.track}",
            Text(printable(", ".join(o.zones_seen), 60) or "-"), _object_state(o),
        )
    if not objects:
        t.caption = "no object reported yet"
    return t
