"""The console's screen and log lines: whatever arrives over the network is drawn as text,
never as console markup or terminal escapes; a pole's hardware and health fit a few lines."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from contract.ids import uuid7
from contract.payloads import (
    Alert,
    AlertKind,
    CameraStats,
    Event,
    EventPhase,
    Heartbeat,
    LinkStats,
    Location,
    OutboxStats,
    Status,
)
from contract.pole import GpsStats, InputStats, OutputStats, PtzStats, SensorStats
from contract.topics import NodeTopics
from hub import view
from hub.state import HubEvent, HubState

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
    assert "no object reported yet" in text
    assert "Cameras" not in text  # no line spent on cameras nobody reported
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


def camera(online: bool = True, *, restarts: int = 0, reason: str = "") -> CameraStats:
    return CameraStats(
        online=online, reason=reason, capture_fps=15.0, processed_fps=4.8, skipped_frames=1234,
        inferences_per_frame=1.3, inference_ms=38.2, events_per_min=4.0,
        restarts={"camera": restarts, "detection": 0},
    )


def heartbeat(cameras: dict[str, CameraStats], **hardware: object) -> bytes:
    return Heartbeat.model_validate(dict(
        node="pole-1", time=T0, uptime_s=60, outbox=OutboxStats(pending=0, unacked=0),
        link=LinkStats(connects=1, disconnects=0, connected_since=T0), inputs={}, counters={},
        cameras=cameras,
    ) | hardware).to_bytes()


def event(event_id: str, phase: str, seconds: float, track: int, **fields: object) -> bytes:
    body: dict[str, object] = {
        "id": event_id, "seq": 1, "node": "pole-1", "camera": "street", "phase": EventPhase(phase),
        "track": track, "label": "person", "score": 0.8, "box": (0.1, 0.1, 0.2, 0.4),
        "zones": [], "entered": [], "left": [], "dwell_s": {}, "loitering": [],
        "stationary": False, "started": T0, "time": T0 + timedelta(seconds=seconds),
    }
    return Event.model_validate(body | fields).to_bytes()


def busy_pole(alerts: int = 15, objects: int = 7) -> HubState:
    """One pole with two cameras (one down), a full alerts table and more objects than rows."""
    s = HubState()
    s.receive(POLE.status, Status(node="pole-1", state="online", time=T0, boot="b",
                                  version="0.4.0", site="Main St 1").to_bytes(), T0)
    s.receive(POLE.telemetry, heartbeat(
        {"street": camera(), "gate": camera(False, restarts=2, reason="no frames")}), T0)
    for seq in range(1, alerts + 1):
        s.receive(POLE.alert, Alert(
            id=uuid7(), seq=seq, node="pole-1", kind=AlertKind.CALL, source="call_button",
            time=T0, clock_synced=True, site="Main St 1", location=Location(lat=0, lon=0),
        ).to_bytes(), T0)
    ids = [uuid7() for _ in range(objects)]
    for track, eid in enumerate(ids, start=10):
        s.receive(POLE.event, event(eid, "new", track, track), T0)
    s.receive(POLE.event, event(ids[-1], "update", 80, 10 + objects - 1, zones=["school_gate"],
                                entered=["school_gate"], loitering=["school_gate"]), T0)
    s.receive(POLE.event, event(ids[-2], "update", 81, 10 + objects - 2, zones=["road"],
                                entered=["road"], stationary=True), T0)
    s.receive(POLE.event, event(ids[-3], "end", 42, 10 + objects - 3), T0)
    return s


def screen(state: HubState, width: int = 120) -> list[str]:
    console = Console(record=True, width=width, height=40, file=io.StringIO())
    console.print(view.render(state, state.alerts(view.ALERT_ROWS), now=T0 + timedelta(minutes=2),
                              header="hub", notice="acking 1 pending alert(s)"))
    return console.export_text().splitlines()


def test_the_screen_shows_cameras_and_the_newest_objects_below_the_alerts() -> None:
    lines = screen(busy_pole())
    text = "\n".join(lines)
    cams = {line.split()[1]: line for line in lines if line.startswith("pole-1 ")
            and line.split()[1] in ("street", "gate")}
    assert "online" in cams["street"] and "15.0/4.8 fps" in cams["street"]
    assert "38 ms ×1.3" in cams["street"] and "4.0 ev/min" in cams["street"]
    assert "restarts 0" in cams["street"] and "skipped 1234" in cams["street"]
    assert "OFFLINE no frames" in cams["gate"] and "restarts 2 (camera 2)" in cams["gate"]

    rows = [line for line in lines if " #" in line and "person" in line]
    assert [row.split("#")[1].split()[0] for row in rows] == ["16", "15", "14", "13", "12"]
    assert "school_gate" in rows[0] and "LOITERING school_gate" in rows[0]
    assert "road" in rows[1] and "stationary" in rows[1] and "open 1m21s" in rows[1]
    assert "ended 42s" in rows[2]

    titles = [text.index(t) for t in ("Nodes", "Cameras", "Alerts", "Objects seen", "malformed")]
    assert titles == sorted(titles)  # alerts before objects: a short terminal cuts the bottom


def test_a_busy_pole_fits_a_120_by_40_terminal() -> None:
    lines = screen(busy_pole())
    assert len(lines) <= 40
    assert all(len(line.rstrip()) <= 120 for line in lines)
    assert sum(line.rstrip().endswith("pending") for line in lines) == view.ALERT_ROWS
    assert lines[-1] == "acking 1 pending alert(s)"  # the operator's reply is still on screen


def test_hostile_strings_in_vision_messages_are_shown_literally() -> None:
    s = HubState()
    s.receive(POLE.telemetry, heartbeat({HOSTILE: camera(False, reason=HOSTILE)}), T0)
    s.receive(POLE.event, event(uuid7(), "new", 0, 1, camera=HOSTILE, label=HOSTILE,
                                zones=[HOSTILE], loitering=[HOSTILE]), T0)
    text = draw(s)
    assert "\x1b" not in text and "\x07" not in text
    assert text.count("[/oops]") >= 3  # camera row, objects row, the notice


def test_object_lines_are_one_printable_line() -> None:
    seen: list[HubEvent] = []
    s = HubState(on_event=seen.append)
    s.receive(POLE.event, event(uuid7(), "new", 0, 7, camera="a\nb\x1b[31m", zones=["x" * 900]),
              T0)
    (line,) = [view.event_line(ev) for ev in seen]
    assert line.startswith("2025-03-01T12:00:00.000Z OBJECT_NEW   pole-1 a?b?[31m: person #7")
    assert "\n" not in line and "\x1b" not in line and len(line) < 500


def pole_hardware(*, mains: bool = True, call: bool = False) -> dict[str, object]:
    """The demo pole's devices: as on a quiet afternoon, or with the mains failed, or just
    after a call (floodlight on, head at the call button's preset)."""
    return dict(
        inputs={"door": InputStats(active=False, changes=1), "tamper": InputStats(active=False,
                changes=0), "ups_on_battery": InputStats(active=not mains, changes=1)},
        outputs={"floodlight": OutputStats(on=call, activations=1, off_in_s=5.2 if call else None),
                 "cabinet_fan": OutputStats(on=False, activations=0, temperature_c=21.5)},
        ptz=(PtzStats(mode="alert", preset=10, alert_preset=10, resume_in_s=4.1, frames_sent=9,
                      errors=0) if call
             else PtzStats(mode="patrol", preset=2, tours_completed=3, frames_sent=9, errors=0)),
        gps=GpsStats(state="fix", lat=50.2547, lon=28.6587, quality=1, satellites=9,
                     clock_offset_s=-0.004, sentences=60, bad_checksum=0, partial=0,
                     garbage_bytes=0, disconnects=0),
        sensors={"cabinet_temperature": SensorStats(value=21.5, unit="°C", ok=True),
                 "cabinet_humidity": SensorStats(value=48.0, unit="%RH", ok=True),
                 "ups_battery": SensorStats(value=86 if not mains else 87, unit="%", ok=True),
                 "ups_input_voltage": SensorStats(value=0.0 if not mains else 229.8, unit="V",
                                                  ok=True)},
    )


def status(**fields: object) -> bytes:
    return Status.model_validate(dict(node="pole-1", state="online", time=T0, boot="b",
                                      version="0.4.0", site="Main St 1") | fields).to_bytes()


def test_the_pole_section_shows_health_inputs_relays_ptz_gps_and_sensors() -> None:
    s = HubState()
    s.receive(POLE.status, status(), T0)
    s.receive(POLE.telemetry, heartbeat({}, **pole_hardware()), T0)
    text = "\n".join(screen(s))
    assert "Pole hardware" in text
    assert "health ok" in text
    assert "inputs door ok, tamper ok, ups_on_battery ok" in text
    assert "relays floodlight off, cabinet_fan off 21.5 °C" in text
    assert "PTZ patrol preset 2, 3 tours" in text
    assert "GPS fix 9 sats, clock -0.004 s" in text
    assert ("sensors cabinet_temperature 21.5 °C, cabinet_humidity 48 %RH, ups_battery 87 %, "
            "ups_input_voltage 229.8 V") in text


def test_a_call_and_a_mains_failure_show_in_the_pole_section_and_the_nodes_state() -> None:
    s = HubState()
    s.receive(POLE.status, status(health="degraded", reasons=[
        "on battery (ups_on_battery)", "ups_input_voltage below 190 V"]), T0)
    s.receive(POLE.telemetry, heartbeat({}, **pole_hardware(mains=False, call=True)), T0)
    lines = screen(s)
    text = "\n".join(lines)
    (row,) = [line for line in lines if line.startswith("pole-1  online")]
    assert "online, degraded" in row  # the reasons in full are in the pole section
    assert "health degraded: on battery (ups_on_battery); ups_input_voltage below 190 V" in text
    assert "ups_on_battery ACTIVE" in text
    assert "floodlight ON 5s left" in text
    assert "PTZ ALERT preset 10, resumes in 4s" in text
    assert "ups_input_voltage 0 V" in text


def test_a_degraded_pole_without_hardware_gives_its_reasons_in_the_nodes_table() -> None:
    s = HubState()
    s.receive(POLE.status, status(health="failed", reasons=["data disk full, under 2 % free"]),
              T0)
    lines = screen(s)
    assert "Pole hardware" not in "\n".join(lines)  # no line spent on hardware it lacks
    (at,) = [i for i, line in enumerate(lines) if line.startswith("pole-1  online")]
    assert lines[at + 1].split()[:4] == ["failed:", "data", "disk", "full,"]


def test_a_failing_device_says_so_in_the_pole_section() -> None:
    s = HubState()
    s.receive(POLE.status, status(), T0)
    s.receive(POLE.telemetry, heartbeat(
        {}, ptz=PtzStats(mode="patrol", preset=None, frames_sent=0, errors=4,
                         last_error="port /dev/ttyUSB0 missing"),
        gps=GpsStats(state="no_fix", quality=0, sentences=3, bad_checksum=0, partial=0,
                     garbage_bytes=0, disconnects=0),
        sensors={"ups_battery": SensorStats(value=None, unit="%", ok=False,
                                            errors={"no_response": 3}, error="no response")},
        inputs={"door": InputStats(active=True, changes=14, flapping=True, suppressed=8)},
        outputs={"cabinet_fan": OutputStats(on=True, activations=1, reason="no reading")},
    ), T0)
    text = "\n".join(screen(s))
    assert "PTZ patrol preset -, 4 errors: port /dev/ttyUSB0 missing" in text
    assert "GPS NO FIX" in text
    assert "ups_battery (no response)" in text
    assert "door FLAPPING (8 held back)" in text
    assert "cabinet_fan ON fail-safe: no reading" in text


def test_a_busy_pole_with_its_hardware_fits_a_120_by_40_terminal() -> None:
    s = busy_pole()
    s.receive(POLE.telemetry, heartbeat(
        {"street": camera(), "gate": camera(False, restarts=2, reason="no frames")},
        **pole_hardware(call=True)), T0)
    lines = screen(s)
    assert len(lines) <= 40
    assert all(len(line.rstrip()) <= 120 for line in lines)
    assert sum(line.rstrip().endswith("pending") for line in lines) == view.ALERT_ROWS
    assert lines[-1] == "acking 1 pending alert(s)"


def test_hostile_strings_in_pole_hardware_are_shown_literally() -> None:
    s = HubState()
    s.receive(POLE.status, status(health="degraded", reasons=[HOSTILE]), T0)
    s.receive(POLE.telemetry, heartbeat(
        {}, inputs={HOSTILE: InputStats(active=True, changes=1)},
        sensors={HOSTILE: SensorStats(value=1.0, unit="\x1b[2J", ok=False, error=HOSTILE)},
    ), T0)
    text = draw(s)
    assert "\x1b" not in text and "\x07" not in text
    assert text.count("[/oops]") >= 3  # health, input, sensor (and the notice)


def test_a_health_change_is_one_printable_line() -> None:
    seen: list[HubEvent] = []
    s = HubState(on_event=seen.append)
    s.receive(POLE.status, status(), T0)
    s.receive(POLE.status, status(health="degraded", reasons=["on battery (ups)", HOSTILE]), T0)
    line = view.event_line(seen[-1])
    assert line.startswith("2025-03-01T12:00:00.000Z HEALTH       pole-1 degraded: on battery "
                           "(ups); [bold red]boom[/]")
    assert "\n" not in line and "\x1b" not in line
