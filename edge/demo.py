"""`edge-demo`: the whole alarm path on one machine, unattended, in about a minute.

A real Mosquitto (LocalBroker), a real node process on simulated pins, and the hub console
in this process with auto-ack. A scripted citizen presses the call button through the pin
simulator, the cabinet's tamper switch trips once, and the broker is stopped and restarted
so a call made during the outage is seen reaching the hub once the link returns. Ends with
a summary of what the hub received; exit 0 only if every press reached the hub once, was
acknowledged, no sequence number is missing and the node stopped cleanly.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import yaml
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from drivers.gpio import PinSimulatorClient
from edge.config import ConfigError, NodeConfig, load_config
from edge.contract.payloads import AlertKind
from edge.hub import view
from edge.hub.client import HubConsole
from edge.hub.state import AlertRecord, HubEvent
from edge.localbroker import LocalBroker

T = TypeVar("T")

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "docs" / "config" / "demo-node.yaml"
OPERATOR = "demo-dispatch"
SOCKET_MAX = 100  # unix socket paths are limited to ~108 bytes; the simulator adds ".new"
NARRATION_LINES = 8
START_TIMEOUT_S = 20.0
STEP_TIMEOUT_S = 10.0  # one press → alert acked at the hub, link up
RETURN_TIMEOUT_S = 30.0  # the outage call, after the broker is back (console backoff ≤ 8 s)
FINAL_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 15.0  # SIGTERM → exit; the node needs a few seconds at most

LED_MEANING = {
    "steady": "LED steady: hub acknowledged, help is coming",
    "fast blink": "LED fast blink: call pending, waiting for the hub",
    "double blink": "LED double blink: no link to the hub, the call waits in the outbox",
    "off": "LED off: idle, ready for the next call",
}


class DemoError(Exception):
    """The demo cannot go on; the message says what happened and where to look."""


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


class Pole:
    """The demo node as a real process, and a hand on its wiring through the pin simulator."""

    def __init__(self, cfg: NodeConfig, config_path: Path, log_path: Path) -> None:
        self.cfg, self.config_path, self.log_path = cfg, config_path, log_path
        self.button, self.led_pin = cfg.gpio.call_button.pin, cfg.gpio.call_led.pin
        tamper = next((i for i in cfg.gpio.inputs if i.name == "tamper"), None)
        if tamper is None:
            raise DemoError(f"{config_path}: the demo needs an input named 'tamper'")
        self.tamper_pin, self.tamper_active = tamper.pin, 0 if tamper.pull_up else 1
        self.proc: subprocess.Popen[bytes] | None = None
        self.pins: PinSimulatorClient | None = None
        self.exit_code: int | None = None

    def start(self) -> None:
        socket = self.cfg.gpio.simulator_socket
        assert socket is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge.cli", "run", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"},  # SIGABRT dumps its stacks
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket.exists():
            self.check_alive()
            if time.monotonic() > deadline:
                raise DemoError(f"the node opened no pin simulator socket within "
                                f"{START_TIMEOUT_S:.0f} s; see {self.log_path}")
            time.sleep(0.05)
        self.pins = PinSimulatorClient(str(socket))

    def check_alive(self) -> None:
        if self.proc is not None and self.exit_code is None and self.proc.poll() is not None:
            raise DemoError(f"the node exited by itself with code {self.proc.returncode}; "
                            f"see {self.log_path}")

    def _hand(self) -> PinSimulatorClient:
        if self.pins is None:
            raise DemoError("the node is not running")
        return self.pins

    def press(self) -> None:
        """A citizen's press: held a fifth of a second, the contact bouncing on both edges."""
        self._hand().press(self.button, hold_s=0.2, bounce=True)

    def set_tamper(self, tripped: bool) -> None:
        level = self.tamper_active if tripped else 1 - self.tamper_active
        self._hand().drive(self.tamper_pin, level)

    def led_lit(self) -> bool:
        return self._hand().read(self.led_pin) == 1

    def led(self, seconds: float, step_s: float = 0.04) -> str:
        """What the call LED shows over `seconds`: steady, off, fast blink or double blink."""
        samples: list[tuple[float, int]] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            samples.append((time.monotonic(), self._hand().read(self.led_pin)))
            time.sleep(step_s)
        levels = [level for _, level in samples]
        if all(levels):
            return "steady"
        if not any(levels):
            return "off"
        longest_dark, dark_from = 0.0, None
        for at, level in [*samples, (time.monotonic(), 1)]:
            if not level and dark_from is None:
                dark_from = at
            elif level and dark_from is not None:
                longest_dark, dark_from = max(longest_dark, at - dark_from), None
        # fast blink is dark 0.25 s at a time; the no-link pattern is dark 0.9 s per cycle
        return "double blink" if longest_dark >= 0.6 else "fast blink"

    def stop(self) -> int | None:
        """SIGTERM, as systemd would: the node says offline and exits. Safe to call again."""
        if self.pins is not None:
            self.pins.close()
            self.pins = None
        if self.proc is None or self.exit_code is not None:
            return self.exit_code
        self.proc.terminate()
        try:
            self.exit_code = self.proc.wait(timeout=STOP_TIMEOUT_S)
            return self.exit_code
        except subprocess.TimeoutExpired:
            pass
        # hung: SIGABRT makes faulthandler write every thread's stack to the node log
        self.proc.send_signal(signal.SIGABRT)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.exit_code = self.proc.wait()
        return self.exit_code


