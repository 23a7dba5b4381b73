"""The PTZ head over a real pty: Pelco-D bytes on the wire, the simulated head's position and
presets, the patrol tour and its alert pauses, and a pulled RS-485 adapter."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.simulators.ptz import SimulatedHead
from drivers.ptyline import PtyLine
from drivers.ptz import Frame, FrameParser, Patrol, PtzError, PtzHead
from drivers.ptz.pelco_d import GO_TO_PRESET
from tests.support.waiting import wait_for

# A thread that dies of an exception fails the test: drivers must count faults, not raise them.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")


class ManualClock:
    """Time that moves only when the test says so."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Wire:
    """The far end of a pty that only records the bytes the driver sends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = bytearray()
        self.line = PtyLine(self._record)

    def _record(self, data: bytes) -> None:
        with self._lock:
            self._data += data

    def bytes(self, n: int) -> bytes:
        """Waits for the first n bytes on the wire and takes them off it."""
        wait_for(lambda: len(self._data) >= n, what=f"{n} bytes on the wire")
        with self._lock:
            data = bytes(self._data[:n])
            del self._data[:n]
            return data


@pytest.fixture
def wire() -> Iterator[Wire]:
    w = Wire()
    yield w
    w.line.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sim(tmp_path: Path, clock: ManualClock) -> Iterator[SimulatedHead]:
    with SimulatedHead(1, link=str(tmp_path / "ttyPTZ"), clock=clock) as head:
        yield head


@pytest.fixture
def head(sim: SimulatedHead) -> Iterator[PtzHead]:
    with PtzHead(sim.path, address=1) as h:
        yield h


def gotos(sim: SimulatedHead) -> list[int]:
    return [f.data2 for f in sim.received() if f.cmd2 == GO_TO_PRESET]


def test_each_command_puts_the_exact_pelco_d_bytes_on_the_wire(wire: Wire) -> None:
    with PtzHead(wire.line.path, address=1) as one, PtzHead(wire.line.path, address=2) as two:
        expected: list[tuple[Callable[[], None], str]] = [
            (lambda: one.goto(1), "FF 01 00 07 00 01 09"),
            (lambda: one.set_preset(1), "FF 01 00 03 00 01 05"),
            (lambda: one.clear_preset(1), "FF 01 00 05 00 01 07"),
            (lambda: one.stop(), "FF 01 00 00 00 00 01"),
            (lambda: one.pan_right(0x20), "FF 01 00 02 20 00 23"),
            (lambda: one.pan_left(0x3F), "FF 01 00 04 3F 00 44"),
            (lambda: two.tilt_up(0x3F), "FF 02 00 08 00 3F 49"),
            (lambda: two.tilt_down(1), "FF 02 00 10 00 01 13"),
            (lambda: one.zoom_in(), "FF 01 00 20 00 00 21"),
            (lambda: one.zoom_out(), "FF 01 00 40 00 00 41"),
            (lambda: one.move(pan=-16, tilt=8), "FF 01 00 0C 10 08 25"),
            (lambda: two.goto(255), "FF 02 00 07 00 FF 08"),
        ]
        for command, frame in expected:
            command()
            assert wire.bytes(7) == bytes.fromhex(frame)


def test_out_of_range_commands_are_refused_before_anything_is_sent(wire: Wire) -> None:
    with PtzHead(wire.line.path, address=1) as head:
        refused: list[Callable[[], None]] = [
            lambda: head.goto(0),
            lambda: head.set_preset(256),
            lambda: head.pan_left(64),
            lambda: head.tilt_up(0),
        ]
        for bad in refused:
            with pytest.raises(ValueError):
                bad()
        head.stop()
        assert wire.bytes(7) == bytes.fromhex("FF 01 00 00 00 00 01")
    with pytest.raises(ValueError, match="address"):
        PtzHead(wire.line.path, address=0)


def test_parser_recovers_frames_from_noise_cut_frames_and_bad_checksums() -> None:
    parser = FrameParser()
    goto1 = bytes.fromhex("FF 01 00 07 00 01 09")
    stop = bytes.fromhex("FF 01 00 00 00 00 01")
    bad = bytes.fromhex("FF 01 00 07 00 01 0A")
    stream = b"\x00\x13noise" + goto1 + bad + stop[:3]
    assert parser.feed(stream) == [Frame(1, 0, 7, 0, 1)]
    assert parser.feed(stop[3:] + b"\xff\xff") == [Frame(1, 0, 0, 0, 0)]
    assert (parser.frames_ok, parser.bad_checksum) == (2, 1)
    fed = len(stream) + len(stop) - 3 + 2
    assert 7 * parser.frames_ok + parser.garbage_bytes + parser.pending == fed


def test_a_frame_hiding_inside_a_bad_one_is_found() -> None:
    parser = FrameParser()
    # A sync byte lost its frame's tail; the next frame starts one byte later.
    stream = bytes.fromhex("FF 01") + bytes.fromhex("FF 01 00 07 00 01 09")
    assert parser.feed(stream) == [Frame(1, 0, 7, 0, 1)]
    assert parser.bad_checksum == 1


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_parser_fuzz_never_raises_and_accounts_for_every_byte(chunks: list[bytes]) -> None:
    parser = FrameParser()
    frames = [f for chunk in chunks for f in parser.feed(chunk)]
    assert len(frames) == parser.frames_ok
    total = sum(map(len, chunks))
    assert 7 * parser.frames_ok + parser.garbage_bytes + parser.pending == total
    assert parser.pending < 7
    # Whatever came before, a clean frame after it is read (junk can only delay it).
    frames = parser.feed(bytes.fromhex("FF 01 00 07 00 01 09") * 2)
    assert Frame(1, 0, 7, 0, 1) in frames


def test_head_moves_with_the_commands_and_the_time_they_run(
    sim: SimulatedHead, head: PtzHead, clock: ManualClock
) -> None:
    head.pan_right(10)
    wait_for(lambda: sim.state().frames_ok == 1, what="the pan command")
    clock.t += 3.0
    head.stop()
    wait_for(lambda: sim.state().frames_ok == 2, what="the stop")
    clock.t += 100.0
    state = sim.state()
    assert state.pan_deg == pytest.approx(30.0)
    assert not state.moving
    head.tilt_down(20)
    head.zoom_in()  # a new motion command replaces the tilt
    wait_for(lambda: sim.state().frames_ok == 4, what="tilt then zoom")
    clock.t += 1.0
    head.pan_left(40)
    wait_for(lambda: sim.state().frames_ok == 5, what="pan left")
    clock.t += 1.0
    head.stop()
    wait_for(lambda: sim.state().frames_ok == 6, what="the stop")
    state = sim.state()
    assert state.zoom == pytest.approx(6.0)
    assert state.tilt_deg == pytest.approx(0.0)
    assert state.pan_deg == pytest.approx(350.0)  # 30° less 40°, wrapped


def test_presets_are_stored_recalled_and_cleared(
    sim: SimulatedHead, head: PtzHead, clock: ManualClock
) -> None:
    head.set_preset(1)
    head.pan_right(45)
    wait_for(lambda: sim.state().frames_ok == 2, what="set preset, then pan")
    clock.t += 2.0
    head.stop()
    head.set_preset(2)
    head.goto(1)
    wait_for(lambda: sim.state().last_preset == 1, what="the head at preset 1")
    assert sim.state().pan_deg == pytest.approx(0.0)
    head.goto(2)
    wait_for(lambda: sim.state().last_preset == 2, what="the head at preset 2")
    assert sim.state().pan_deg == pytest.approx(90.0)
    head.clear_preset(2)
    head.goto(2)
    wait_for(lambda: sim.state().unknown_preset == 1, what="a go-to of a cleared preset")
    state = sim.state()
    assert sorted(state.presets) == [1]
    assert state.pan_deg == pytest.approx(90.0)  # did not move


def test_frames_for_another_head_and_line_noise_are_counted_not_obeyed(
    sim: SimulatedHead, head: PtzHead
) -> None:
    with PtzHead(sim.path, address=7) as other:
        other.pan_right(63)
    with serial.serial_for_url(sim.path) as port:
        port.write(b"\x00\x01noise" + bytes.fromhex("FF 01 00 02 3F 00 00"))
    head.goto(3)
    wait_for(lambda: sim.state().unknown_preset == 1, what="the go-to behind the noise")
    state = sim.state()
    assert (state.other_address, state.bad_checksum) == (1, 1)
    assert state.garbage_bytes >= 7
    assert not state.moving


def test_unplugged_adapter_raises_a_clear_error_and_the_head_reopens(
    sim: SimulatedHead, head: PtzHead
) -> None:
    head.goto(1)
    wait_for(lambda: len(gotos(sim)) == 1, what="the first go-to")
    sim.unplug()
    with pytest.raises(PtzError, match=r"PTZ head 1 on .*ttyPTZ.*adapter"):
        head.goto(2)
    with pytest.raises(PtzError, match="cannot open"):
        head.goto(2)
    sim.plug()
    head.goto(3)  # opens the port again by itself
    wait_for(lambda: gotos(sim) == [1, 3], what="the go-to after the replug")
    assert head.write_errors == 1


def test_patrol_walks_the_tour_in_order_round_and_round(sim: SimulatedHead) -> None:
    with PtzHead(sim.path, 1) as head, Patrol(head, [(1, 0.01), (2, 0.01), (3, 0.01)]) as patrol:
        wait_for(lambda: patrol.state.tours_completed >= 3, what="three tours")
    seen = gotos(sim)
    assert seen[:9] == [1, 2, 3] * 3
    assert patrol.state.errors == 0
    assert not patrol.state.running


def test_an_alert_takes_the_head_then_the_tour_resumes_where_it_left_off(
    sim: SimulatedHead, clock: ManualClock
) -> None:
    # Short dwells on a hand-moved clock: the patrol rechecks it often, moves only when told.
    # The clock moves only once the patrol shows the stop reached (its dwell then started).
    tour = [(1, 0.05), (2, 0.05), (3, 0.05)]
    with PtzHead(sim.path, 1) as head, Patrol(head, tour, clock=clock) as patrol:
        wait_for(lambda: patrol.state.current_preset == 1, what="the tour's first stop")
        clock.t += 0.05
        wait_for(lambda: patrol.state.current_preset == 2, what="the tour at its second stop")
        patrol.pause_for(9, 0.05)
        wait_for(lambda: patrol.state.current_preset == 9, what="the head at the alert preset")
        state = patrol.state
        assert (state.alert_preset, state.paused_until) == (9, clock.t + 0.05)
        clock.t += 0.05
        wait_for(lambda: patrol.state.current_preset == 2, what="the tour back at preset 2")
        wait_for(lambda: gotos(sim) == [1, 2, 9, 2], what="the head told to go back to 2")
        assert patrol.state.alert_preset is None
        assert patrol.state.paused_until is None
        clock.t += 0.05
        wait_for(lambda: gotos(sim) == [1, 2, 9, 2, 3], what="the tour going on")


def test_a_second_alert_extends_the_pause_and_may_move_the_head(
    sim: SimulatedHead, clock: ManualClock
) -> None:
    with PtzHead(sim.path, 1) as head, Patrol(head, [(1, 10.0)], clock=clock) as patrol:
        wait_for(lambda: gotos(sim) == [1], what="the tour's first stop")
        patrol.pause_for(7, 30.0)
        wait_for(lambda: gotos(sim) == [1, 7], what="the alert preset")
        assert patrol.state.paused_until == clock.t + 30.0
        clock.t += 10.0
        patrol.pause_for(7, 5.0)  # would end sooner: the pause stays as it was
        assert patrol.state.paused_until == clock.t + 20.0
        patrol.pause_for(7, 40.0)
        assert patrol.state.paused_until == clock.t + 40.0
        patrol.pause_for(8, 1.0)
        wait_for(lambda: gotos(sim) == [1, 7, 8], what="the second alert's preset")
        assert patrol.state.alert_preset == 8
        assert patrol.state.paused_until == clock.t + 40.0


def test_patrol_survives_a_pulled_adapter_and_carries_on_when_it_is_back(
    sim: SimulatedHead,
) -> None:
    with (
        PtzHead(sim.path, 1) as head,
        Patrol(head, [(1, 0.01), (2, 0.01)], retry_min_s=0.01, retry_max_s=0.05) as patrol,
    ):
        wait_for(lambda: patrol.state.tours_completed >= 1, what="a first tour")
        sim.unplug()
        wait_for(lambda: patrol.state.errors >= 3, what="failed go-tos while unplugged")
        state = patrol.state
        assert state.running
        assert state.last_error is not None and "ttyPTZ" in state.last_error
        before = len(gotos(sim))
        done = state.tours_completed
        sim.plug()
        wait_for(lambda: patrol.state.tours_completed >= done + 2, what="tours after replug")
        assert len(gotos(sim)) > before
