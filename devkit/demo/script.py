"""The demo's script and its narration: the PTZ head's patrol, two citizens' calls, a tamper
trip, the cabinet heating up and a mains failure, a call made while the broker is down, two
more calls, each checked at the hub and on the call LED, and the recorded clip of the first
call, asked for by the hub and checked (Script; the clip's steps are in clip.py, the pole
hardware's in hardware.py); the lines that tell the story, printed or kept for the live view
(Narration); and the pauses between steps (Pace: FULL for people, FAST for tests).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from rich.text import Text

from contract.payloads import AlertKind
from devkit.demo.clip import ClipStep
from devkit.demo.devices import SerialDevices
from devkit.demo.hardware import HardwareStep
from devkit.demo.pole import Pole
from devkit.localbroker import LocalBroker
from hub import view
from hub.client import HubConsole
from hub.evidence import EvidenceStore
from hub.state import AlertRecord, HubEvent

T = TypeVar("T")

NARRATION_LINES = 8
STEP_TIMEOUT_S = 10.0  # one press → alert acked at the hub, link up
RETURN_TIMEOUT_S = 30.0  # the outage call, after the broker is back and both clients reconnect
FINAL_TIMEOUT_S = 15.0
CAMERA_TIMEOUT_S = 60.0  # node start → the first tracked objects at the hub (model load, spawn)
# beyond the footage wanted: a segment to close, the worker's 5 s report, a 2 s heartbeat
RECORDING_TIMEOUT_S = 20.0

LED_MEANING = {
    "steady": "LED steady: hub acknowledged, help is coming",
    "fast blink": "LED fast blink: call pending, waiting for the hub",
    "double blink": "LED double blink: no link to the hub, the call waits in the outbox",
    "off": "LED off: idle, ready for the next call",
}


@dataclass(frozen=True)
class Pace:
    between_calls_s: float
    tamper_held_s: float
    outage_s: float


FULL, FAST = Pace(4.0, 3.0, 6.0), Pace(1.0, 1.0, 3.0)


class Narration:
    """What the script is doing, one line at a time: printed at once (plain) or kept for the
    live view. In plain mode the hub console's events are printed between the lines."""

    def __init__(self, plain: bool) -> None:
        self.plain = plain
        self.t0 = time.monotonic()
        self.hub_events: queue.SimpleQueue[HubEvent] = queue.SimpleQueue()
        self._lines: deque[Text] = deque(maxlen=NARRATION_LINES)
        self._lock = threading.Lock()  # the live view reads the lines on its own thread

    def say(self, text: str, style: str = "") -> None:
        self.pump()
        stamp = f"+{time.monotonic() - self.t0:5.1f}s"
        if self.plain:
            print(f"{stamp}  {text}", flush=True)
            return
        with self._lock:
            self._lines.append(Text.assemble((stamp + "  ", "dim"), (text, style)))

    def pump(self) -> None:
        while self.plain and not self.hub_events.empty():
            print(f"           hub | {view.event_line(self.hub_events.get_nowait())}", flush=True)

    def tail(self, n: int) -> Text:
        with self._lock:
            lines = list(self._lines)[-n:]
        return Text("\n").join(lines)


