"""The pole's RS-485 sensor bus, simulated: Modbus RTU slaves on the far end of a pty.

pymodbus's own serial server answers as the slaves do; a bridge thread joins the pty it
listens on to the pty the driver opens, like the RS-485 adapter between them, so the bytes
on the wire are the real RTU frames and the "adapter" can be pulled. The stock bus has:

- slave 1, a temperature/humidity sensor: input registers 1 (°C × 10, signed) and 2 (%RH × 10);
- slave 2, a smart UPS: holding registers 0 battery %, 1 on battery (0/1), 2 input volts × 10,
  3-4 battery runtime in seconds (uint32, high word first), 5-6 load in watts (float32, low
  word first, as some UPS firmware sends it).

A request for an address with no slave gets no answer, as on a real bus.

    python -m devkit.simulators.modbus [--link PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import struct
import threading
from collections import deque
from types import FrameType
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from drivers.lifecycle import Lifecycle
from drivers.ptyline import PtyLine

CLIMATE, UPS = 1, 2
_HOLDING_CODES = {3, 6, 16, 22, 23}
_START_TIMEOUT_S = 10.0
_WIRE_LOG = 10_000


def climate_registers(temperature_c: float, humidity_pct: float) -> dict[int, int]:
    return {1: _int16(round(temperature_c * 10)), 2: round(humidity_pct * 10)}


def ups_registers(battery_pct: int, on_battery: bool, input_v: float, runtime_s: int,
                  load_w: float) -> dict[int, int]:
    high, low = struct.unpack(">HH", struct.pack(">I", runtime_s))
    load_high, load_low = struct.unpack(">HH", struct.pack(">f", load_w))
    return {0: battery_pct, 1: int(on_battery), 2: round(input_v * 10),
            3: high, 4: low, 5: load_low, 6: load_high}


def _int16(value: int) -> int:
    return value & 0xFFFF


class SensorBusSimulator(Lifecycle):
    """Modbus RTU slaves behind a pty; the driver opens `path`.

    `registers[device_id]` maps "input" and "holding" to {address: raw 16-bit value}; the
    setters change what the slaves answer from then on. `wire()` lists the raw bytes each way
    as they crossed the simulated adapter.
    """

    def __init__(self, *, link: str | None = None, baudrate: int = 9600) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.registers: dict[int, dict[str, dict[int, int]]] = {
            CLIMATE: {"input": climate_registers(21.5, 48.0), "holding": {}},
            UPS: {"input": {}, "holding": ups_registers(87, False, 229.8, 5400, 312.5)},
        }
        self._wire: deque[tuple[str, bytes]] = deque(maxlen=_WIRE_LOG)
        self._corrupt_replies = 0
        self._absent: set[int] = set()
        self._slave_side = PtyLine(self._to_driver, name="modbus-sim-slaves")
        self._driver_side = PtyLine(self._to_slaves, link=link, name="modbus-sim-adapter")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._start_thread(self._serve, "modbus-sim", baudrate)
        if not self._ready.wait(_START_TIMEOUT_S) or self._error is not None:
            self.close()
            raise RuntimeError(f"Modbus simulator did not start: {self._error!r}")

    @property
    def path(self) -> str:
        return self._driver_side.path

    def wire(self) -> list[tuple[str, bytes]]:
        """("request" | "reply", bytes) chunks as read off each side, oldest first."""
        with self._lock:
            return list(self._wire)

    def set_climate(self, temperature_c: float, humidity_pct: float) -> None:
        self._set(CLIMATE, "input", climate_registers(temperature_c, humidity_pct))

    def set_ups(self, *, battery_pct: int, on_battery: bool, input_v: float,
                runtime_s: int, load_w: float) -> None:
        self._set(UPS, "holding", ups_registers(battery_pct, on_battery, input_v, runtime_s,
                                                load_w))

    def disconnect(self, device_id: int, gone: bool = True) -> None:
        """The slave loses power or its cable: it stops answering (or answers again)."""
        with self._lock:
            (self._absent.add if gone else self._absent.discard)(device_id)

    def corrupt_replies(self, n: int = 1) -> None:
        """Noise on the line: the next `n` replies reach the driver with a bad CRC."""
        with self._lock:
            self._corrupt_replies += n

    def unplug(self) -> None:
        """The RS-485 adapter is pulled out of the node."""
        self._driver_side.unplug()

    def plug(self) -> None:
        self._driver_side.plug()

    def _interrupt(self) -> None:
        loop, stopped = self._loop, self._stopped
        if loop is not None and stopped is not None and not loop.is_closed():

            def stop() -> None:
                if not stopped.done():
                    stopped.set_result(None)

            loop.call_soon_threadsafe(stop)

    def _release(self) -> None:
        self._driver_side.close()
        self._slave_side.close()

    def _set(self, device_id: int, kind: str, values: dict[int, int]) -> None:
        with self._lock:
            self.registers[device_id][kind].update(values)

    def _to_slaves(self, data: bytes) -> None:
        with self._lock:
            self._wire.append(("request", data))
        self._slave_side.write(data)

    def _to_driver(self, data: bytes) -> None:
        with self._lock:
            if self._corrupt_replies:
                self._corrupt_replies -= 1
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            self._wire.append(("reply", data))
        self._driver_side.write(data)

    def _trace_pdu(self, sending: bool, pdu: Any) -> Any:
        # Returning no PDU for a request makes the server drop it: nobody at that address.
        if not sending:
            with self._lock:
                if pdu.dev_id in self._absent or pdu.dev_id not in self.registers:
                    return None
        return pdu

    async def _action(self, device_id: int, function_code: int, start_address: int,
                      address: int, count: int, registers: list[int],
                      values: list[int] | list[bool] | None) -> ExcCodes | None:
        """Copies this simulator's register values into the server's before each access."""
        kind = "holding" if function_code in _HOLDING_CODES else "input"
        with self._lock:
            table = self.registers[device_id][kind]
            if values is not None:
                for offset, value in enumerate(values):
                    table[address + offset] = int(value)
            for reg, value in table.items():
                if 0 <= reg - start_address < len(registers):
                    registers[reg - start_address] = value
        return None

    def _device(self, device_id: int) -> SimDevice:
        def block(kind: str) -> list[SimData]:
            table = self.registers[device_id][kind]
            if not table:  # pymodbus needs every block; this one answers "illegal address"
                return [SimData(0, datatype=DataType.INVALID)]
            return [SimData(a, values=v, datatype=DataType.REGISTERS) for a, v in table.items()]

        async def action(*args: Any) -> ExcCodes | None:
            return await self._action(device_id, *args)

        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(device_id, simdata=(bits, bits, block("holding"), block("input")),
                         action=action)

    def _serve(self, baudrate: int) -> None:
        try:
            asyncio.run(self._run_server(baudrate))
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _run_server(self, baudrate: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = self._loop.create_future()
        server: Any = ModbusSerialServer(
            [self._device(device_id) for device_id in self.registers],
            framer=FramerType.RTU, port=self._slave_side.path, baudrate=baudrate,
            trace_pdu=self._trace_pdu,
        )
        await server.serve_forever(background=True)
        self._ready.set()
        try:
            await self._stopped
        finally:
            await server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Simulated Modbus RTU sensors on a pty.")
    parser.add_argument("--link", help="also reachable at this path (a symlink to the pty)")
    args = parser.parse_args(argv)
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    with SensorBusSimulator(link=args.link) as bus:
        print(bus.path, flush=True)
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
