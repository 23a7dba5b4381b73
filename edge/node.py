"""The node's main process: composes the drivers, the alarm path and the uplink, and runs
the main loop (acks and deliveries, LED, heartbeat, the systemd watchdog).

The main process stays light: no frame or model work ever runs here, so the path from a
GPIO edge to the broker never waits behind video.
"""

from __future__ import annotations

import faulthandler
import logging
import queue
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from contract.commands import Check, Response
from contract.payloads import (
    AlertKind,
    CertificateStats,
    Event,
    EventPhase,
    Heartbeat,
    LinkStats,
    OutboxStats,
    Status,
)
from contract.pole import Health
from contract.topics import NodeTopics
from drivers.gpio import CallButton, PinSimulator, StatusLed, make_pin_factory
from drivers.platform import Platform, PlatformReader
from drivers.platform.watchdog import ServiceNotifier
from edge import __version__, clock
from edge.call.alarm import AlarmPath
from edge.call.outbox import Outbox, OutboxError
from edge.config.model import NodeConfig
from edge.config.trial import sha256_of
from edge.counters import Counters
from edge.health.assess import assess, platform_stats
from edge.health.certificate import WARN_DAYS as CERT_WARN_DAYS
from edge.health.certificate import CertificateError, CertInfo, read_certificate
from edge.pole.cabinet import Cabinet
from edge.record.pins import FootagePins
from edge.uplink.backlog import Backlog, BacklogError, Forwarder, Priority
from edge.uplink.client import ReplyTo, Uplink
from edge.uplink.commands import CommandDesk
from edge.uplink.firmware import FirmwareDesk
from edge.vision.events import VisionEvent

log = logging.getLogger(__name__)

TICK_S = 0.1
LOOP_STALL_S = 5.0  # the uplink's network loop silent this long counts as unhealthy
SHUTDOWN_LIMIT_S = 10.0  # a stop taking longer dumps the threads' stacks and exits
CAMERA_START_S = 30.0  # a camera without frames this soon after start is still opening


RESTART = 75  # run()'s exit code when the node should start again (config change)


