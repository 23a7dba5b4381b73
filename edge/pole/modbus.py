"""The Modbus RTU sensors on the pole's RS-485 bus (the cabinet's temperature and humidity, a
smart UPS, a power meter...), polled in a thread of their own; the latest readings go to
telemetry and to the fan and heater rules.

A reading outside its register's `low`/`high`, or a sensor that does not answer, is a problem
a crew is told about; a poll thread that died stops the watchdog being fed.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from contract.pole import SensorStats
from drivers.lifecycle import Lifecycle
from edge import clock
from edge.config.pole import ModbusSection

if TYPE_CHECKING:  # pymodbus alone brings asyncio: it loads only for a pole with sensors
    from drivers.modbus import SensorBus

log = logging.getLogger(__name__)


@dataclass
class _Reading:
    value: float
    unit: str
    at: float  # monotonic


class SensorPoller(Lifecycle):
    """Polls the Modbus bus every `poll_s` in its own thread and keeps the latest readings."""

    def __init__(self, bus: SensorBus, poll_s: float) -> None:
        super().__init__()
        self.bus = bus
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._latest: dict[str, _Reading] = {}
        self._ok: set[str] = set()
        self.polls = 0
        self._thread = self._start_thread(self._run, "modbus-poll")

    def alive(self) -> bool:
        return self._thread.is_alive()

    def value(self, name: str, max_age_s: float) -> float | None:
        with self._lock:
            r = self._latest.get(name)
        if r is None or clock.monotonic() - r.at > max_age_s:
            return None
        return r.value

    def stats(self) -> dict[str, SensorStats]:
        errors, last = self.bus.error_counts, self.bus.last_errors
        with self._lock:
            return {
                reg.name: SensorStats(
                    value=self._latest[reg.name].value if reg.name in self._latest else None,
                    unit=reg.unit, ok=reg.name in self._ok,
                    errors={k: v for k, v in errors.get(reg.name, {}).items() if v},
                    error=last.get(reg.name))
                for reg in self.bus.registers
            }

    def _release(self) -> None:
        self.bus.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                readings = self.bus.poll_once()
            except Exception:  # the bus counts its own failures; this is a bug, keep polling
                log.exception("Modbus poll on %s failed", self.bus.port)
                readings = {}
            now = clock.monotonic()
            with self._lock:
                self.polls += 1
                self._ok = set(readings)
                for name, r in readings.items():
                    self._latest[name] = _Reading(r.value, r.unit, now)
            self._stopping.wait(self._poll_s)


class ModbusSensors:
    """The bus of the config's `modbus` section and its poller, with each register's limits."""

    def __init__(self, section: ModbusSection) -> None:
        from drivers.modbus import Register, SensorBus

        m = section
        self._section = section
        bus = SensorBus(
            m.port, [Register(r.name, r.slave, r.kind, r.address, r.type, r.scale,
                              r.unit, r.word_order) for r in m.registers],
            baudrate=m.baudrate, parity=m.parity, stopbits=m.stopbits,
            timeout_s=m.timeout_s, retries=m.retries)
        self.poller = SensorPoller(bus, m.poll_s)

    def problems(self) -> list[str]:
        """A sensor not read (after the first poll), a reading outside its limits."""
        out: list[str] = []
        polled = self.poller.polls > 0  # read first: the stats are then of a whole poll
        stats = self.poller.stats()
        for reg in self._section.registers:
            st = stats[reg.name]
            unit = f" {reg.unit}" if reg.unit else ""
            if not st.ok and polled:
                kind = (st.error or "no reading").split(":", 1)[0]
                out.append(f"sensor {reg.name} not read ({kind})")
            elif st.value is not None and reg.low is not None and st.value < reg.low:
                out.append(f"{reg.name} below {reg.low:g}{unit}")
            elif st.value is not None and reg.high is not None and st.value > reg.high:
                out.append(f"{reg.name} above {reg.high:g}{unit}")
        return out

    def dead(self) -> str:
        return "Modbus poll thread died" if not self.poller.alive() else ""

    def close(self) -> None:
        self.poller.close()
