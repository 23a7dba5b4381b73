"""The controller's health as the platform reader sees it on each board layout (trees under
tests/fixtures/platform/), with junk in the files, with nothing there, and on this machine."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.platform import (
    ClockSync,
    Disk,
    Platform,
    PlatformReader,
    Throttle,
    Wear,
    adjtimex,
)
from edge import clock

TREES = Path(__file__).parent.parent / "fixtures" / "platform"
SYNCED = (True, 0.012)
NONE = Throttle(False, False, False, False, False, False, False, False, raw=0,
                source="firmware")


def read(root: Path, data_dir: Path, wear_device: str | None = "mmcblk0") -> Platform:
    reader = PlatformReader(data_dir, root=root, wear_device=wear_device, adjtimex=lambda: SYNCED)
    return reader.read()


def without_disk(platform: Platform) -> Platform:
    return dataclasses.replace(platform, disk=None)


def copy_tree(layout: str, tmp_path: Path) -> Path:
    root = tmp_path / layout
    shutil.copytree(TREES / layout, root, symlinks=True)
    return root


def put(root: Path, relative: str, text: str) -> None:
    """Overwrite one file of a copied tree (through its sysfs symlinks, as the kernel would)."""
    (root / relative).write_text(text)


# --- each layout, read whole --------------------------------------------------------------

def test_a_pi_4_on_debian_reads_the_mainline_undervoltage_alarm_and_no_sd_card_wear(
        tmp_path: Path) -> None:
    got = read(TREES / "pi4-debian", tmp_path)
    assert without_disk(got) == Platform(
        soc_temp_c=47.712,
        throttle=Throttle(False, False, False, False, False, False, False, False,
                          raw=None, source="hwmon"),
        disk=None,
        wear=None,
        clock=ClockSync(synced=True, daemon="chrony", max_error_s=0.012),
        uptime_s=86400.52,
        load=(0.31, 0.42, 0.40),
        mem_total_bytes=3884096 * 1024,
        mem_available_bytes=3301244 * 1024,
        missing=("wear",),
    )


def test_a_pi_on_a_weak_supply_reports_under_voltage_now_and_since_boot(tmp_path: Path) -> None:
    got = read(TREES / "pi4-raspios", tmp_path)
    assert without_disk(got) == Platform(
        soc_temp_c=61.835,
        throttle=Throttle(under_voltage=True, freq_capped=False, throttled=True,
                          soft_temp_limit=False, under_voltage_occurred=True,
                          freq_capped_occurred=False, throttled_occurred=True,
                          soft_temp_limit_occurred=False, raw=0x50005, source="firmware"),
        disk=None,
        wear=None,
        clock=ClockSync(synced=True, daemon="timesyncd", max_error_s=0.012),
        uptime_s=3620.17,
        load=(2.61, 1.94, 1.20),
        mem_total_bytes=1892772 * 1024,
        mem_available_bytes=1251840 * 1024,
        missing=("wear",),
    )


def test_a_pi_5_finds_get_throttled_under_its_own_soc_path(tmp_path: Path) -> None:
    got = read(TREES / "pi5-raspios", tmp_path)
    assert without_disk(got) == Platform(
        soc_temp_c=52.15,
        throttle=NONE,
        disk=None,
        wear=None,
        clock=ClockSync(synced=True, daemon="timesyncd", max_error_s=0.012),
        uptime_s=604800.0,
        load=(0.08, 0.12, 0.09),
        mem_total_bytes=8245872 * 1024,
        mem_available_bytes=7698304 * 1024,
        missing=("wear",),
    )


def test_a_cm4_reports_its_emmc_wear_as_the_worse_estimate_upper_bound(tmp_path: Path) -> None:
    got = read(TREES / "cm4-emmc", tmp_path)
    assert without_disk(got) == Platform(
        soc_temp_c=55.017,
        throttle=NONE,
        disk=None,
        wear=Wear(device="mmcblk0", life_used_pct=20, pre_eol="normal"),
        clock=ClockSync(synced=True, daemon="chrony", max_error_s=0.012),
        uptime_s=1209600.44,
        load=(1.02, 0.97, 0.91),
        mem_total_bytes=3884096 * 1024,
        mem_available_bytes=2905540 * 1024,
        missing=(),
    )


def test_a_build_machine_reads_the_cpu_package_zone_and_has_no_pi_parts(tmp_path: Path) -> None:
    got = read(TREES / "x86", tmp_path, wear_device="nvme0n1")
    assert without_disk(got) == Platform(
        soc_temp_c=45.0,
        throttle=None,
        disk=None,
        wear=None,
        clock=ClockSync(synced=True, daemon=None, max_error_s=0.012),
        uptime_s=5400.90,
        load=(3.15, 2.80, 2.41),
        mem_total_bytes=16166628 * 1024,
        mem_available_bytes=11020480 * 1024,
        missing=("throttle", "wear"),
    )


def test_an_empty_tree_gives_none_everywhere_and_says_what_is_missing(tmp_path: Path) -> None:
    root = tmp_path / "nothing"
    root.mkdir()
    got = PlatformReader(tmp_path, root=root, adjtimex=lambda: (False, None)).read()
    assert without_disk(got) == Platform(
        soc_temp_c=None, throttle=None, disk=None, wear=None,
        clock=ClockSync(synced=False, daemon=None, max_error_s=None),
        uptime_s=None, load=None, mem_total_bytes=None, mem_available_bytes=None,
        missing=("soc_temp", "throttle", "wear", "clock", "uptime", "load",
                 "mem_total", "mem_available"),
    )
    assert got.disk is not None  # data_dir is real, not under root


# --- get_throttled ------------------------------------------------------------------------

BITS = {
    "under_voltage": 0, "freq_capped": 1, "throttled": 2, "soft_temp_limit": 3,
    "under_voltage_occurred": 16, "freq_capped_occurred": 17, "throttled_occurred": 18,
    "soft_temp_limit_occurred": 19,
}


@pytest.mark.parametrize("flag", BITS)
def test_each_throttle_bit_sets_exactly_its_own_flag(flag: str) -> None:
    throttle = Throttle.from_word(1 << BITS[flag])
    assert {f for f in BITS if getattr(throttle, f)} == {flag}


@given(st.integers(min_value=0, max_value=0xFFFF_FFFF))
def test_any_firmware_word_decodes_bit_by_bit(word: int) -> None:
    throttle = Throttle.from_word(word)
    assert throttle.raw == word and throttle.source == "firmware"
    for flag, bit in BITS.items():
        assert getattr(throttle, flag) == bool(word & (1 << bit))


@given(st.integers(min_value=0, max_value=0xFFFF_FFFF), st.booleans())
def test_any_word_in_the_sysfs_file_reads_back_as_itself(
        tmp_path_factory: pytest.TempPathFactory, word: int, prefixed: bool) -> None:
    root = tmp_path_factory.mktemp("pi5")
    shutil.copytree(TREES / "pi5-raspios", root, symlinks=True, dirs_exist_ok=True)
    put(root, "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
        f"{'0x' if prefixed else ''}{word:x}\n")
    assert read(root, root).throttle == Throttle.from_word(word)


def test_a_junk_get_throttled_falls_back_to_the_hwmon_alarm_and_says_why(tmp_path: Path) -> None:
    root = copy_tree("pi4-raspios", tmp_path)
    put(root, "sys/devices/platform/soc/soc:firmware/get_throttled", "zz\n")
    got = read(root, tmp_path)
    assert got.throttle == Throttle(True, False, False, False, False, False, False, False,
                                    raw=None, source="hwmon")
    assert "throttle: unreadable 'zz'" in got.missing


def test_the_hwmon_alarm_raised_reports_under_voltage_only(tmp_path: Path) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    put(root, "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "1\n")
    assert read(root, tmp_path).throttle == Throttle(
        True, False, False, False, False, False, False, False, raw=None, source="hwmon")


# --- junk in the files --------------------------------------------------------------------

# Empty, not a number, negative, huge, written the way int()/float() would still take.
JUNK = ["", "xyz", "-99999999", "99999999999999999999999", "1.5e9", "1_0", "nan", "\x00\xff"]
FILES = [  # layout, file, the field it feeds, its label in `missing`
    ("pi4-debian", "sys/class/thermal/thermal_zone0/temp", "soc_temp_c", "soc_temp"),
    ("pi4-debian", "sys/class/hwmon/hwmon1/in0_lcrit_alarm", "throttle", "throttle"),
    ("pi5-raspios", "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
     "throttle", "throttle"),
    ("pi4-debian", "proc/uptime", "uptime_s", "uptime"),
    ("pi4-debian", "proc/loadavg", "load", "load"),
]


@pytest.mark.parametrize("junk", JUNK)
@pytest.mark.parametrize(("layout", "file", "field", "label"), FILES)
def test_junk_in_a_file_is_none_with_a_reason_never_an_exception(
        tmp_path: Path, layout: str, file: str, field: str, label: str, junk: str) -> None:
    root = copy_tree(layout, tmp_path)
    put(root, file, junk)
    got = read(root, tmp_path)
    assert getattr(got, field) is None
    assert [m for m in got.missing if m.startswith(f"{label}: unreadable ")]


@pytest.mark.parametrize("junk", JUNK)
def test_junk_in_meminfo_spoils_only_the_line_it_is_on(tmp_path: Path, junk: str) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    put(root, "proc/meminfo", f"MemTotal: {junk}\nMemAvailable:    3301244 kB\n")
    got = read(root, tmp_path)
    assert got.mem_total_bytes is None and got.mem_available_bytes == 3301244 * 1024
    assert [m for m in got.missing if m.startswith("mem_total: unreadable ")]


def test_a_kernel_without_memavailable_reports_only_the_total(tmp_path: Path) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    put(root, "proc/meminfo", "MemTotal:        3884096 kB\nMemFree:         2716532 kB\n")
    got = read(root, tmp_path)
    assert (got.mem_total_bytes, got.mem_available_bytes) == (3884096 * 1024, None)
    assert got.missing == ("wear", "mem_available")


@pytest.mark.parametrize("celsius", ["-61000", "151000"])
def test_a_temperature_no_soc_could_have_is_junk(tmp_path: Path, celsius: str) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    put(root, "sys/class/thermal/thermal_zone0/temp", celsius)
    assert read(root, tmp_path).soc_temp_c is None


def test_a_pole_in_winter_reads_below_zero(tmp_path: Path) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    put(root, "sys/class/thermal/thermal_zone0/temp", "-12500\n")
    assert read(root, tmp_path).soc_temp_c == -12.5


def test_a_sensor_that_cannot_be_read_is_a_reason_not_a_crash(tmp_path: Path) -> None:
    root = copy_tree("pi4-debian", tmp_path)
    temp = root / "sys/class/thermal/thermal_zone0/temp"
    temp.unlink()
    temp.mkdir()  # open() fails with EISDIR, standing in for EIO/ENODATA from a sensor
    got = read(root, tmp_path)
    assert got.soc_temp_c is None
    assert "soc_temp: Is a directory" in got.missing


# --- wear ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("life_time", "pct"), [
    ("0x01 0x01", 10), ("0x02 0x01", 20), ("0x01 0x07", 70), ("0x0a 0x03", 100),
    ("0x0B 0x01", 110), ("0x00 0x05", 50), ("0x00 0x00", None),
])
def test_life_used_is_the_upper_bound_of_the_worse_estimate(
        tmp_path: Path, life_time: str, pct: int | None) -> None:
    root = copy_tree("cm4-emmc", tmp_path)
    put(root, "sys/block/mmcblk0/device/life_time", life_time + "\n")
    got = read(root, tmp_path)
    assert got.wear == Wear("mmcblk0", pct, "normal")
    assert got.missing == ()


@pytest.mark.parametrize(("pre_eol_info", "pre_eol"), [
    ("0x00", None), ("0x01", "normal"), ("0x02", "warning"), ("0x03", "urgent"),
])
def test_pre_eol_names_the_spare_block_state(
        tmp_path: Path, pre_eol_info: str, pre_eol: str | None) -> None:
    root = copy_tree("cm4-emmc", tmp_path)
    put(root, "sys/block/mmcblk0/device/pre_eol_info", pre_eol_info + "\n")
    assert read(root, tmp_path).wear == Wear("mmcblk0", 20, pre_eol)


@pytest.mark.parametrize(("file", "junk", "label"), [
    ("life_time", "0x0c 0x01", "life_used"), ("life_time", "0x02", "life_used"),
    ("life_time", "", "life_used"), ("pre_eol_info", "0x04", "pre_eol"),
    ("pre_eol_info", "abc", "pre_eol"),
])
def test_junk_wear_spoils_only_its_own_field(
        tmp_path: Path, file: str, junk: str, label: str) -> None:
    root = copy_tree("cm4-emmc", tmp_path)
    put(root, f"sys/block/mmcblk0/device/{file}", junk)
    got = read(root, tmp_path)
    assert got.wear is not None and got.wear.device == "mmcblk0"
    assert (got.wear.life_used_pct is None) == (label == "life_used")
    assert (got.wear.pre_eol is None) == (label == "pre_eol")
    assert [m for m in got.missing if m.startswith(f"{label}: unreadable ")]


def dev_entry(root: Path, data_dir: Path) -> Path:
    dev = os.stat(data_dir).st_dev
    return root / f"sys/dev/block/{os.major(dev)}:{os.minor(dev)}"


@pytest.mark.parametrize("target", ["179:2", "179:0"])  # a partition, the whole disk
def test_wear_is_read_from_the_disk_holding_the_data_dir(tmp_path: Path, target: str) -> None:
    root = copy_tree("cm4-emmc", tmp_path)
    entry = dev_entry(root, tmp_path)
    entry.unlink(missing_ok=True)
    entry.symlink_to(os.readlink(root / "sys/dev/block" / target))
    got = read(root, tmp_path, wear_device=None)
    assert got.wear == Wear("mmcblk0", 20, "normal")


def test_a_data_dir_on_no_block_device_has_no_wear(tmp_path: Path) -> None:
    root = copy_tree("cm4-emmc", tmp_path)
    for entry in (root / "sys/dev/block").iterdir():
        entry.unlink()
    got = read(root, tmp_path, wear_device=None)
    assert got.wear is None and "wear" in got.missing


# --- disk, clock and this machine ---------------------------------------------------------

def test_disk_space_is_what_statvfs_says_with_reserved_blocks_counted_used(
        tmp_path: Path) -> None:
    disk = read(TREES / "x86", tmp_path).disk
    st = os.statvfs(tmp_path)
    assert disk is not None and disk.path == str(tmp_path)
    assert disk.total_bytes == st.f_blocks * st.f_frsize
    # Others write to this filesystem meanwhile: free agrees to within 1 % of its size.
    assert abs(disk.free_bytes - st.f_bavail * st.f_frsize) < disk.total_bytes / 100


def test_used_pct_counts_everything_the_node_cannot_write() -> None:
    assert Disk("/var/lib/edge", 1000, 250).used_pct == 75.0
    assert Disk("/var/lib/edge", 1000, 0).used_pct == 100.0
    assert Disk("/var/lib/edge", 0, 0).used_pct == 100.0


def test_a_data_dir_that_is_not_there_is_a_reason(tmp_path: Path) -> None:
    got = read(TREES / "x86", tmp_path / "gone", wear_device="nvme0n1")
    assert got.disk is None
    assert f"disk: {tmp_path / 'gone'}: No such file or directory" in got.missing


def test_the_kernel_clock_reads_on_this_machine() -> None:
    synced, max_error_s = adjtimex()
    assert isinstance(synced, bool)
    assert max_error_s is not None and 0 <= max_error_s <= 16
    assert clock.clock_synced() == adjtimex()[0]


def test_this_machine_reads_without_raising_and_has_uptime_and_memory(tmp_path: Path) -> None:
    got = PlatformReader(tmp_path).read()
    assert got.uptime_s is not None and got.uptime_s > 0
    assert got.load is not None
    assert got.mem_total_bytes and got.mem_available_bytes
    assert got.mem_available_bytes <= got.mem_total_bytes
    assert got.disk is not None
    assert got.clock.max_error_s is not None


def test_reading_again_finds_the_same_files(tmp_path: Path) -> None:
    reader = PlatformReader(tmp_path, root=TREES / "pi4-debian", wear_device="mmcblk0",
                            adjtimex=lambda: SYNCED)
    assert without_disk(reader.read()) == without_disk(reader.read())
