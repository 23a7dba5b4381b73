"""The node's health verdict as a crew reads it: ok on a cool, synchronised Pi; degraded with
reasons for heat, a weak supply, throttling, a filling disk, a worn card, an unsynchronised
clock or a device down; failed when it cannot do its job. Readings come from hand-made
values and from the board trees in tests/fixtures/platform/; the clock's state from the
kernel's word and the cabinet's GPS."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.pole import Health
from drivers.platform import ClockSync, Disk, Platform, PlatformReader, Throttle, Wear
from edge import clock
from edge.clock import SyncState, sync_state, use_gps
from edge.config.pole import HealthSection
from edge.health.assess import assess, flags, platform_stats

TREES = Path(__file__).parent.parent / "fixtures" / "platform"
CFG = HealthSection()  # warn at 80 °C, fail at 90 °C; disk warn below 10 %, fail below 2 %
SYNCED = SyncState(True, "ntp", None)
UNSYNCED = SyncState(False, "none", None)
GIB = 1024**3
ROOMY = Disk("/var/lib/edge", 100 * GIB, 60 * GIB)
CALM = Throttle.from_word(0)


def pi(**changes: Any) -> Platform:
    """A cool Pi 4 with a roomy data disk and a healthy eMMC; `changes` replace fields."""
    base = Platform(
        soc_temp_c=52.0, throttle=CALM, disk=ROOMY, wear=Wear("mmcblk0", 10, "normal"),
        clock=ClockSync(True, "chrony", 0.01), uptime_s=3600.0, load=(0.2, 0.3, 0.3),
        mem_total_bytes=4 * GIB, mem_available_bytes=3 * GIB, missing=())
    return dataclasses.replace(base, **changes)


def free(pct: float) -> Disk:
    total = 100 * GIB
    return Disk("/var/lib/edge", total, round(total * pct / 100))


def board(layout: str, root: Path | None = None) -> Platform:
    """A fixture board read whole, its data disk swapped for a roomy one: the build
    machine's own free space must not decide the verdict."""
    reader = PlatformReader(Path("/"), root=root or TREES / layout, wear_device="mmcblk0",
                            adjtimex=lambda: (True, 0.1))
    return dataclasses.replace(reader.read(), disk=ROOMY)


@pytest.fixture(autouse=True)
def _no_gps() -> Iterator[None]:
    yield
    use_gps(None)  # the one clock is module state: leave it as every other test expects


# --- ok --------------------------------------------------------------------------------


def test_a_cool_synchronised_pi_with_room_on_its_disk_is_ok() -> None:
    assert assess(CFG, pi(), SYNCED) == Health(state="ok", reasons=[])


@pytest.mark.parametrize("layout", ["pi4-debian", "pi5-raspios", "cm4-emmc"])
def test_each_healthy_board_layout_is_ok(layout: str) -> None:
    assert assess(CFG, board(layout), SYNCED) == Health(state="ok", reasons=[])


def test_a_build_machine_with_nothing_pi_specific_gets_no_pi_reasons() -> None:
    x86 = board("x86")
    assert x86.throttle is None and x86.wear is None
    assert "throttle" in x86.missing and "wear" in x86.missing
    assert assess(CFG, x86, SYNCED) == Health(state="ok", reasons=[])


# --- degraded --------------------------------------------------------------------------


def test_a_hot_soc_is_degraded_from_the_warning_threshold_on() -> None:
    assert assess(CFG, pi(soc_temp_c=79.9), SYNCED).state == "ok"
    assert assess(CFG, pi(soc_temp_c=80.0), SYNCED) == Health(
        state="degraded", reasons=["SoC hot, over 80 °C"])
    # the reason names the threshold, not the reading, so it holds still while it lasts
    assert assess(CFG, pi(soc_temp_c=86.4), SYNCED).reasons == ["SoC hot, over 80 °C"]


def test_a_weak_supply_now_on_the_raspberry_pi_os_board_names_the_power_supply() -> None:
    # get_throttled 0x50005: under-voltage and throttled now, and both since boot.
    weak = board("pi4-raspios")
    assert weak.throttle is not None and weak.throttle.raw == 0x50005
    assert assess(CFG, weak, SYNCED) == Health(
        state="degraded",
        reasons=["under-voltage now: check the power supply", "CPU throttled now"])


def test_under_voltage_since_boot_only_is_told_apart_from_under_voltage_now() -> None:
    since_boot = pi(throttle=Throttle.from_word(0x10000))
    assert assess(CFG, since_boot, SYNCED) == Health(
        state="degraded", reasons=["under-voltage since boot: check the power supply"])
    both = pi(throttle=Throttle.from_word(0x10001))
    assert assess(CFG, both, SYNCED).reasons == ["under-voltage now: check the power supply"]