class Script:
    """The scripted citizens, tamperer, weather, power cut and outage, narrated step by step."""

    def __init__(self, pole: Pole, broker: LocalBroker, hub: HubConsole, story: Narration,
                 pace: Pace, store: EvidenceStore | None = None,
                 devices: SerialDevices | None = None) -> None:
        self.pole, self.broker, self.hub, self.story, self.pace = pole, broker, hub, story, pace
        self.presses = self.tamper_trips = self.mains_failures = 0
        # contacts back at rest, each an input_restored alert: those shut at the start first
        self.restorals = sum(pole.inputs[name].alert for name in pole.shut_at_start)
        self.outage_call: AlertRecord | None = None
        self.cameras = [c.name for c in pole.cfg.cameras]
        recorded = bool(self.cameras) and pole.cfg.recording.enabled
        # the clip of the first call: asked for by the hub, checked when it arrives
        self.clip = (ClipStep(pole, hub, store, story.say) if recorded and store is not None
                     else None)
        self.hardware = HardwareStep(pole, devices or SerialDevices(), hub, self, story.say)

    def run(self) -> None:
        if self.cameras:
            self.watch_street()
        if self.clip is not None:
            self.watch_recording(self.clip)
        self.hardware.patrol()
        self.call("a citizen at the bus stop")
        self.pause(self.pace.between_calls_s)
        self.call("a second citizen")
        self.pause(self.pace.between_calls_s)
        self.tamper()
        self.pause(self.pace.between_calls_s)
        # while the hub waits for the first call's clip: the cabinet's climate and power
        self.hardware.heat()
        self.hardware.resumed()
        if self.hardware.mains_failure(self.pace.tamper_held_s):
            self.mains_failures += 1
            self.restorals += 1
        self.pause(self.pace.between_calls_s)
        self.outage()
        self.pause(self.pace.between_calls_s)
        self.call("a citizen waiting for the bus")
        self.pause(self.pace.between_calls_s)
        self.call("one more citizen")

    # --- steps ---

    def call(self, who: str) -> None:
        before = self.known()
        self.story.say(f"{who} presses the call button (GPIO {self.pole.button}, bouncing)",
                       "bold")
        self.pole.press()
        self.presses += 1
        rec = self.wait_for(lambda: self.new_acked(AlertKind.CALL, before), STEP_TIMEOUT_S)
        if rec is None:
            self.story.say(f"no acknowledged call at the hub within {STEP_TIMEOUT_S:.0f} s",
                           "bold red")
            return
        self.arrived(rec)
        if self.clip is not None:
            self.clip.plan(rec)  # the first acknowledged call's; later calls change nothing
        self.show_led(expected="steady")
        self.hardware.first_call()  # likewise: the head and the floodlight on the first call
        extra = [a.seq for a in self.hub.state.alerts()
                 if a.alert_id not in before and a.kind == AlertKind.CALL]
        if len(extra) > 1:
            self.story.say(f"this one press raised {len(extra)} call alerts (seq "
                           f"{', '.join(map(str, sorted(extra)))}): the bounce got through",
                           "bold red")

    def tamper(self) -> None:
        before = self.known()
        level = "high" if self.pole.tamper_active else "low"
        self.story.say(f"someone forces the cabinet: tamper switch trips "
                       f"(GPIO {self.pole.tamper_pin} {level})", "bold")
        self.pole.set_tamper(True)
        self.tamper_trips += 1
        rec = self.wait_for(lambda: self.new_acked(AlertKind.INPUT, before), STEP_TIMEOUT_S)
        if rec is None:
            self.story.say("no acknowledged tamper alert at the hub", "bold red")
        else:
            self.arrived(rec)
            self.hardware.turned("tamper")
        self.pause(self.pace.tamper_held_s)
        self.story.say("cabinet closed again: tamper switch released")
        before = self.known()
        self.pole.set_tamper(False)
        self.restorals += 1
        rec = self.wait_for(lambda: self.new_acked(AlertKind.INPUT_RESTORED, before),
                            STEP_TIMEOUT_S)
        if rec is None:
            self.story.say("no acknowledged tamper restoral at the hub", "bold red")
        else:
            self.arrived(rec)

    def outage(self) -> None:
        if self.clip is not None and self.clip.time_left() > 0.3:
            self.story.say("the hub waits for the clip of the first call before the link goes "
                           "down")
        self.settle_clip()
        self.story.say("broker stopped: the pole's link to the hub is down", "bold red")
        self.broker.stop()
        self.pause(0.5)  # the node and the console see the TCP connection close
        before = self.known()
        self.story.say("a citizen presses the call button during the outage", "bold")
        self.pole.press()
        self.presses += 1
        pressed = time.monotonic()
        self.show_led(expected="double blink", seconds=1.6)
        self.story.say(f"the hub hears nothing; link down for {self.pace.outage_s:.0f} s ...")
        self.pause(self.pace.outage_s)
        self.story.say(f"broker restarted on the same port {self.broker.port}: the node and "
                       "the console reconnect by themselves", "bold green")
        self.broker.start()
        restarted = time.monotonic()
        if self.wait_for(lambda: self.hub.connected, RETURN_TIMEOUT_S):
            self.story.say(f"hub console reconnected {time.monotonic() - restarted:.1f} s after "
                           "the restart")
        rec = self.wait_for(lambda: self.new_acked(AlertKind.CALL, before), RETURN_TIMEOUT_S)
        if rec is None:
            self.story.say(f"the outage call did not reach the hub within {RETURN_TIMEOUT_S:.0f}"
                           " s of the restart", "bold red")
            return
        self.outage_call = rec
        self.story.say(f"the outage call (seq {rec.seq}) reached the hub "
                       f"{time.monotonic() - pressed:.1f} s after the press, once, and was "
                       "acknowledged", "green")
        self.show_led(expected="steady")

    def watch_street(self) -> None:
        """The camera's first objects: proof the pipeline runs before the calls start."""
        self.story.say(f"camera {', '.join(self.cameras)} watches the street (sample video): "
                       "detection runs in worker processes", "bold")
        seen = self.wait_for(lambda: self.hub.state.summary()["objects_seen"] >= 2,
                             CAMERA_TIMEOUT_S)
        if not seen:
            self.story.say(f"no objects from the camera within {CAMERA_TIMEOUT_S:.0f} s",
                           "bold red")
            return
        labels = self.hub.state.summary()["objects_by_label"]
        self.story.say("hub sees tracked objects: " + ", ".join(
            f"{n} {label}" for label, n in sorted(labels.items())), "green")

    def watch_recording(self, clip: ClipStep) -> None:
        """Footage from before the first call, so its clip starts where the window does."""
        need = clip.before_s
        self.story.say(f"camera {clip.camera} is recorded all the time: its H.264 copied, not "
                       f"re-encoded, into {clip.segment_s:.0f} s segments; the first call "
                       f"waits until {need:.0f} s are on disk", "bold")

        def enough() -> float | None:
            got = clip.recorded_s()
            return got if got is not None and got >= need else None

        seen = self.wait_for(enough, need + RECORDING_TIMEOUT_S)
        if not seen:
            self.story.say(f"the hub saw no {need:.0f} s of recording from camera "
                           f"{clip.camera}; the clip will miss the start", "bold red")
            return
        self.story.say(f"the pole's heartbeat tells the hub: camera {clip.camera} has been "
                       f"recording for {seen:.0f} s", "green")

    def settle_clip(self) -> None:
        """Wait (bounded) until the clip of the first call has arrived and been checked."""
        clip = self.clip
        if clip is None:
            return
        self.wait_for(lambda: clip.finished, clip.time_left())
        clip.give_up()  # a no-op once it finished

    def finish(self) -> bool:
        """Wait (bounded) until the clip is checked and every press and contact trip is at the
        hub and acknowledged."""
        self.settle_clip()
        self.story.say("waiting for every alert to be received and acknowledged")
        done = self.wait_for(lambda: self._all_in() and not self.hub.state.pending(),
                             FINAL_TIMEOUT_S)
        if not done:
            self.story.say(f"not everything acknowledged within {FINAL_TIMEOUT_S:.0f} s",
                           "bold red")
        return bool(done)

    # --- helpers ---

    def show_led(self, expected: str, seconds: float = 0.8) -> None:
        if expected == "steady":  # the node takes the ack a moment after the hub sent it
            self.wait_for(self.pole.led_lit, 1.0)
        seen = self.pole.led(seconds)
        self.story.say(LED_MEANING[seen], "green" if seen == expected else "yellow")

    def arrived(self, rec: AlertRecord) -> None:
        ack = rec.ack_latency_ms or 0.0
        self.story.say(f"hub received {rec.kind} alert seq {rec.seq} from {rec.source} "
                       f"{rec.latency_ms:.0f} ms after it was raised; auto-acked in {ack:.0f} ms",
                       "green")

    def known(self) -> set[str]:
        return {a.alert_id for a in self.hub.state.alerts()}

    def new_acked(self, kind: AlertKind, before: set[str]) -> AlertRecord | None:
        return next((a for a in self.hub.state.alerts()
                     if a.alert_id not in before and a.kind == kind and a.acked), None)

    def _all_in(self) -> bool:
        got = self.alert_counts()
        return all(got[kind] >= n for kind, n in self.expected_alerts().items())

    def expected_alerts(self) -> dict[AlertKind, int]:
        """What the script did, as alerts by kind: a call per press, an input alert per
        contact tripped (tamper, on battery), a restoral per contact back at rest."""
        return {AlertKind.CALL: self.presses,
                AlertKind.INPUT: self.tamper_trips + self.mains_failures,
                AlertKind.INPUT_RESTORED: self.restorals}

    def alert_counts(self) -> Counter[str]:
        """Unique alerts at the hub, by kind."""
        return Counter(a.kind for a in self.hub.state.alerts())

    def wait_for(self, cond: Callable[[], T], timeout_s: float) -> T | None:
        deadline = time.monotonic() + timeout_s
        while True:
            value = cond()
            if value or time.monotonic() > deadline:
                return value or None
            self.pause(0.05)

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            self.story.pump()
            self.pole.check_alive()
            if self.clip is not None:
                self.clip.step()
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))
