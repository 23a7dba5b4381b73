"""The RS-485 sensor bus over real ptys: the cabinet climate sensor and the UPS answered by
pymodbus's own RTU server, values decoded with their scale and unit, and a bus that misbehaves
(absent slave, noise, refused address, adapter pulled) counted instead of raised."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.simulators.modbus import SensorBusSimulator
from drivers.modbus import Reading, Register, SensorBus
from drivers.ptyline import PtyLine
from tests.support.waiting import wait_for

# A thread that dies of an exception fails the test: drivers must count faults, not raise them.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

POLE_MAP = [
    Register("cabinet_temperature", 1, "input", 1, "int16", 0.1, "°C"),
    Register("cabinet_humidity", 1, "input", 2, "uint16", 0.1, "%RH"),
    Register("ups_battery", 2, "holding", 0, "uint16", 1, "%"),
    Register("ups_on_battery", 2, "holding", 1, "uint16"),
    Register("ups_input_voltage", 2, "holding", 2, "uint16", 0.1, "V"),
    Register("ups_runtime", 2, "holding", 3, "uint32", 1, "s"),
    Register("ups_load", 2, "holding", 5, "float32", 1, "W", word_order="little"),
]


def crc16(data: bytes) -> bytes:
    """Modbus CRC, worked out here independently of pymodbus."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc.to_bytes(2, "little")


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SensorBusSimulator]:
    with SensorBusSimulator(link=str(tmp_path / "ttyRS485")) as bus:
        yield bus


def sensor_bus(sim: SensorBusSimulator, registers: list[Register] = POLE_MAP) -> SensorBus:
    return SensorBus(sim.path, registers, timeout_s=0.2, retries=0)


def test_a_read_is_the_exact_rtu_frame_and_its_reply_decodes_with_scale_and_unit(
    sim: SensorBusSimulator,
) -> None:
    with sensor_bus(sim, POLE_MAP[:1]) as bus:
        assert bus.poll_once() == {"cabinet_temperature": Reading(21.5, "°C")}
    request = bytes.fromhex("01 04 00 01 00 01")
    reply = bytes.fromhex("01 04 02 00 D7")  # 0x00D7 = 215 → 21.5 °C
    assert request + crc16(request) == bytes.fromhex("01 04 00 01 00 01 60 0A")
    wire = sim.wire()
    assert b"".join(d for way, d in wire if way == "request") == request + crc16(request)
    assert b"".join(d for way, d in wire if way == "reply") == reply + crc16(reply)


def test_the_pole_map_reads_every_sensor_with_its_unit(sim: SensorBusSimulator) -> None:
    with sensor_bus(sim) as bus:
        assert bus.poll_once() == {
            "cabinet_temperature": (21.5, "°C"),
            "cabinet_humidity": (48.0, "%RH"),
            "ups_battery": (87, "%"),
            "ups_on_battery": (0, ""),
            "ups_input_voltage": (229.8, "V"),
            "ups_runtime": (5400, "s"),
            "ups_load": (312.5, "W"),
        }
        sim.set_climate(-5.3, 99.9)
        sim.set_ups(battery_pct=41, on_battery=True, input_v=0.0, runtime_s=70_000,
                    load_w=-0.75)
        values = {name: reading.value for name, reading in bus.poll_once().items()}
        assert values == {
            "cabinet_temperature": -5.3, "cabinet_humidity": 99.9, "ups_battery": 41,
            "ups_on_battery": 1, "ups_input_voltage": 0.0, "ups_runtime": 70_000,
            "ups_load": -0.75,
        }
        assert all(not counts for counts in bus.error_counts.values())


def test_an_absent_or_unpowered_slave_is_counted_and_the_rest_still_read(
    sim: SensorBusSimulator,
) -> None:
    door = Register("door_open", 9, "input", 0)
    with sensor_bus(sim, [*POLE_MAP[:2], door]) as bus:
        for _ in range(2):
            readings = bus.poll_once()
            assert set(readings) == {"cabinet_temperature", "cabinet_humidity"}
        assert bus.error_counts["door_open"] == {"no_response": 2}
        assert bus.last_errors["door_open"].startswith("no_response")
        sim.disconnect(1)
        assert bus.poll_once() == {}
        assert bus.error_counts["cabinet_humidity"] == {"no_response": 1}
        sim.disconnect(1, gone=False)
        assert set(bus.poll_once()) == {"cabinet_temperature", "cabinet_humidity"}
        assert "cabinet_humidity" not in bus.last_errors


def test_a_reply_spoilt_by_noise_is_counted_as_a_bad_reply(sim: SensorBusSimulator) -> None:
    with sensor_bus(sim, POLE_MAP[:2]) as bus:
        sim.corrupt_replies(1)
        assert set(bus.poll_once()) == {"cabinet_humidity"}
        assert bus.error_counts["cabinet_temperature"] == {"bad_reply": 1}
        assert bus.poll_once()["cabinet_temperature"] == (21.5, "°C")


