"""The controller's own health, read from the kernel: SoC temperature, power and throttling,
the data disk's space and wear, whether the clock is synchronised, uptime, load, memory.

`PlatformReader.read()` returns a `Platform` of plain facts, from a handful of small sysfs
and procfs reads (no subprocess), cheap enough to call every few seconds. It knows nothing
of thresholds, alarms or telemetry. What the machine does not have (an x86 build box has no
get_throttled, an SD card reports no wear) is None with its name in `missing`; a file that
holds junk is None with a short reason. `read()` never raises.

`root` points the reader at a copy of the tree (tests/fixtures/platform/) instead of `/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from drivers.platform.timesync import ClockSync, read_clock
from drivers.platform.timesync import adjtimex as kernel_adjtimex

_T = TypeVar("_T")

# sysfs attributes fit in a page; /proc/meminfo in a few kB.
_MAX_READ = 16_384
# Thermal zone types that are the SoC: Raspberry Pi (downstream and mainline), Intel.
_SOC_ZONES = ("cpu-thermal", "cpu_thermal", "x86_pkg_temp")
# Outside this a sensor is broken, not hot or cold (an outdoor pole can be well below 0).
_TEMP_RANGE_C = (-60.0, 150.0)
# The downstream kernel's firmware device: soc/soc:firmware (Pi 4, Pi 3) or
# soc@107c000000/soc@107c000000:firmware (Pi 5).
_GET_THROTTLED = "sys/devices/platform/soc*/soc*:firmware/get_throttled"
_PRE_EOL = {0x01: "normal", 0x02: "warning", 0x03: "urgent"}


@dataclass(frozen=True)
class Throttle:
    """The Raspberry Pi firmware's get_throttled word: what it is doing to the SoC now, and
    what it has had to do (per its documentation, since boot).

    Under-voltage means the supply sagged below what the board needs (about 4.63 V on a
    Pi 4): a failing PSU, a long thin cable up the pole, a heater on the same rail. `source` is
    "firmware" when the whole word was read, "hwmon" when only the mainline kernel's
    under-voltage alarm was (then every other flag is False and `raw` is None).

    The downstream kernel shows the word its hwmon driver last fetched (every 2 s) and
    calls the attribute deprecated: the first read after boot leaves one WARNING in dmesg.
    """

    under_voltage: bool  # bit 0
    freq_capped: bool  # bit 1
    throttled: bool  # bit 2
    soft_temp_limit: bool  # bit 3
    under_voltage_occurred: bool  # bit 16
    freq_capped_occurred: bool  # bit 17
    throttled_occurred: bool  # bit 18
    soft_temp_limit_occurred: bool  # bit 19
    raw: int | None
    source: str

    @classmethod
    def from_word(cls, word: int) -> Throttle:
        """Decode a firmware word (vcgencmd get_throttled, or the sysfs attribute)."""
        def bit(n: int) -> bool:
            return bool(word >> n & 1)

        return cls(bit(0), bit(1), bit(2), bit(3), bit(16), bit(17), bit(18), bit(19),
                   raw=word, source="firmware")


@dataclass(frozen=True)
class Disk:
    """Space on the filesystem holding the node's data; `free_bytes` is what the node
    (unprivileged) may still write, so blocks reserved for root count as used."""

    path: str
    total_bytes: int
    free_bytes: int

    @property
    def used_pct(self) -> float:
        if self.total_bytes <= 0:
            return 100.0  # nothing can be written
        return 100.0 * (self.total_bytes - self.free_bytes) / self.total_bytes


@dataclass(frozen=True)
class Wear:
    """An eMMC's own estimate of its wear (JEDEC EXT_CSD, as the kernel's mmc driver shows
    it). SD cards and NVMe drives do not report it there.

    `life_used_pct` is the upper bound of the worse of the two estimates (types A and B):
    10 means 0-10 % of rated erase cycles used, 100 means 90-100 %, 110 means past its
    rating. `pre_eol` is "normal", "warning" (80 % of spare blocks used) or "urgent".
    """

    device: str
    life_used_pct: int | None
    pre_eol: str | None


@dataclass(frozen=True)
class Platform:
    """One reading of the controller's health.

    `missing` says what could not be read: a bare field name when the machine does not
    have it, "name: reason" when it was there but unreadable or junk.
    """

    soc_temp_c: float | None
    throttle: Throttle | None
    disk: Disk | None
    wear: Wear | None
    clock: ClockSync
    uptime_s: float | None
    load: tuple[float, float, float] | None
    mem_total_bytes: int | None
    mem_available_bytes: int | None
    missing: tuple[str, ...]


class PlatformReader:
    """Reads the machine under `root` into a `Platform`.

    `data_dir` is the directory whose filesystem is reported as `disk` (a real directory;
    it is not looked for under `root`). Wear is read from `wear_device` (e.g. "mmcblk0"),
    or when None from the disk that holds `data_dir`. `adjtimex` returns (synced,
    max_error_s); the default asks the running kernel.
    """

    def __init__(self, data_dir: Path, *, root: Path = Path("/"),
                 wear_device: str | None = None,
                 adjtimex: Callable[[], tuple[bool, float | None]] | None = None) -> None:
        self._data_dir = data_dir
        self._root = root
        self._wear_device = wear_device
        self._adjtimex = adjtimex or kernel_adjtimex
        # Where the thermal zone, get_throttled and the hwmon alarm are: found once, looked
        # for again only after reading there fails (a module unloaded, zones renumbered).
        self._found: dict[str, Path] = {}

    def read(self) -> Platform:
        notes = _Notes()
        soc_temp = self._soc_temp(notes)
        throttle = self._throttle(notes)
        disk = self._disk(notes)
        wear = self._wear(notes)
        clock = read_clock(self._root, self._adjtimex)
        if clock.max_error_s is None:
            notes.missing.append("clock")
        uptime = notes.value("uptime", self._root / "proc/uptime", _uptime)
        load = notes.value("load", self._root / "proc/loadavg", _loadavg)
        mem_total, mem_available = self._memory(notes)
        return Platform(soc_temp, throttle, disk, wear, clock, uptime, load,
                        mem_total, mem_available, tuple(notes.missing))

    def _soc_temp(self, notes: _Notes) -> float | None:
        zone = self._find("zone", self._soc_zone)
        if zone is None:
            notes.missing.append("soc_temp")
            return None
        text = notes.read(zone / "temp", "soc_temp")
        if text is None:
            self._found.pop("zone", None)
            return None
        return notes.parse("soc_temp", text, _celsius)

    def _soc_zone(self) -> Path | None:
        zones = sorted(self._root.glob("sys/class/thermal/thermal_zone*"),
                       key=lambda p: int(p.name[12:]) if p.name[12:].isdigit() else -1)
        types = {_quiet_read(z / "type"): z for z in reversed(zones)}  # the first zone wins
        preferred = [types[name] for name in _SOC_ZONES if name in types]
        return preferred[0] if preferred else next(iter(zones), None)

    def _throttle(self, notes: _Notes) -> Throttle | None:
        firmware = self._find("firmware", self._get_throttled)
        if firmware:
            text = notes.read(firmware, "throttle")
            word = notes.parse("throttle", text, _throttle_word) if text is not None else None
            if word is not None:
                return Throttle.from_word(word)
            self._found.pop("firmware", None)
        alarm_file = self._find("hwmon", self._rpi_volt_alarm)
        if alarm_file is None:
            if firmware is None:
                notes.missing.append("throttle")
            return None
        text = notes.read(alarm_file, "throttle")
        alarm = notes.parse("throttle", text, _alarm) if text is not None else None
        if alarm is None:
            self._found.pop("hwmon", None)
            return None
        return Throttle(alarm, False, False, False, False, False, False, False,
                        raw=None, source="hwmon")

    def _get_throttled(self) -> Path | None:
        return next(iter(sorted(self._root.glob(_GET_THROTTLED))), None)

    def _rpi_volt_alarm(self) -> Path | None:
        for hwmon in sorted(self._root.glob("sys/class/hwmon/hwmon*")):
            if _quiet_read(hwmon / "name") == "rpi_volt":
                return hwmon / "in0_lcrit_alarm"
        return None

    def _find(self, what: str, look: Callable[[], Path | None]) -> Path | None:
        """Where `look` finds a file, remembered until reading it fails."""
        if what not in self._found and (found := look()) is not None:
            self._found[what] = found
        return self._found.get(what)

    def _disk(self, notes: _Notes) -> Disk | None:
        try:
            st = os.statvfs(self._data_dir)
        except OSError as e:
            notes.missing.append(f"disk: {self._data_dir}: {e.strerror or e}")
            return None
        return Disk(str(self._data_dir), st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)

    def _wear(self, notes: _Notes) -> Wear | None:
        device = self._wear_device or self._disk_holding_data()
        card = self._root / "sys/block" / (device or "-") / "device"
        if not device or not any((card / f).exists() for f in ("life_time", "pre_eol_info")):
            notes.missing.append("wear")
            return None
        life = notes.value("life_used", card / "life_time", _life_used)
        pre_eol = notes.value("pre_eol", card / "pre_eol_info", _pre_eol)
        return Wear(device, life, pre_eol)

    def _disk_holding_data(self) -> str | None:
        """The whole disk (mmcblk0, not mmcblk0p2) under data_dir, via sys/dev/block."""
        try:
            dev = os.stat(self._data_dir).st_dev
        except OSError:
            return None
        link = self._root / f"sys/dev/block/{os.major(dev)}:{os.minor(dev)}"
        if not link.exists():
            return None  # tmpfs, overlayfs, btrfs subvolumes: no block device of their own
        node = Path(os.path.realpath(link))
        return node.parent.name if (node / "partition").exists() else node.name

    def _memory(self, notes: _Notes) -> tuple[int | None, int | None]:
        text = notes.read(self._root / "proc/meminfo", "mem_total", "mem_available")
        if text is None:
            return None, None
        fields = (line.partition(":") for line in text.splitlines())
        lines = {key: rest.strip() for key, _, rest in fields}

        def kilobytes(label: str, key: str) -> int | None:
            if key not in lines:
                notes.missing.append(label)
                return None
            return notes.parse(label, lines[key], _kilobytes)

        return kilobytes("mem_total", "MemTotal"), kilobytes("mem_available", "MemAvailable")


class _Notes:
    """What one read() could not read, in the words `Platform.missing` uses."""

    def __init__(self) -> None:
        self.missing: list[str] = []

    def read(self, path: Path, *labels: str) -> str | None:
        """The file's text, stripped; None (noted against each label) when the file is
        absent or cannot be read."""
        try:
            with path.open("rb") as f:
                return f.read(_MAX_READ).decode("ascii", "replace").strip()
        except (FileNotFoundError, NotADirectoryError):
            self.missing.extend(labels)
        except OSError as e:  # EIO, ENODATA from a sensor not ready, EACCES, a directory
            self.missing.extend(f"{label}: {e.strerror or type(e).__name__}" for label in labels)
        return None

    def parse(self, label: str, text: str, parse: Callable[[str], _T]) -> _T | None:
        try:
            return parse(text)
        except ValueError:
            shown = text if len(text) <= 24 else text[:21] + "..."
            self.missing.append(f"{label}: unreadable {shown!r}")
            return None

    def value(self, label: str, path: Path, parse: Callable[[str], _T]) -> _T | None:
        text = self.read(path, label)
        return None if text is None else self.parse(label, text, parse)


def _quiet_read(path: Path) -> str | None:
    try:
        return path.read_bytes()[:256].decode("ascii", "replace").strip()
    except OSError:
        return None


# Parsers: the value, or ValueError for junk. Regexes rather than int()/float() alone,
# which would take "1_000", "nan" or "inf".

def _match(pattern: str, text: str) -> re.Match[str]:
    m = re.fullmatch(pattern, text)
    if m is None:
        raise ValueError(text)
    return m


def _celsius(text: str) -> float:
    celsius = int(_match(r"-?\d{1,7}", text)[0]) / 1000  # sysfs: millidegrees
    if not _TEMP_RANGE_C[0] <= celsius <= _TEMP_RANGE_C[1]:
        raise ValueError(text)
    return celsius


def _throttle_word(text: str) -> int:
    # The kernel prints "%x" ("50005"); accept vcgencmd's "0x50005" too.
    return int(_match(r"(?:0x)?([0-9a-fA-F]{1,8})", text)[1], 16)


def _alarm(text: str) -> bool:
    return _match(r"[01]", text)[0] == "1"


def _uptime(text: str) -> float:
    return float(_match(r"(\d{1,10}(?:\.\d+)?) \d+(?:\.\d+)?", text)[1])


def _loadavg(text: str) -> tuple[float, float, float]:
    m = _match(r"(\d{1,6}\.\d+) (\d{1,6}\.\d+) (\d{1,6}\.\d+)(?: .*)?", text)
    return float(m[1]), float(m[2]), float(m[3])


def _kilobytes(text: str) -> int:
    return int(_match(r"(\d{1,12}) kB", text)[1]) * 1024


def _life_used(text: str) -> int | None:
    m = _match(r"0x([0-9a-fA-F]{2}) 0x([0-9a-fA-F]{2})", text)
    worst = max(int(m[1], 16), int(m[2], 16))
    if worst > 0x0B:
        raise ValueError(text)
    return worst * 10 if worst else None  # 0x00: the device does not say


def _pre_eol(text: str) -> str | None:
    value = int(_match(r"0x([0-9a-fA-F]{2})", text)[1], 16)
    if value and value not in _PRE_EOL:
        raise ValueError(text)
    return _PRE_EOL.get(value)
