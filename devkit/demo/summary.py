"""The demo's summary: what the script did against what the hub received, the clip of the
first call and the pole hardware's checks included (summarize), and the SUMMARY section as
plain lines or a rich table (print_summary)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from contract.payloads import AlertKind
from devkit.demo.script import Script
from hub.client import HubConsole


def summarize(script: Script, hub: HubConsole, node_exit: int | None
              ) -> tuple[list[tuple[str, str]], list[str]]:
    """The summary rows and what is missing (empty when the run is a pass)."""
    s: dict[str, Any] = hub.state.summary()
    got, want = script.alert_counts(), script.expected_alerts()
    checks = script.hardware.checks()
    rows = [
        ("presses made", str(script.presses)),
        ("tamper trips", str(script.tamper_trips)),
        ("mains failures (UPS on battery)", str(script.mains_failures)),
        ("contacts back at rest", f"{script.restorals}  (each an input_restored alert)"),
        ("call alerts raised by the node", _kind(hub, got, AlertKind.CALL)),
        ("input alerts raised by the node", _kind(hub, got, AlertKind.INPUT)),
        ("restorals raised by the node", _kind(hub, got, AlertKind.INPUT_RESTORED)),
        ("alerts delivered to the hub", f"{s['alerts_unique']}  (unique)"),
        ("acknowledged", str(s["acked"])),
        ("duplicates received", f"{s['duplicates']}  (extra copies, dropped by id)"),
        ("sequence gaps", str(s["seq_missing"])),
        ("latency raised → hub p50/p99/max", _ms(s, "latency")),
        ("ack latency hub → broker p50/p99/max", _ms(s, "ack_latency")),
        ("malformed messages", str(s["malformed"])),
        ("objects seen by the camera", _objects(s)),
        ("events received (new/update/end)", str(s["events_received"])),
        *_clip_rows(script, hub, s),
        *((c.name, c.value) for c in checks),
        ("node exit code", "-" if node_exit is None else str(node_exit)),
    ]
    missing = _alerts_missing(script, s, got, want)
    if script.cameras and not s["objects_seen"]:
        missing.append("the camera pipeline reported no objects")
    outcome = script.clip.outcome if script.clip is not None else None
    if script.clip is not None and not (outcome and outcome.ok):
        which = f"call seq {outcome.seq}" if outcome and outcome.seq else "the first call"
        missing.append(f"the clip of {which} did not arrive verified: "
                       f"{outcome.text if outcome else 'unknown'}")
    missing += [f"{c.name}: {c.text}" for c in checks if not c.ok]
    if node_exit != 0:
        missing.append(f"the node exited with {node_exit} instead of 0")
    return rows, missing


def _ms(s: dict[str, Any], name: str) -> str:
    """The summary's p50 / p99 / max of latency `name`, or '-' without data."""
    vals = [s[f"{name}_{q}_ms"] for q in ("p50", "p99", "max")]
    return "-" if None in vals else " / ".join(f"{v:.0f}" for v in vals) + " ms"


def _alerts_missing(script: Script, s: dict[str, Any], got: Counter[str],
                    want: dict[AlertKind, int]) -> list[str]:
    """What the hub's alerts lack against what the script did."""
    expected = sum(want.values())
    missing = []
    if got[AlertKind.CALL] != script.presses:
        missing.append(f"{script.presses} presses but {got[AlertKind.CALL]} unique call alerts "
                       "at the hub")
    if got[AlertKind.INPUT] != want[AlertKind.INPUT]:
        missing.append(f"{script.tamper_trips} tamper trips and {script.mains_failures} mains "
                       f"failures but {got[AlertKind.INPUT]} input alerts")
    if got[AlertKind.INPUT_RESTORED] != script.restorals:
        missing.append(f"{script.restorals} contacts back at rest but "
                       f"{got[AlertKind.INPUT_RESTORED]} restorals")
    if s["alerts_unique"] != expected:
        missing.append(f"{expected} alerts expected, {s['alerts_unique']} delivered")
    if s["acked"] != s["alerts_unique"]:
        missing.append(f"{s['alerts_unique'] - s['acked']} alert(s) never acknowledged")
    if s["seq_missing"]:
        missing.append(f"{s['seq_missing']} sequence number(s) never received")
    return missing


def _kind(hub: HubConsole, got: Counter[str], kind: AlertKind) -> str:
    """How many unique alerts of `kind` reached the hub, and from where."""
    sources = sorted({a.source for a in hub.state.alerts() if a.kind == kind})
    which = "source" if len(sources) == 1 else "sources"
    return f"{got[kind]}  (unique, {which} {', '.join(sources) or '-'})"


def _clip_rows(script: Script, hub: HubConsole, s: dict[str, Any]) -> list[tuple[str, str]]:
    """Clips asked of the pole, and how many arrived and verified; none without recording."""
    if script.clip is None:
        return []
    asked = f"around call seq {script.clip.call.seq}" if script.clip.call else "none asked"
    rec = hub.state.clips.get(script.clip.request_id) if script.clip.request_id else None
    got = "-"
    if rec is not None and rec.result is not None:
        segments = len(rec.result.manifest.get("segments", []))
        got = (f"{rec.covered_s:.1f} s, {rec.result.bytes / 1e6:.1f} MB, "
               f"{segments} segment(s), signed by the pole")
    return [
        ("clips requested by the hub", f"{s['clips_requested']}  ({asked})"),
        ("clips delivered and verified", f"{s['clips_verified']}  ({got})"),
    ]


def _objects(s: dict[str, Any]) -> str:
    by_label = ", ".join(f"{n} {label}" for label, n in sorted(s["objects_by_label"].items()))
    return f"{s['objects_seen']}  ({by_label or 'none'}; {s['loitering']} loitered)"


def print_summary(rows: list[tuple[str, str]], plain: bool, out: Console) -> None:
    if plain:
        width = max(len(k) for k, _ in rows)
        print("\nSUMMARY")
        for k, v in rows:
            print(f"  {k:<{width}}  {v}")
        return
    t = Table(title="SUMMARY", title_justify="left", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    out.print(t)