class Script:
    """The scripted citizens, tamperer and outage, narrated step by step."""

    def __init__(self, pole: Pole, broker: LocalBroker, hub: HubConsole, story: Narration,
                 pace: Pace) -> None:
        self.pole, self.broker, self.hub, self.story, self.pace = pole, broker, hub, story, pace
        self.presses = self.tamper_trips = 0

    def run(self) -> None:
        self.call("a citizen at the bus stop")
        self.pause(self.pace.between_calls_s)
        self.call("a second citizen")
        self.pause(self.pace.between_calls_s)
        self.tamper()
        self.pause(self.pace.between_calls_s)
        self.outage()
        self.pause(self.pace.between_calls_s)
        self.call("a citizen waiting for the bus")
        self.pause(self.pace.between_calls_s)
        self.call("one more citizen")

    # --- steps ---

    def call(self, who: str) -> None:
        before = self._known()
        self.story.say(f"{who} presses the call button (GPIO {self.pole.button}, bouncing)",
                       "bold")
        self.pole.press()
        self.presses += 1
        rec = self.wait_for(lambda: self._new_acked(AlertKind.CALL, before), STEP_TIMEOUT_S)
        if rec is None:
            self.story.say(f"no acknowledged call at the hub within {STEP_TIMEOUT_S:.0f} s",
                           "bold red")
            return
        self._arrived(rec)
        self.show_led(expected="steady")
        extra = [a.seq for a in self.hub.state.alerts()
                 if a.alert_id not in before and a.kind == AlertKind.CALL]
        if len(extra) > 1:
            self.story.say(f"this one press raised {len(extra)} call alerts (seq "
                           f"{', '.join(map(str, sorted(extra)))}): the bounce got through",
                           "bold red")

    def tamper(self) -> None:
        before = self._known()
        level = "high" if self.pole.tamper_active else "low"
        self.story.say(f"someone forces the cabinet: tamper switch trips "
                       f"(GPIO {self.pole.tamper_pin} {level})", "bold")
        self.pole.set_tamper(True)
        self.tamper_trips += 1
        rec = self.wait_for(lambda: self._new_acked(AlertKind.INPUT, before), STEP_TIMEOUT_S)
        if rec is None:
            self.story.say("no acknowledged tamper alert at the hub", "bold red")
        else:
            self._arrived(rec)
        self.pause(self.pace.tamper_held_s)
        self.story.say("cabinet closed again: tamper switch released")
        self.pole.set_tamper(False)

    def outage(self) -> None:
        self.story.say("broker stopped: the pole's link to the hub is down", "bold red")
        self.broker.stop()
        self.pause(0.5)  # the node and the console see the TCP connection close
        before = self._known()
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
                           "the restart (its reconnect backoff grows to 8 s)")
        rec = self.wait_for(lambda: self._new_acked(AlertKind.CALL, before), RETURN_TIMEOUT_S)
        if rec is None:
            self.story.say(f"the outage call did not reach the hub within {RETURN_TIMEOUT_S:.0f}"
                           " s of the restart", "bold red")
            return
        self.story.say(f"the outage call (seq {rec.seq}) reached the hub "
                       f"{time.monotonic() - pressed:.1f} s after the press, once, and was "
                       "acknowledged", "green")
        self.show_led(expected="steady")

    def finish(self) -> bool:
        """Wait (bounded) until every press and trip is at the hub and acknowledged."""
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

    def _arrived(self, rec: AlertRecord) -> None:
        ack = rec.ack_latency_ms or 0.0
        self.story.say(f"hub received {rec.kind} alert seq {rec.seq} from {rec.source} "
                       f"{rec.latency_ms:.0f} ms after it was raised; auto-acked in {ack:.0f} ms",
                       "green")

    def _known(self) -> set[str]:
        return {a.alert_id for a in self.hub.state.alerts()}

    def _new_acked(self, kind: AlertKind, before: set[str]) -> AlertRecord | None:
        return next((a for a in self.hub.state.alerts()
                     if a.alert_id not in before and a.kind == kind and a.acked), None)

    def _all_in(self) -> bool:
        calls, inputs = self.calls_and_inputs()
        return calls >= self.presses and inputs >= self.tamper_trips

    def calls_and_inputs(self) -> tuple[int, int]:
        kinds = [a.kind for a in self.hub.state.alerts()]
        return kinds.count(AlertKind.CALL), kinds.count(AlertKind.INPUT)

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
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(0.1, left))