class Node:
    def __init__(self, cfg: NodeConfig, config_path: Path | None = None) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.restart_requested = ""
        self._beat_s = cfg.timings.heartbeat_s
        self._beat_until: float | None = None  # a temporary interval ends then (monotonic)
        self._cert_problem = ""
        self._cert_warned_at = -1e9
        self._live_lock = threading.Lock()
        self._live_seq: dict[Priority, int] = {}
        self.topics = NodeTopics(cfg.node.id)
        self.counters = Counters()
        self.boot = uuid.uuid4().hex
        self.started = clock.monotonic()
        self.notifier = ServiceNotifier()
        self._stop = threading.Event()
        self.unhealthy_reason = ""
        self._health_period = 5.0  # half the watchdog period when systemd sets one
        self._next_tick = self._next_health = self._next_beat = self._next_sample = 0.0
        self.platform_reader = PlatformReader(cfg.data_dir)
        self.platform: Platform | None = None
        self.health = Health(state="ok")

        self.outbox = Outbox(cfg.data_dir / "outbox.sqlite")
        g, t = cfg.gpio, cfg.timings
        self.pins = make_pin_factory(g.pin_factory)
        self.led = StatusLed(g.call_led.pin, active_high=g.call_led.active_high,
                             pin_factory=self.pins)
        self.uplink = Uplink(
            cfg.hub, cfg.node.id, status_topic=self.topics.status, tls=cfg.hub_tls,
            online=lambda: self._status("online"),
            offline=lambda reason: self._status("offline", reason),
            subscriptions={self.topics.ack: self._on_ack,
                           self.topics.commands: self._on_command},
            on_link=self._on_link,
        )
        self.commands = CommandDesk(cfg, self.topics, self.uplink, self.counters, self,
                                    config_path=config_path)
        self.firmware = self.commands.firmware = FirmwareDesk(
            cfg.data_dir / "firmware", self.commands.answer, lambda: self.uplink.connected)
        recorded = bool(cfg.cameras) and cfg.recording.enabled
        self.footage = FootagePins(cfg, self.counters) if recorded else None
        if recorded:
            self._make_evidence_key()
        self.alarm = AlarmPath(cfg, self.outbox, self.uplink, self.led, self.counters)
        self.backlog: Backlog | None = None
        try:
            self.backlog = Backlog(cfg.data_dir / "backlog.sqlite",
                                   max_messages=cfg.backlog.max_messages,
                                   telemetry_keep_s=cfg.backlog.telemetry_keep_s)
        except BacklogError as e:  # events and telemetry then go out live, not stored
            log.error("%s: events and telemetry are not stored across outages", e)
        self.forwarder = (Forwarder(self.backlog, self.uplink, self.alarm.waiting, self.counters)
                          if self.backlog is not None else None)
        self.button = CallButton(
            g.call_button.pin, pull_up=g.call_button.pull_up, debounce_s=t.debounce_ms / 1000,
            long_press_s=t.long_press_s, stuck_after_s=t.stuck_after_s, pin_factory=self.pins,
        )
        self.button.when_pressed = self._on_press
        self.button.when_long_pressed = lambda: self.counters.inc("long_presses")
        self.button.when_stuck = self._on_stuck
        self.button.when_released = self._on_release
        self.cabinet = Cabinet(cfg, self.pins, self._alert, t.debounce_ms / 1000)
        if self.cabinet.gps is not None:
            clock.use_gps(self.cabinet.gps_offset_s)
        self.simulator = (
            PinSimulator(self.pins, str(g.simulator_socket)) if g.simulator_socket else None
        )
        self.vision = None
        if cfg.cameras:
            from edge.vision.supervisor import VisionSupervisor  # workers and rings only if needed

            self.vision = VisionSupervisor(cfg, self._on_vision_event, self.counters)

    def certificate(self) -> CertInfo | None:
        """The client certificate's subject and end (read again each time: it may be renewed)."""
        tls = self.cfg.hub_tls
        if tls is None:
            return None
        try:
            info = read_certificate(tls.cert)
        except CertificateError as e:
            if self._cert_problem != str(e):
                log.error("%s", e)
            self._cert_problem = str(e)
            return None
        self._cert_problem = ""
        if info.expiring and clock.monotonic() >= self._cert_warned_at + 86400:
            self._cert_warned_at = clock.monotonic()
            log.warning("client certificate %s ends %s (%.0f days): renew it before the hub "
                        "refuses this node", info.subject, info.not_after.date(), info.days_left)
        return info

    def _check_identity(self) -> None:
        info = self.certificate()
        if info is not None and info.subject != self.cfg.node.id:
            log.error("the client certificate is for %r but this node is %r: the hub's broker "
                      "will refuse everything it publishes", info.subject, self.cfg.node.id)

    def _make_evidence_key(self) -> None:
        """Made at the first start, so its public half can be enrolled before any clip."""
        from edge.record.keyfiles import key_on_file

        known = key_on_file(self.cfg.identity_dir)  # every later start: no cryptography here
        if known is None:
            from contract.evidence.keys import EvidenceKeyError, fingerprint
            from edge.record.signing import evidence_key

            try:
                known = fingerprint(evidence_key(self.cfg.identity_dir))
            except (EvidenceKeyError, OSError) as e:
                log.error("evidence key unavailable (clips cannot be signed): %s", e)
                return
        log.info("evidence key %s in %s", known, self.cfg.identity_dir)

    # --- GPIO callbacks (run in the thread that saw the edge) ---

    def _on_press(self) -> None:
        self.counters.inc("presses")
        self._alert(AlertKind.CALL, "call_button")

    def _on_stuck(self) -> None:
        log.error("call button held for %.0f s: jammed or taped down",
                  self.cfg.timings.stuck_after_s)
        self._alert(AlertKind.BUTTON_STUCK, "call_button")

    def _alert(self, kind: AlertKind, source: str) -> None:
        alert = self.alarm.raise_alert(kind, source)
        if kind in (AlertKind.INPUT_RESTORED, AlertKind.INPUT_FLAPPING):
            return  # news for the hub; no lights, no PTZ, no footage pinned
        try:  # after the alert is on its way: lights, siren and the PTZ head are second
            self.cabinet.on_alert(source)
        except Exception:
            log.exception("alert %s: switching relays or turning the PTZ head failed", alert.id)
        if self.footage is not None:  # after the alert is on its way: footage is second
            self.footage.alert(alert.id, alert.time.timestamp())

    def _on_release(self, held_s: float) -> None:
        if held_s >= self.cfg.timings.stuck_after_s:
            log.warning("call button released after %.0f s stuck", held_s)


    def _on_ack(self, topic: str, payload: bytes, _reply: ReplyTo) -> None:
        self.alarm.on_ack_message(topic, payload)

    def _on_command(self, topic: str, payload: bytes, reply: ReplyTo) -> None:
        self.commands.on_message(topic, payload, reply)

    def _on_vision_event(self, ev: VisionEvent) -> None:
        """From the vision supervisor's thread: one tracked object's news, to the hub."""
        def payload(seq: int) -> bytes:
            return Event(
                id=ev.event_id, seq=seq, node=self.cfg.node.id, camera=ev.camera,
                phase=EventPhase(ev.phase), track=ev.track_id, label=ev.label,
                score=round(ev.score, 3), box=tuple(round(v, 4) for v in ev.box),  # type: ignore[arg-type]
                zones=list(ev.zones), entered=list(ev.entered), left=list(ev.left),
                dwell_s={k: round(v, 1) for k, v in ev.dwell_s.items()},
                loitering=list(ev.loitering), stationary=ev.stationary,
                started=ev.started_at, time=ev.time, snapshot=ev.snapshot,
            ).to_bytes()

        self._forward(Priority.EVENT, self.topics.event, payload)
        if self.footage is not None and ev.phase in ("new", "end"):
            self.footage.event(ev.camera, ev.event_id, ev.started_at.timestamp(),
                            ev.time.timestamp())

    def _forward(self, priority: Priority, topic: str, build: Callable[[int], bytes]) -> None:
        """Store an event or a heartbeat for the forwarder; live if the store is failing."""
        if self.backlog is not None and self.forwarder is not None:
            try:
                self.backlog.put(priority, topic, build)
                self.forwarder.wake()
                return
            except BacklogError as e:
                self.counters.inc("backlog_errors")
                log.error("%s: sending live", e)
        with self._live_lock:
            self._live_seq[priority] = self._live_seq.get(priority, 0) + 1
            seq = self._live_seq[priority]
        self.uplink.publish(topic, build(seq), qos=1)

    def _on_link(self, up: bool) -> None:
        self.alarm.on_link(up)  # alerts first
        if up and self.forwarder is not None:
            self.forwarder.wake()

    # --- payloads ---

    def _status(self, state: str, reason: str = "") -> bytes:
        return Status(
            node=self.cfg.node.id, state=state, time=clock.now(),  # type: ignore[arg-type]
            boot=self.boot, version=__version__, site=self.cfg.node.site, reason=reason,
            health=self.health.state, reasons=self.health.reasons,
        ).to_bytes()

    def heartbeat(self) -> Heartbeat:
        pending, unacked = self.outbox.counts()
        waiting = self.backlog.counts() if self.backlog is not None else {}
        link = self.uplink.state
        cert = self.certificate()
        return Heartbeat(
            node=self.cfg.node.id, time=clock.now(),
            uptime_s=round(clock.monotonic() - self.started, 1),
            outbox=OutboxStats(
                pending=pending, unacked=unacked, events=waiting.get(Priority.EVENT, 0),
                telemetry=waiting.get(Priority.TELEMETRY, 0),
                thinned=self.backlog.thinned if self.backlog is not None else 0),
            link=LinkStats(connects=link.connects, disconnects=link.disconnects,
                           connected_since=link.connected_since,
                           refused_connects=link.refused_connects,
                           refused_publishes=link.refused_publishes,
                           refused_subscriptions=link.refused_subscriptions),
            inputs=self.cabinet.input_stats(),
            counters=self.counters.snapshot(),
            cameras=self.vision.stats() if self.vision else {},
            certificate=None if cert is None else CertificateStats(
                subject=cert.subject, not_after=cert.not_after, days_left=cert.days_left,
                expiring=cert.expiring),
            outputs=self.cabinet.output_stats(), ptz=self.cabinet.ptz_stats(),
            gps=self.cabinet.gps_stats(), sensors=self.cabinet.sensor_stats(),
            platform=(platform_stats(self.platform, clock.sync_state())
                      if self.platform is not None else None),
            health=self.health, firmware=self.firmware.stats(),
        )

    # --- what commands may ask (edge.uplink.commands.NodeControl) ---

    def set_heartbeat(self, interval_s: float, for_s: float | None) -> None:
        """Heartbeats every interval_s from now on (for for_s, then as configured)."""
        self._beat_s = interval_s
        self._beat_until = clock.monotonic() + for_s if for_s is not None else None
        self._next_beat = clock.monotonic()
        log.info("heartbeat every %.0f s%s", interval_s,
                 f" for {for_s:.0f} s" if for_s is not None else "")

    def restart(self, why: str) -> None:
        log.info("restarting: %s", why)
        self.restart_requested = why
        self._stop.set()

    def selftest(self) -> list[Check]:
        checks = [Check(name="uplink", ok=self.uplink.connected,
                        detail=f"{self.cfg.hub.host}:{self.cfg.hub.port}")]
        try:
            self.outbox.probe()
            checks.append(Check(name="outbox", ok=True, detail="writable"))
        except OutboxError as e:
            checks.append(Check(name="outbox", ok=False, detail=str(e)))
        try:
            du = shutil.disk_usage(self.cfg.data_dir)
            share = du.free / du.total if du.total else 0.0
            checks.append(Check(name="data_disk", ok=share >= 0.05,
                                detail=f"{du.free / 1e9:.1f} GB free of {du.total / 1e9:.1f} GB"))
        except OSError as e:
            checks.append(Check(name="data_disk", ok=False, detail=str(e)))
        synced = clock.clock_synced()
        checks.append(Check(name="clock", ok=synced,
                            detail="synchronised" if synced else "not synchronised"))
        cert = self.certificate()
        if cert is not None:
            checks.append(Check(name="certificate", ok=cert.days_left > CERT_WARN_DAYS,
                                detail=f"{cert.subject}, {cert.days_left:.0f} days left"))
        if self.vision is not None:
            checks.append(Check(name="vision", ok=self.vision.alive(),
                                detail="running" if self.vision.alive() else "supervisor died"))
            for name, cam in self.vision.stats().items():
                checks.append(Check(name=f"camera.{name}", ok=cam.online,
                                    detail=f"{cam.capture_fps:.1f} fps" if cam.online
                                    else cam.reason or "offline"))
                rec = cam.recording
                if rec is not None:
                    checks.append(Check(name=f"recording.{name}", ok=rec.state != "failed",
                                        detail=rec.reason or rec.state))
        checks.append(Check(name="health", ok=not self.unhealthy_reason,
                            detail=self.unhealthy_reason or "ok"))
        return checks

    def _check_trial(self) -> None:
        """A config change on trial commits once healthy and connected, or rolls back."""
        on_trial = self.commands.trial
        trial = on_trial.current() if on_trial is not None else None
        if on_trial is None or trial is None:
            return
        reply = ReplyTo(trial.reply_topic,
                        bytes.fromhex(trial.correlation) if trial.correlation else None)
        if trial.state == "rolled_back":
            if self.uplink.connected:
                self.commands.answer(reply, Response(
                    id=trial.command_id, command="config.set", status="failed",
                    error=f"rolled back to the previous config: {trial.reason}",
                    config_sha256=sha256_of(on_trial.config)))
                on_trial.finish()
            return
        if not self.unhealthy_reason and self.uplink.connected:
            on_trial.commit()
            self.commands.answer(reply, Response(
                id=trial.command_id, command="config.set", status="done",
                config_sha256=trial.sha256))
        elif time.time() > trial.deadline:
            why = self.unhealthy_reason or "not connected to the hub"
            on_trial.roll_back(f"not healthy within the trial: {why}")
            self.restart("config change rolled back")

    # --- main loop ---

    def check_health(self) -> bool:
        reason = ""
        if not self.uplink.alive():
            reason = "uplink thread died"
        elif clock.monotonic() - self.uplink.loop_beat > LOOP_STALL_S:
            reason = "uplink loop stalled"
        elif self.vision is not None and not self.vision.alive():
            reason = "vision supervisor thread died"
        elif self.forwarder is not None and not self.forwarder.alive():
            reason = "forwarder thread died"
        elif self.cabinet.dead():
            reason = self.cabinet.dead()
        else:
            try:
                self.outbox.probe()
            except OutboxError as e:
                reason = str(e)
        if reason != self.unhealthy_reason:
            if reason:
                log.error("unhealthy, withholding watchdog pings: %s", reason)
            else:
                log.info("healthy again")
        self.unhealthy_reason = reason
        return not reason

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        self._check_identity()
        if self.forwarder is not None:
            self.forwarder.start()
        self.uplink.start()
        if self.vision is not None:
            self.vision.start()
        self.alarm.resume()
        self.alarm.show_state()
        self.notifier.ready(f"node {self.cfg.node.id} up")
        log.info("node %s ready (boot %s, version %s)", self.cfg.node.id, self.boot, __version__)
        self._health_period = self.notifier.watchdog_s / 2 if self.notifier.watchdog_s else 5.0
        self._next_tick = self._next_health = self._next_beat = clock.monotonic()
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # One failed step (a disk error, a bug) must not end the main loop; if it
                # keeps failing, the health check withholds the watchdog and systemd restarts us.
                self.counters.inc("main_loop_errors")
                log.exception("main loop step failed")
                self._stop.wait(TICK_S)
        self.shutdown()
        return RESTART if self.restart_requested else 0

    def _step(self) -> None:
        """Handle one event from the uplink, or, when the tick is due, the periodic work."""
        try:
            wait = max(0.0, self._next_tick - clock.monotonic())
            self.alarm.handle(self.alarm.events.get(timeout=wait))
            if self.forwarder is not None and not self.alarm.waiting():
                self.forwarder.wake()  # events and telemetry wait for alerts
            return
        except queue.Empty:
            pass
        now = clock.monotonic()
        self._next_tick = now + TICK_S
        self.alarm.tick()
        if now >= self._next_health:
            self._next_health = now + self._health_period
            healthy = self.check_health()
            if healthy:
                self.notifier.ping()
            self._check_trial()
            self.firmware.poll()
            cameras = self.vision.stats().values() if self.vision is not None else ()
            self.firmware.mark_healthy({"watchdog": healthy, "uplink": self.uplink.connected,
                                        "cameras": all(c.online for c in cameras)})
        if now >= self._next_sample:
            self._next_sample = now + self.cfg.health.sample_s
            self.sample_health()
        if self._beat_until is not None and now >= self._beat_until:
            self._beat_s, self._beat_until = self.cfg.timings.heartbeat_s, None
            log.info("heartbeat back to every %.0f s", self._beat_s)
        if now >= self._next_beat:
            self._next_beat = now + self._beat_s
            beat = self.heartbeat().to_bytes()
            self._forward(Priority.TELEMETRY, self.topics.telemetry, lambda _seq: beat)
            self.outbox.prune(time.time())
            self.commands.prune(time.time())

    def sample_health(self) -> None:
        """Read the platform, run the fan and heater, and publish a changed verdict."""
        self.platform = self.platform_reader.read()
        self.cabinet.regulate(self.platform.soc_temp_c)
        failures = [self.unhealthy_reason] if self.unhealthy_reason else []
        health = assess(self.cfg.health, self.platform, clock.sync_state(),
                        failures=failures, problems=self._problems())
        if health == self.health:
            return
        log.log(logging.INFO if health.state == "ok" else logging.WARNING, "health %s%s",
                health.state, f": {'; '.join(health.reasons)}" if health.reasons else "")
        self.health = health
        if self.uplink.connected:  # else the next connect publishes it
            self.uplink.publish(self.topics.status, self._status("online"), qos=1, retain=True)

    def _problems(self) -> list[str]:
        out = self.cabinet.problems()
        if self.vision is not None:
            starting = clock.monotonic() - self.started < CAMERA_START_S
            for name, cam in self.vision.stats().items():
                if not cam.online and not starting:
                    out.append(f"camera {name} offline")
                rec = cam.recording
                if rec is not None and rec.state == "failed":
                    out.append(f"recording {name} failed")  # why: in telemetry
        cert = self.certificate()
        if cert is not None and cert.expiring:
            out.append(f"certificate ends {cert.not_after.date()}")
        return out

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        # A stop that hangs leaves every thread's stack in the journal and exits, before
        # systemd's TimeoutStopSec (15 s) would kill us without a clue.
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
        self.notifier.stopping()
        while True:  # record what already came back before closing the outbox
            try:
                self.alarm.handle(self.alarm.events.get_nowait())
            except queue.Empty:
                break
        if self.vision is not None:
            self.vision.stop()  # before the uplink: the workers' last `end` events go out
        self.commands.close()
        if self.forwarder is not None:
            self.forwarder.stop()
        self.uplink.stop()
        if self.backlog is not None:
            self.backlog.close()
        if self.footage is not None:
            self.footage.close()
        if self.simulator is not None:
            self.simulator.close()
        self.button.close()
        self.cabinet.close()
        clock.use_gps(None)
        self.led.close()
        self.outbox.close()
        faulthandler.cancel_dump_traceback_later()
        link = self.uplink.state
        log.info("node %s stopped (link: %d connects, refused by the broker: %d connects, "
                 "%d publishes, %d subscriptions)", self.cfg.node.id, link.connects,
                 link.refused_connects, link.refused_publishes, link.refused_subscriptions)

