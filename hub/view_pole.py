"""The console's pole hardware section: per pole, its health verdict, inputs, relays, PTZ
head, GPS and sensors from its last heartbeat, flowed onto as few lines as the width allows.
"""

from __future__ import annotations

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from hub.nodes import NodeView, PoleHardware
from hub.stats import duration
from hub.view_cells import health_verdict, printable


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
    parts = [_part("health", [health_verdict(node)])]
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