@pytest.mark.parametrize("word", [0x2, 0x4, 0x8], ids=["freq_capped", "throttled", "soft_limit"])
def test_any_throttling_now_is_one_reason(word: int) -> None:
    assert assess(CFG, pi(throttle=Throttle.from_word(word)), SYNCED) == Health(
        state="degraded", reasons=["CPU throttled now"])


def test_throttling_that_is_over_leaves_the_pi_ok() -> None:
    # Capped, throttled and soft-limited since boot, none now: only under-voltage is news.
    assert assess(CFG, pi(throttle=Throttle.from_word(0xE0000)), SYNCED).state == "ok"


def test_the_mainline_kernels_undervoltage_alarm_alone_is_read_as_now() -> None:
    alarm = Throttle(True, False, False, False, False, False, False, False,
                     raw=None, source="hwmon")
    assert assess(CFG, pi(throttle=alarm), SYNCED).reasons == [
        "under-voltage now: check the power supply"]


def test_a_data_disk_below_the_warning_is_degraded() -> None:
    assert assess(CFG, pi(disk=free(10.0)), SYNCED).state == "ok"
    assert assess(CFG, pi(disk=free(6.0)), SYNCED) == Health(
        state="degraded", reasons=["data disk low, under 10 % free"])
    assert assess(CFG, pi(disk=free(5.0)), SYNCED).reasons == ["data disk low, under 10 % free"]


def test_a_disk_that_reports_no_size_is_not_judged() -> None:
    assert assess(CFG, pi(disk=Disk("/data", 0, 0)), SYNCED).state == "ok"
    assert assess(CFG, pi(disk=None), SYNCED).state == "ok"


def test_the_cm4s_emmc_past_the_wear_threshold_is_a_worn_card() -> None:
    emmc = board("cm4-emmc")
    assert emmc.wear == Wear("mmcblk0", 20, "normal")
    assert assess(CFG, emmc, SYNCED).state == "ok"
    strict = HealthSection(wear_warn_pct=20)
    assert assess(strict, emmc, SYNCED) == Health(
        state="degraded", reasons=["card mmcblk0 worn, 20 % of life used"])


def test_an_emmc_using_its_spare_blocks_is_near_end_of_life(tmp_path: Path) -> None:
    root = tmp_path / "cm4-emmc"
    shutil.copytree(TREES / "cm4-emmc", root, symlinks=True)
    (root / "sys/block/mmcblk0/device/pre_eol_info").write_text("0x02\n")
    assert assess(CFG, board("cm4-emmc", root), SYNCED) == Health(
        state="degraded", reasons=["card mmcblk0 near end of life (warning)"])


def test_a_card_both_worn_and_near_end_of_life_gives_both_reasons() -> None:
    card = pi(wear=Wear("mmcblk0", 90, "urgent"))
    assert assess(CFG, card, SYNCED).reasons == [
        "card mmcblk0 worn, 90 % of life used", "card mmcblk0 near end of life (urgent)"]
    assert assess(CFG, pi(wear=Wear("mmcblk0", None, None)), SYNCED).state == "ok"


def test_an_unsynchronised_clock_is_degraded() -> None:
    assert assess(CFG, pi(), UNSYNCED) == Health(
        state="degraded", reasons=["clock not synchronised"])
    assert assess(CFG, pi(), SyncState(True, "gps", 0.3)).state == "ok"


def test_the_cabinets_problems_follow_the_platforms_reasons() -> None:
    got = assess(CFG, pi(soc_temp_c=82.0), UNSYNCED,
                 problems=["on battery (ups_on_battery)", "camera gate offline"])
    assert got == Health(state="degraded", reasons=[
        "SoC hot, over 80 °C", "clock not synchronised", "on battery (ups_on_battery)",
        "camera gate offline"])


# --- failed ----------------------------------------------------------------------------


def test_a_soc_at_the_failure_limit_has_failed() -> None:
    assert assess(CFG, pi(soc_temp_c=90.0), SYNCED) == Health(
        state="failed", reasons=["SoC over 90 °C"])


def test_a_full_data_disk_has_failed() -> None:
    assert assess(CFG, pi(disk=free(2.0)), SYNCED).state == "degraded"
    assert assess(CFG, pi(disk=free(1.5)), SYNCED) == Health(
        state="failed", reasons=["data disk full, under 2 % free"])


def test_a_failure_comes_first_and_the_degraded_reasons_are_still_listed() -> None:
    weak_and_hot = board("pi4-raspios")
    weak_and_hot = dataclasses.replace(weak_and_hot, soc_temp_c=93.0, disk=free(1.0))
    got = assess(CFG, weak_and_hot, UNSYNCED, failures=["Modbus poll thread died"],
                 problems=["GPS silent"])
    assert got == Health(state="failed", reasons=[
        "Modbus poll thread died",
        "SoC over 90 °C",
        "data disk full, under 2 % free",
        "under-voltage now: check the power supply",
        "CPU throttled now",
        "clock not synchronised",
        "GPS silent",
    ])


