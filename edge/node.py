"""The node's main process: builds its parts, wires them together, starts them, and runs the
main loop (acks and deliveries, the LED, health, heartbeats, the systemd watchdog). Every
job lives in its own module; this one only wires.

The main process stays light: no frame or model work ever runs here, so the path from a
GPIO edge to the broker never waits behind video.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
import uuid
from functools import partial
from pathlib import Path
from types import FrameType

from contract.commands import Check
from contract.payloads import Alert
from contract.topics import NodeTopics
from drivers.gpio import CallButton, PinSimulator, StatusLed, make_pin_factory
from drivers.platform.watchdog import ServiceNotifier
from edge import __version__, clock
from edge.call.alarm import AlarmPath
from edge.call.outbox import Outbox
from edge.config.model import NodeConfig
from edge.counters import Counters
from edge.health.certificate import CertificateWatch
from edge.health.heartbeat import Heartbeats, status
from edge.health.selftest import selftest
from edge.health.watch import HealthWatch
from edge.parts import Parts
from edge.pole.cabinet import Cabinet
from edge.record.keyfiles import announce_key
from edge.record.pins import FootagePins
from edge.shutdown import stop_in_order
from edge.uplink.backlog import Priority
from edge.uplink.client import Uplink
from edge.uplink.commands import CommandDesk
from edge.uplink.firmware import FirmwareDesk
from edge.uplink.forwarder import Outgoing
from edge.uplink.intake import CommandIntake
from edge.vision.events import VisionEvent, event_payload

log = logging.getLogger(__name__)

TICK_S = 0.1
RESTART = 75  # run()'s exit code when the node should start again (config change)


class Node:
    def __init__(self, cfg: NodeConfig, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.restart_requested = ""
        self._stop = threading.Event()
        self.boot = uuid.uuid4().hex
        self.topics = NodeTopics(cfg.node.id)
        self.counters = Counters()
        self.notifier = ServiceNotifier()
        g, t = cfg.gpio, cfg.timings

        self.outbox = Outbox(cfg.data_dir / "outbox.sqlite")
        self.pins = make_pin_factory(g.pin_factory)
        self.led = StatusLed(g.call_led.pin, active_high=g.call_led.active_high,
                             pin_factory=self.pins)
        self.uplink = Uplink(
            cfg.hub, cfg.node.id, status_topic=self.topics.status, tls=cfg.hub_tls,
            online=lambda: self._status("online"),
            offline=lambda reason: self._status("offline", reason),
            subscriptions={self.topics.ack: lambda t, p, _r: self.alarm.on_ack_message(t, p),
                           self.topics.commands: lambda t, p, r: self.intake.on_message(t, p, r)},
            on_link=self._on_link,
        )
        self.alarm = AlarmPath(cfg, self.outbox, self.uplink, self.led, self.counters)
        self.commands = CommandDesk(cfg, self.topics, self.uplink, self.counters, self,
                                    config_path=config_path)
        self.intake = CommandIntake(cfg.commands, self.commands.on_message, self.commands.busy,
                                    self.counters)
        self.firmware = self.commands.firmware = FirmwareDesk(
            cfg.data_dir / "firmware", self.commands.answer, lambda: self.uplink.connected)
        self.outgoing = Outgoing(cfg.data_dir / "backlog.sqlite", cfg.backlog, self.uplink,
                                 self.alarm.waiting, self.counters)

        self.button = CallButton(
            g.call_button.pin, pull_up=g.call_button.pull_up, debounce_s=t.debounce_ms / 1000,
            long_press_s=t.long_press_s, stuck_after_s=t.stuck_after_s, pin_factory=self.pins,
        )
        self.button.when_pressed = self.alarm.on_press
        self.button.when_long_pressed = self.alarm.on_long_press
        self.button.when_stuck = self.alarm.on_stuck
        self.button.when_released = self.alarm.on_release
        self.cabinet = Cabinet(cfg, self.pins, self.alarm.alert, t.debounce_ms / 1000)
        self.alarm.follow("switching relays or turning the PTZ head",
                          lambda _alert, source: self.cabinet.on_alert(source))
        if self.cabinet.gps is not None:
            clock.use_gps(self.cabinet.gps_offset_s)
        self.simulator = PinSimulator(self.pins, str(g.simulator_socket)) \
            if g.simulator_socket else None

        recorded = bool(cfg.cameras) and cfg.recording.enabled
        self.footage = FootagePins(cfg, self.counters) if recorded else None
        if self.footage is not None:
            announce_key(cfg.identity_dir)
            self.alarm.follow("pinning footage", self._pin_footage)
        self.vision = None
        if cfg.cameras:
            from edge.vision.supervisor import VisionSupervisor  # workers and rings only if needed

            self.vision = VisionSupervisor(cfg, self._on_vision_event, self.counters)

        self.parts = Parts(
            cfg=cfg, counters=self.counters, outbox=self.outbox, alarm=self.alarm,
            uplink=self.uplink, outgoing=self.outgoing, cabinet=self.cabinet,
            firmware=self.firmware, vision=self.vision, started=clock.monotonic(),
            certificate=CertificateWatch(cfg.hub_tls.cert if cfg.hub_tls else None, cfg.node.id))
        self.health = HealthWatch(self.parts)
        self.heartbeats = Heartbeats(self.parts, self.health)

    # --- callbacks from other threads ---

    def _pin_footage(self, alert: Alert, _source: str) -> None:
        if self.footage is not None:
            self.footage.alert(alert.id, alert.time.timestamp())

    def _on_vision_event(self, ev: VisionEvent) -> None:
        """From the vision supervisor's thread: one tracked object's news, to the hub."""
        self.outgoing.send(Priority.EVENT, self.topics.event,
                           partial(event_payload, ev, self.cfg.node.id))
        if self.footage is not None and ev.phase in ("new", "end"):
            self.footage.event(ev.camera, ev.event_id, ev.started_at.timestamp(),
                               ev.time.timestamp())

    def _on_link(self, up: bool) -> None:
        self.alarm.on_link(up)  # alerts first
        if up:
            self.outgoing.wake()

    def _status(self, state: str, reason: str = "") -> bytes:
        return status(self.parts, self.health, self.boot, state, reason)

    # --- what commands may ask (edge.uplink.commands.NodeControl) ---

    def set_heartbeat(self, interval_s: float, for_s: float | None) -> None:
        self.heartbeats.set_interval(interval_s, for_s)

    def restart(self, why: str) -> None:
        log.info("restarting: %s", why)
        self.restart_requested = why
        self._stop.set()

    def selftest(self) -> list[Check]:
        return selftest(self.parts, self.health.unhealthy)

    # --- main loop ---

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self.parts.certificate.check_identity()
        self.outgoing.start()
        self.intake.start()
        self.uplink.start()
        if self.vision is not None:
            self.vision.start()
        self.alarm.resume()
        self.alarm.show_state()
        self.notifier.ready(f"node {self.cfg.node.id} up")
        log.info("node %s ready (boot %s, version %s)", self.cfg.node.id, self.boot, __version__)
        health_period = self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else 5.0
        next_tick = next_health = next_sample = clock.monotonic()
        while not self._stop.is_set():
            try:
                if not self._handle_one(next_tick):
                    now = clock.monotonic()
                    next_tick = now + TICK_S
                    self.alarm.tick()
                    if now >= next_health:
                        next_health = now + health_period
                        self._watch()
                    if now >= next_sample:
                        next_sample = now + self.cfg.health.sample_s
                        self._sample()
                    if self.heartbeats.due(now):
                        self._beat()
            except Exception:
                # One failed step (a disk error, a bug) must not end the main loop; if it
                # keeps failing, the health check withholds the watchdog and systemd restarts us.
                self.counters.inc("main_loop_errors")
                log.exception("main loop step failed")
                self._stop.wait(TICK_S)
        self.shutdown()
        return RESTART if self.restart_requested else 0

    def _handle_one(self, next_tick: float) -> bool:
        """One ack or delivery from the uplink, if one comes before the next tick."""
        try:
            event = self.alarm.events.get(timeout=max(0.0, next_tick - clock.monotonic()))
        except queue.Empty:
            return False
        self.alarm.handle(event)
        if not self.alarm.waiting():
            self.outgoing.wake()  # events and telemetry wait for alerts
        return True

    def _watch(self) -> None:
        healthy = self.health.check()
        if healthy:
            self.notifier.ping()
        self.commands.config_change.settle(self.health.unhealthy, self.uplink.connected)
        self.firmware.poll()
        cameras = self.vision.stats().values() if self.vision is not None else ()
        self.firmware.mark_healthy({"watchdog": healthy, "uplink": self.uplink.connected,
                                    "cameras": all(c.online for c in cameras)})

    def _sample(self) -> None:
        if self.health.sample() and self.uplink.connected:  # else the next connect says it
            self.uplink.publish(self.topics.status, self._status("online"), qos=1, retain=True)

    def _beat(self) -> None:
        beat = self.heartbeats.build().to_bytes()
        self.outgoing.send(Priority.TELEMETRY, self.topics.telemetry, lambda _seq: beat)
        self.outbox.prune(time.time())
        self.commands.prune(time.time())

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        self._stop.set()

    def shutdown(self) -> None:
        self.notifier.stopping()
        steps = [
            ("the alarm path's last answers", self.alarm.drain),  # before the outbox closes
            # before the uplink: the vision workers' last `end` events go out
            *([("vision", self.vision.stop)] if self.vision is not None else []),
            ("command intake", self.intake.close), ("commands", self.commands.close),
            ("forwarder", self.outgoing.stop), ("uplink", self.uplink.stop),
            ("backlog", self.outgoing.close),
            *([("footage pins", self.footage.close)] if self.footage is not None else []),
            *([("pin simulator", self.simulator.close)] if self.simulator is not None else []),
            ("call button", self.button.close), ("cabinet", self.cabinet.close),
            ("GPS clock", lambda: clock.use_gps(None)), ("LED", self.led.close),
            ("outbox", self.outbox.close)]
        stop_in_order(steps)
        link = self.uplink.state
        log.info("node %s stopped (link: %d connects, refused by the broker: %d connects, "
                 "%d publishes, %d subscriptions)", self.cfg.node.id, link.connects,
                 link.refused_connects, link.refused_publishes, link.refused_subscriptions)
