"""The GPS receiver over a real pty: the fix and the clock offset read from the simulated
talker, noise and damaged sentences skipped and counted, the receiver pulled out and back."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devkit.simulators.gps import ZHYTOMYR, GpsSimulator, gga, rmc
from drivers.gps import GpsReader, NmeaDecoder
from tests.support.waiting import wait_for

# A thread that dies of an exception fails the test: drivers must count faults, not raise them.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

NOON = datetime(2026, 3, 14, 12, 35, 19, 250_000, tzinfo=UTC)


def nmea(body: str) -> bytes:
    """A sentence with its checksum, worked out here independently of the simulator."""
    value = 0
    for char in body:
        value ^= ord(char)
    return f"${body}*{value:02X}\r\n".encode()


@pytest.fixture
def gps(tmp_path: Path) -> Iterator[GpsSimulator]:
    with GpsSimulator(rate_hz=20, link=str(tmp_path / "ttyGPS")) as sim:
        yield sim


@pytest.fixture
def reader(gps: GpsSimulator) -> Iterator[GpsReader]:
    with GpsReader(gps.path, stale_after_s=2.0, reconnect_min_s=0.01,
                   reconnect_max_s=0.05) as r:
        yield r


def test_simulator_sends_byte_exact_gga_and_rmc() -> None:
    lat, lon = ZHYTOMYR
    assert gga(NOON, lat, lon) == nmea(
        "GPGGA,123519.25,5015.2820,N,02839.5220,E,1,09,0.9,221.0,M,27.9,M,,")
    assert rmc(NOON, lat, lon) == nmea(
        "GPRMC,123519.25,A,5015.2820,N,02839.5220,E,0.00,0.00,140326,,,A")
    assert gga(NOON, -33.8568, -151.2153, fix=False) == nmea("GPGGA,123519.25,,,,,0,09,,,M,,M,,")
    assert rmc(NOON, lat, lon, fix=False) == nmea("GPRMC,123519.25,V,,,,,,,140326,,,N")
    assert gga(NOON, -33.8568, -151.2153)[17:45] == b"3351.4080,S,15112.9180,W,1,0"


def test_decoder_reads_the_textbook_sentences() -> None:
    decoder = NmeaDecoder()
    decoder.feed(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n"
                 b"$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47\r\n",
                 now=10.0, wall=764_426_119.0)
    fix = decoder.fix(now=12.5)
    assert fix is not None
    assert fix.latitude == pytest.approx(48.1173)
    assert fix.longitude == pytest.approx(11.516667)
    assert (fix.quality, fix.satellites, fix.hdop, fix.altitude_m) == (1, 8, 0.9, 545.4)
    assert fix.utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=UTC)
    assert fix.age_s == 2.5
    assert decoder.clock_offset_s(now=11.0, max_age_s=5) == pytest.approx(0.0)
    assert decoder.clock_offset_s(now=16.0, max_age_s=5) is None
    assert decoder.sentences == 2


def test_decoder_skips_and_counts_what_is_not_a_good_sentence() -> None:
    decoder = NmeaDecoder()
    good = gga(NOON, *ZHYTOMYR)
    wrong = good[:-4] + (b"11" if good[-4:-2] == b"00" else b"00") + b"\r\n"
    decoder.feed(b"\x00\xffnoise\r\n"  # noise: 7 bytes
                 + good[:30] + good  # a sentence cut short by the next one
                 + wrong  # wrong checksum
                 + b"$GPGGA,12x519,5015.28,N\r\n"  # truncated: no checksum
                 + nmea("GPGGA,abc,zz,N,yy,E,1,08,0.9,1,M,1,M,,")  # fields that make no sense
                 + nmea("GPGSV,1,1,01,12,40,083,46"),  # valid, not needed
                 now=1.0, wall=0.0)
    assert decoder.garbage_bytes == 7
    assert decoder.partial == 2
    assert decoder.bad_checksum == 1
    assert decoder.unparsed == 1
    assert (decoder.sentences, decoder.ignored) == (2, 1)
    assert decoder.fix(1.0) is not None


def test_a_long_run_of_noise_does_not_grow_the_buffer_or_hide_the_next_sentence() -> None:
    decoder = NmeaDecoder()
    decoder.feed(b"x" * 5000, now=0.0, wall=0.0)
    decoder.feed(b"$GP" + b"y" * 300 + gga(NOON, *ZHYTOMYR)[:20], now=0.0, wall=0.0)
    assert decoder.pending <= 120
    decoder.feed(gga(NOON, *ZHYTOMYR)[20:], now=0.0, wall=0.0)
    assert decoder.sentences == 1
    assert decoder.garbage_bytes >= 5000


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=6))
def test_decoder_fuzz_bytes_never_raise_and_a_good_sentence_still_gets_through(
    chunks: list[bytes],
) -> None:
    decoder = NmeaDecoder()
    for chunk in chunks:
        decoder.feed(chunk, now=0.0, wall=0.0)
    assert decoder.pending <= 120
    counts = (decoder.sentences, decoder.bad_checksum, decoder.partial, decoder.garbage_bytes,
              decoder.unparsed, decoder.ignored)
    assert min(counts) >= 0
    before = decoder.sentences
    decoder.feed(b"\r\n" + gga(NOON, *ZHYTOMYR), now=1.0, wall=0.0)
    assert decoder.sentences == before + 1
    fix = decoder.fix(1.0)
    assert fix is not None and fix.latitude == pytest.approx(ZHYTOMYR[0], abs=1e-5)


FIELD = st.text(alphabet="0123456789.-+NSEWAVMe", max_size=12)


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(["GPGGA", "GPRMC", "GNGGA", "GNRMC", "GPGSA", "GPGSV", "PUBX", "PGRME"]),
       st.lists(FIELD, max_size=16))
def test_decoder_fuzz_well_framed_sentences_with_any_fields_never_raise(
    kind: str, fields: list[str],
) -> None:
    decoder = NmeaDecoder()
    decoder.feed(nmea(",".join([kind, *fields])), now=0.0, wall=0.0)
    assert decoder.sentences + decoder.unparsed == 1
    assert decoder.bad_checksum == decoder.partial == decoder.garbage_bytes == 0
    fix = decoder.fix(0.0)
    if fix is not None:
        assert abs(fix.latitude) <= 90 and abs(fix.longitude) <= 180


def test_reader_reports_the_pole_position_and_time(
    gps: GpsSimulator, reader: GpsReader
) -> None:
    wait_for(lambda: reader.state == "fix", what="a fix")
    fix = reader.fix
    assert fix is not None
    assert fix.latitude == pytest.approx(50.2547, abs=1e-5)
    assert fix.longitude == pytest.approx(28.6587, abs=1e-5)
    assert (fix.quality, fix.satellites, fix.hdop, fix.altitude_m) == (1, 9, 0.9, 221.0)
    assert fix.utc is not None and fix.utc.tzinfo is not None
    assert fix.age_s >= 0
    wait_for(lambda: reader.clock_offset_s is not None, what="a clock offset")
    stats = reader.stats
    assert stats.bad_checksum == stats.partial == stats.unparsed == 0
    assert stats.sentences > 0


def test_clock_offset_shows_a_node_clock_an_hour_off(
    tmp_path: Path
) -> None:
    def ahead() -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)

    with (
        GpsSimulator(rate_hz=20, utc=ahead) as gps,
        GpsReader(gps.path) as reader,
    ):
        offset = wait_for(lambda: reader.clock_offset_s, what="a clock offset")
    # Generous: only the size of the error matters, not the line's delay.
    assert offset == pytest.approx(3600, abs=30)


def test_noise_and_damaged_sentences_are_counted_and_the_fix_goes_on(
    gps: GpsSimulator, reader: GpsReader
) -> None:
    wait_for(lambda: reader.state == "fix", what="a fix")
    before = reader.stats
    gps.inject(b"\x00\xffnoise\r\n")
    gps.corrupt_next(2)
    gps.cut_next(1)
    wait_for(lambda: reader.stats.sentences >= before.sentences + 6, what="sentences after")
    after = reader.stats
    assert after.garbage_bytes - before.garbage_bytes == 7
    assert after.bad_checksum - before.bad_checksum == 2
    assert after.partial - before.partial == 1
    assert after.state == "fix"


def test_lost_fix_keeps_the_last_position_and_says_so(
    gps: GpsSimulator, reader: GpsReader
) -> None:
    wait_for(lambda: reader.state == "fix", what="a fix")
    gps.set_fix(False)
    wait_for(lambda: reader.state == "no_fix", what="the fix lost")
    fix = reader.fix
    assert fix is not None and fix.latitude == pytest.approx(50.2547, abs=1e-5)
    assert reader.stats.quality == 0
    gps.move_to(49.71, 28.83)
    gps.set_fix(True)
    wait_for(lambda: reader.fix is not None and reader.fix.latitude == pytest.approx(49.71),
             what="the new position")
    assert reader.state == "fix"


def test_a_receiver_gone_quiet_is_reported_silent(
    gps: GpsSimulator
) -> None:
    with GpsReader(gps.path, stale_after_s=0.3) as reader:
        wait_for(lambda: reader.state == "fix", what="a fix")
        gps.set_talking(False)
        wait_for(lambda: reader.state == "silent", what="silence noticed")
        gps.set_talking(True)
        wait_for(lambda: reader.state == "fix", what="the receiver back")


def test_receiver_unplugged_goes_offline_and_comes_back_on_a_new_pty(
    gps: GpsSimulator, reader: GpsReader
) -> None:
    wait_for(lambda: reader.state == "fix", what="a fix")
    gps.unplug()
    wait_for(lambda: reader.state == "offline", what="the reader offline")
    wait_for(lambda: reader.stats.reconnect_attempts >= 3, what="reconnect attempts")
    stats = reader.stats
    assert stats.disconnects == 1
    assert stats.last_error is not None and "ttyGPS" in stats.last_error
    assert reader.fix is not None  # the last known position is still there
    gps.plug()
    wait_for(lambda: reader.state == "fix", what="the fix back")
    assert reader.stats.disconnects == 1


def test_reader_started_before_the_receiver_exists_waits_for_it(
    tmp_path: Path
) -> None:
    link = tmp_path / "ttyGPS"
    with GpsReader(str(link), reconnect_min_s=0.01, reconnect_max_s=0.05) as reader:
        wait_for(lambda: reader.stats.reconnect_attempts >= 2, what="attempts at opening")
        assert reader.state == "offline"
        assert reader.fix is None and reader.clock_offset_s is None
        with GpsSimulator(rate_hz=20, link=str(link)):
            wait_for(lambda: reader.state == "fix", what="a fix once the receiver appears")