def summarize(script: Script, hub: HubConsole, node_exit: int | None
              ) -> tuple[list[tuple[str, str]], list[str]]:
    """The summary rows and what is missing (empty when the run is a pass)."""
    s: dict[str, Any] = hub.state.summary()
    calls, inputs = script.calls_and_inputs()
    expected = script.presses + script.tamper_trips

    def ms(name: str) -> str:
        vals = [s[f"{name}_{q}_ms"] for q in ("p50", "p99", "max")]
        return "-" if None in vals else " / ".join(f"{v:.0f}" for v in vals) + " ms"

    rows = [
        ("presses made", str(script.presses)),
        ("tamper trips", str(script.tamper_trips)),
        ("call alerts raised by the node", f"{calls}  (unique, source call_button)"),
        ("input alerts raised by the node", f"{inputs}  (unique, source tamper)"),
        ("alerts delivered to the hub", f"{s['alerts_unique']}  (unique)"),
        ("acknowledged", str(s["acked"])),
        ("duplicates received", f"{s['duplicates']}  (extra copies, dropped by id)"),
        ("sequence gaps", str(s["seq_missing"])),
        ("latency p50/p99/max", f"{ms('latency')}  (raised on the pole → at the hub)"),
        ("ack latency p50/p99/max", f"{ms('ack_latency')}  (at the hub → ack with the broker)"),
        ("malformed messages", str(s["malformed"])),
        ("node exit code", "-" if node_exit is None else str(node_exit)),
    ]
    missing = []
    if calls != script.presses:
        missing.append(f"{script.presses} presses but {calls} unique call alerts at the hub")
    if inputs != script.tamper_trips:
        missing.append(f"{script.tamper_trips} tamper trips but {inputs} input alerts")
    if s["alerts_unique"] != expected:
        missing.append(f"{expected} alerts expected, {s['alerts_unique']} delivered")
    if s["acked"] != s["alerts_unique"]:
        missing.append(f"{s['alerts_unique'] - s['acked']} alert(s) never acknowledged")
    if s["seq_missing"]:
        missing.append(f"{s['seq_missing']} sequence number(s) never received")
    if node_exit != 0:
        missing.append(f"the node exited with {node_exit} instead of 0")
    return rows, missing


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