def test_a_failure_alone_fails_a_healthy_pi() -> None:
    assert assess(CFG, pi(), SYNCED, failures=["outbox not writable"]) == Health(
        state="failed", reasons=["outbox not writable"])


# --- no platform reading ---------------------------------------------------------------


def test_without_a_platform_reading_the_clock_and_problems_still_decide() -> None:
    assert assess(CFG, None, SYNCED) == Health(state="ok", reasons=[])
    assert assess(CFG, None, UNSYNCED, problems=["PTZ head: port gone"]) == Health(
        state="degraded", reasons=["clock not synchronised", "PTZ head: port gone"])
    assert assess(CFG, None, SYNCED, failures=["GPS reader thread died"]).state == "failed"


# --- the clock's state -----------------------------------------------------------------


def test_gps_agreeing_with_an_unsynchronised_kernel_vouches_for_the_clock(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "clock_synced", lambda: False)
    use_gps(lambda: 0.3)
    assert sync_state() == SyncState(True, "gps", 0.3)
    use_gps(lambda: -0.99996)
    assert sync_state() == SyncState(True, "gps", -1.0)  # rounded to the millisecond


def test_gps_seconds_away_leaves_the_clock_unsynchronised_with_its_offset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "clock_synced", lambda: False)
    use_gps(lambda: 5.0)
    assert sync_state() == SyncState(False, "none", 5.0)
    use_gps(lambda: None)  # a receiver without a fresh RMC
    assert sync_state() == SyncState(False, "none", None)


def test_without_gps_the_kernel_alone_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    use_gps(None)
    monkeypatch.setattr(clock, "clock_synced", lambda: False)
    assert sync_state() == SyncState(False, "none", None)
    monkeypatch.setattr(clock, "clock_synced", lambda: True)
    assert sync_state() == SyncState(True, "ntp", None)


def test_a_synchronised_kernel_wins_and_still_reports_the_gps_offset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock, "clock_synced", lambda: True)
    use_gps(lambda: 5.0)
    assert sync_state() == SyncState(True, "ntp", 5.0)


# --- telemetry -------------------------------------------------------------------------


def test_platform_stats_carry_the_reading_the_flags_and_the_clock() -> None:
    weak = board("pi4-raspios")
    stats = platform_stats(weak, SyncState(True, "gps", 0.25))
    assert stats.soc_temp_c == 61.8
    assert stats.throttled == ["under_voltage", "throttled"]
    assert stats.throttled_since_boot == ["under_voltage", "throttled"]
    assert (stats.disk_free_bytes, stats.disk_total_bytes) == (60 * GIB, 100 * GIB)
    assert (stats.wear_used_pct, stats.wear_pre_eol) == (None, None)
    assert (stats.clock_synced, stats.clock_source, stats.clock_offset_s) == (True, "gps", 0.25)
    assert stats.clock_daemon == "timesyncd"
    assert stats.system_uptime_s == 3620.2  # 3620.17 s, to a tenth
    assert stats.load == weak.load
    assert stats.mem_total_bytes == weak.mem_total_bytes
    assert stats.mem_available_bytes == weak.mem_available_bytes
    assert stats.missing == list(weak.missing)


def test_platform_stats_of_an_emmc_board_and_a_bare_reading() -> None:
    stats = platform_stats(board("cm4-emmc"), SYNCED)
    assert (stats.wear_used_pct, stats.wear_pre_eol) == (20, "normal")
    assert stats.clock_daemon == "chrony" and stats.throttled == []
    bare = Platform(None, None, None, None, ClockSync(False, None, None), None, None, None,
                    None, ("soc_temp", "throttle", "wear", "clock"))
    stats = platform_stats(bare, UNSYNCED)
    assert stats.soc_temp_c is None and stats.disk_free_bytes is None
    assert stats.throttled == [] and stats.throttled_since_boot == []
    assert (stats.clock_synced, stats.clock_source) == (False, "none")
    assert stats.missing == ["soc_temp", "throttle", "wear", "clock"]


def test_flags_name_each_firmware_bit_now_or_since_boot() -> None:
    every = Throttle.from_word(0xF000F)
    names = ["under_voltage", "freq_capped", "throttled", "soft_temp_limit"]
    assert flags(every, since_boot=False) == names
    assert flags(every, since_boot=True) == names
    past = Throttle.from_word(0xA0000)  # capped and soft-limited since boot, nothing now
    assert flags(past, since_boot=False) == []
    assert flags(past, since_boot=True) == ["freq_capped", "soft_temp_limit"]
    assert flags(None, since_boot=True) == []