def test_an_address_the_slave_does_not_have_is_refused(sim: SensorBusSimulator) -> None:
    wrong = Register("ups_serial", 2, "holding", 40)
    with sensor_bus(sim, [wrong, POLE_MAP[2]]) as bus:
        assert set(bus.poll_once()) == {"ups_battery"}
        assert bus.error_counts["ups_serial"] == {"refused": 1}
        assert "exception 2" in bus.last_errors["ups_serial"]


def test_adapter_pulled_is_counted_and_the_bus_reads_again_once_it_is_back(
    sim: SensorBusSimulator,
) -> None:
    with sensor_bus(sim, POLE_MAP[:1]) as bus:
        assert bus.poll_once()
        sim.unplug()
        for _ in range(3):
            assert bus.poll_once() == {}
        assert bus.error_counts["cabinet_temperature"] == {"port": 3}
        assert "ttyRS485" in bus.last_errors["cabinet_temperature"]
        sim.plug()
        assert bus.poll_once() == {"cabinet_temperature": (21.5, "°C")}


def test_bus_on_a_port_that_never_existed_only_counts(tmp_path: Path) -> None:
    with SensorBus(str(tmp_path / "ttyNone"), POLE_MAP[:1], timeout_s=0.05) as bus:
        assert bus.poll_once() == {}
        assert bus.error_counts == {"cabinet_temperature": {"port": 1}}


@pytest.mark.parametrize(
    ("data_type", "word_order", "registers", "value"),
    [
        ("int16", "big", [0xFFCB], -53),
        ("uint16", "big", [0xFFCB], 65483),
        ("int32", "big", [0xFFFF, 0xFFFE], -2),
        ("int32", "little", [0xFFFE, 0xFFFF], -2),
        ("uint32", "big", [0x0001, 0x1170], 70_000),
        ("uint32", "little", [0x1170, 0x0001], 70_000),
        ("float32", "big", [0x439C, 0x4000], 312.5),
        ("float32", "little", [0x4000, 0x439C], 312.5),
    ],
)
def test_register_types_and_word_orders_decode(
    data_type: str, word_order: str, registers: list[int], value: float
) -> None:
    register = Register("x", 1, "holding", 0, data_type, word_order=word_order)  # type: ignore[arg-type]
    assert register.count == len(registers)
    assert register.decode(registers) == value


def test_a_bad_register_map_entry_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"'ups'.*device_id"):
        Register("ups", 0, "holding", 0)
    with pytest.raises(ValueError, match=r"'ups'.*kind"):
        Register("ups", 2, "coil", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"'ups'.*data_type"):
        Register("ups", 2, "holding", 0, "int64")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeated: t"):
        SensorBus("loop://", [Register("t", 1, "input", 1), Register("t", 1, "input", 2)])


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(["int16", "uint16", "int32", "uint32", "float32"]),
       st.sampled_from(["big", "little"]),
       st.lists(st.integers(0, 0xFFFF), min_size=2, max_size=2),
       st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_decode_fuzz_any_register_contents_give_a_number(
    data_type: str, word_order: str, words: list[int], scale: float
) -> None:
    register = Register("x", 1, "input", 0, data_type, scale, word_order=word_order)  # type: ignore[arg-type]
    value = register.decode(words[: register.count])
    assert isinstance(value, int | float)
    if data_type != "float32":
        assert math.isfinite(value)


class ReplyingWire:
    """A slave that answers every request with whatever bytes the test chose."""

    def __init__(self) -> None:
        self.reply = b""
        self.line = PtyLine(self._answer)

    def _answer(self, _request: bytes) -> None:
        self.line.write(self.reply)


@pytest.fixture(scope="module")
def replying_wire() -> Iterator[ReplyingWire]:
    wire = ReplyingWire()
    yield wire
    wire.line.close()


def rtu_frames() -> st.SearchStrategy[bytes]:
    """Well-framed replies (right CRC) with any content, and plain line noise."""
    framed = st.builds(lambda body: body + crc16(body),
                       st.binary(min_size=1, max_size=12).map(lambda b: b"\x01" + b))
    return st.one_of(st.binary(max_size=16), framed,
                     st.builds(lambda n, b: b"\x01\x04" + bytes([n]) + b,
                               st.integers(0, 255), st.binary(max_size=6))
                     .map(lambda body: body + crc16(body)))


@settings(max_examples=200, deadline=None)
@given(rtu_frames())
def test_reply_fuzz_whatever_comes_back_is_a_reading_or_a_counted_error(
    replying_wire: ReplyingWire, reply: bytes
) -> None:
    replying_wire.reply = reply
    register = Register("t", 1, "input", 1, "int16", 0.1, "°C")
    with SensorBus(replying_wire.line.path, [register], timeout_s=0.02, retries=0) as bus:
        readings = bus.poll_once()
        errors = sum(bus.error_counts["t"].values())
    assert len(readings) + errors == 1
    if reply == bytes.fromhex("01 04 02 00 D7") + crc16(bytes.fromhex("01 04 02 00 D7")):
        assert readings == {"t": (21.5, "°C")}


def test_simulator_threads_stop_cleanly(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    with SensorBusSimulator() as sim, sensor_bus(sim, POLE_MAP[:1]) as bus:
        wait_for(lambda: bus.poll_once(), what="a reading")
    leftover = [t for t in set(threading.enumerate()) - before if t.is_alive()]
    assert leftover == []