def write_config(workdir: Path, broker: LocalBroker) -> Path:
    """The demo node's config, pointed at this run's broker, socket and data directory."""
    try:
        data = yaml.safe_load(DEMO_CONFIG.read_text())
    except OSError as e:
        raise DemoError(f"cannot read the demo node's config {DEMO_CONFIG}: {e}") from e
    data["hub"].update(host=broker.host, port=broker.port)
    data["gpio"]["simulator_socket"] = str(workdir / "pins.sock")
    data["data_dir"] = str(workdir / "data")
    path = workdir / "node.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def scratch_dir() -> Path:
    d = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    if len(os.fsencode(d / "pins.sock.new")) > SOCKET_MAX:  # a long TMPDIR
        shutil.rmtree(d)
        d = Path(tempfile.mkdtemp(prefix="edge-demo-", dir="/tmp"))
    return d


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """SIGTERM ends the demo like Ctrl-C does, so the cleanup still runs."""
    def interrupt(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run(workdir: Path, pace: Pace, plain: bool, out: Console) -> int:
    story = Narration(plain)
    broker = LocalBroker(workdir / "broker")
    with contextlib.ExitStack() as stack:
        story.say(f"Safe City demo: broker, one pole, the hub console (temp dir {workdir})")
        stack.callback(broker.stop)
        broker.start()
        story.say(f"Mosquitto listening on {broker.host}:{broker.port}")
        config = write_config(workdir, broker)
        pole = Pole(load_config(config), config, workdir / "node.log")
        stack.callback(pole.stop)
        pole.start()
        story.say(f"node {pole.cfg.node.id} started (pid {pole.proc.pid if pole.proc else '?'})"
                  f" on simulated pins, log {pole.log_path}")
        hub = HubConsole(broker.host, broker.port, auto_ack=True, operator=OPERATOR,
                         on_event=story.hub_events.put if plain else None)
        stack.callback(hub.stop)
        hub.start()
        if not plain:
            stack.enter_context(Live(get_renderable=screen(hub, story, out), console=out,
                                     refresh_per_second=4))
        script = Script(pole, broker, hub, story, pace)
        online = script.wait_for(lambda: any(n.node_id == pole.cfg.node.id and
                                             n.state == "online" for n in hub.state.nodes()),
                                 START_TIMEOUT_S)
        if not online:
            raise DemoError(f"the node did not come online at the hub within "
                            f"{START_TIMEOUT_S:.0f} s; see {pole.log_path}")
        story.say(f"hub console ({OPERATOR}, auto-ack) sees {pole.cfg.node.id} online")
        script.run()
        script.finish()
        story.say("stopping the node with SIGTERM, as systemd would")
        node_exit = pole.stop()
        script.wait_for(lambda: all(n.state == "offline" for n in hub.state.nodes()), 3.0)
        state = {n.node_id: f"{n.state} ({n.reason})" for n in hub.state.nodes()}
        story.say(f"node exited with code {node_exit}; the hub sees it "
                  f"{state.get(pole.cfg.node.id, 'unknown')}")
        story.pump()
    rows, missing = summarize(script, hub, node_exit)
    print_summary(rows, plain, out)
    for line in missing:
        print(f"FAILED: {line}")
    if not missing:
        print("OK: every press reached the hub exactly once and was acknowledged")
    return 1 if missing else 0


def screen(hub: HubConsole, story: Narration, out: Console) -> Callable[[], RenderableType]:
    """The hub console's live view, with as much narration under it as the terminal holds."""
    def draw() -> RenderableType:
        hub_view = hub.render()
        used = len(out.render_lines(hub_view, out.options, pad=False))
        room = max(3, min(NARRATION_LINES, out.height - used - 2))
        return Group(hub_view, Rule("demo", style="dim"), story.tail(room))

    return draw


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edge-demo", description=__doc__.splitlines()[0] if
                                __doc__ else None)
    p.add_argument("--fast", action="store_true", help="shorter pauses (for tests)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (config, logs, data)")
    p.add_argument("--plain", action="store_true",
                   help="plain narration lines, no live view (default when stdout is no terminal)")
    args = p.parse_args(argv)
    plain = args.plain or not sys.stdout.isatty()
    # the console's own warnings (link lost, retrying) are already shown as events
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    workdir = scratch_dir()
    node_log = workdir / "node.log"
    code = 1
    try:
        with sigterm_stops():
            code = run(workdir, FAST if args.fast else FULL, plain, Console())
    except KeyboardInterrupt:
        print("\nedge-demo: stopped early; node, console and broker are stopped")
        code = 130
    except (DemoError, ConfigError, RuntimeError, OSError) as e:
        print(f"edge-demo: {e}", file=sys.stderr)
    finally:
        if args.keep or code != 0:
            print(f"node log: {node_log}\ntemp dir kept: {workdir}")
        else:
            if node_log.exists():  # the scratch goes, the node's log stays readable
                fd, kept = tempfile.mkstemp(prefix="edge-demo-node-", suffix=".log")
                os.close(fd)
                shutil.move(node_log, kept)
                node_log = Path(kept)
            shutil.rmtree(workdir, ignore_errors=True)
            print(f"node log: {node_log}")
    return code


if __name__ == "__main__":
    sys.exit(main())
