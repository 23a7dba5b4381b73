"""The pole's RS-485 sensor bus: Modbus RTU slaves read through a register map.

The cabinet's climate sensor, the smart UPS, a door or flood sensor all hang on one RS-485
pair, each at its own slave address. A `Register` says where a value lives (slave, holding or
input register, address), how it is encoded (16/32-bit integer or float, word order) and how
to scale it into a unit; `SensorBus.poll_once()` reads them all and returns what answered.

A bus in the field misbehaves: a sensor without power answers nothing, noise spoils a reply's
CRC, a slave refuses an address, the USB adapter is pulled. Each of those is counted against
the register it hit, never raised, and the next poll simply tries again (pymodbus reopens
the port when it is back).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, get_args

from pymodbus.client import ModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

logger = logging.getLogger(__name__)

DataTypeName = Literal["int16", "uint16", "int32", "uint32", "float32"]
RegisterKind = Literal["holding", "input"]
WordOrder = Literal["big", "little"]
# What went wrong with one read, as counted per register.
ErrorKind = Literal["no_response", "bad_reply", "refused", "port"]

_WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
_TYPES = {name: ModbusSerialClient.DATATYPE[name.upper()] for name in _WORDS}


@dataclass(frozen=True)
class Register:
    """One value on the bus: `scale` turns the raw number into `unit` (0.1 for "°C × 10")."""

    name: str
    device_id: int
    kind: RegisterKind
    address: int
    data_type: DataTypeName = "uint16"
    scale: float = 1.0
    unit: str = ""
    word_order: WordOrder = "big"  # which 16-bit word of a 32-bit value comes first

    def __post_init__(self) -> None:
        where = f"register {self.name!r}"
        if not 1 <= self.device_id <= 247:
            raise ValueError(f"{where}: device_id must be a slave address 1-247, "
                             f"got {self.device_id!r}")
        if self.kind not in get_args(RegisterKind):
            raise ValueError(f"{where}: kind must be 'holding' or 'input', got {self.kind!r}")
        if self.data_type not in _WORDS:
            raise ValueError(f"{where}: data_type must be one of {', '.join(_WORDS)}, "
                             f"got {self.data_type!r}")
        if not 0 <= self.address <= 0xFFFF - self.count + 1:
            raise ValueError(f"{where}: address must be 0-65535, got {self.address!r}")
        if self.word_order not in get_args(WordOrder):
            raise ValueError(f"{where}: word_order must be 'big' or 'little', "
                             f"got {self.word_order!r}")

    @property
    def count(self) -> int:
        """How many 16-bit registers the value spans."""
        return _WORDS[self.data_type]

    def decode(self, registers: Sequence[int]) -> float:
        """The scaled value of these raw registers (exactly `count` of them)."""
        raw = ModbusSerialClient.convert_from_registers(
            list(registers), _TYPES[self.data_type], word_order=self.word_order
        )
        if not isinstance(raw, int | float):
            raise ValueError(f"register {self.name}: decoded to {type(raw).__name__}, "
                             "not a number")
        if self.scale == 1 and isinstance(raw, int):
            return raw
        # Rounded so 215 × 0.1 reads 21.5, not 21.500000000000004.
        return round(raw * self.scale, 9)


class Reading(NamedTuple):
    value: float
    unit: str


class SensorBus:
    """The Modbus RTU slaves on one RS-485 adapter at `port` (a device path or pyserial URL).

    `timeout_s` bounds the wait for each reply and `retries` the repeats of a read before it
    counts as failed, so one poll of an absent slave costs (retries + 1) × timeout_s.
    Reads are one at a time, as the bus allows; `poll_once` may be called from any thread.
    """

    def __init__(
        self,
        port: str,
        registers: Sequence[Register],
        *,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        timeout_s: float = 0.5,
        retries: int = 1,
    ) -> None:
        names = [r.name for r in registers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"register names must be unique; repeated: {', '.join(duplicates)}")
        self.port = port
        self.registers = list(registers)
        self._lock = threading.Lock()
        self._heard_reply = False
        self._errors: dict[str, Counter[str]] = {r.name: Counter() for r in registers}
        self._last_error: dict[str, str] = {}
        # Any: pymodbus's sync client methods are only partly annotated.
        self._client: Any = ModbusSerialClient(
            port, framer=FramerType.RTU, baudrate=baudrate, parity=parity, stopbits=stopbits,
            timeout=timeout_s, retries=retries, trace_packet=self._trace,
        )

    def poll_once(self) -> dict[str, Reading]:
        """Read every register once; returns those that answered, by name."""
        readings: dict[str, Reading] = {}
        with self._lock:
            for register in self.registers:
                try:
                    value = self._read(register)
                except _ReadFailed as failure:
                    self._errors[register.name][failure.kind] += 1
                    self._last_error[register.name] = f"{failure.kind}: {failure}"
                    logger.debug("Modbus %s (slave %d, %s register %d): %s", register.name,
                                 register.device_id, register.kind, register.address, failure)
                    continue
                readings[register.name] = Reading(value, register.unit)
                self._last_error.pop(register.name, None)
        return readings

    @property
    def error_counts(self) -> dict[str, dict[str, int]]:
        """Failed reads so far, per register name and kind of failure."""
        with self._lock:
            return {name: dict(counts) for name, counts in self._errors.items()}

    @property
    def last_errors(self) -> dict[str, str]:
        """For each register whose latest read failed, what went wrong."""
        with self._lock:
            return dict(self._last_error)

    def close(self) -> None:
        """Release the port; a later poll opens it again."""
        with self._lock:
            self._client.close()

    def __enter__(self) -> SensorBus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending and data:
            self._heard_reply = True
        return data

    def _read(self, register: Register) -> float:
        self._heard_reply = False
        read = (self._client.read_holding_registers if register.kind == "holding"
                else self._client.read_input_registers)
        try:
            response = read(register.address, count=register.count,
                            device_id=register.device_id)
        except ConnectionException as exc:
            raise _ReadFailed("port", f"port {self.port} unavailable: {exc}") from exc
        except ModbusIOException as exc:
            # Bytes came back but never made a valid frame: a bad CRC or a garbled reply.
            if self._heard_reply:
                raise _ReadFailed("bad_reply", f"garbled reply: {exc}") from exc
            raise _ReadFailed("no_response", "no reply (slave absent or unpowered?)") from exc
        except (ModbusException, OSError, ValueError) as exc:
            raise _ReadFailed("bad_reply", f"{type(exc).__name__}: {exc}") from exc
        if response.isError():
            code = getattr(response, "exception_code", "?")
            raise _ReadFailed("refused", f"slave refused the read (exception {code})")
        registers = list(getattr(response, "registers", []))
        if len(registers) != register.count:
            raise _ReadFailed("bad_reply",
                              f"{len(registers)} registers in reply, {register.count} asked")
        return register.decode(registers)


class _ReadFailed(Exception):
    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
