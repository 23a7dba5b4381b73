"""The U-Boot backend: A/B state in two copies of a U-Boot environment blob on the FAT boot
partition (`safecity-ab-1.env`, `safecity-ab-2.env`), read by our boot script
(firmware/uboot/boot.cmd) and changed from Linux with libubootenv's fw_setenv.

Every writer, U-Boot and Linux, writes copy 1 whole and then copy 2, and every reader takes
copy 1 if its CRC is good, else copy 2, else the defaults (slot A, no trial): FAT writes are
not atomic, so a power cut during one leaves the other copy good."""

from __future__ import annotations

import re
import subprocess
import tempfile
import zlib
from pathlib import Path

from firmware.bootctl.base import (
    BootControlError,
    BootState,
    Run,
    Slot,
    refuse_running,
    remounted_rw,
    run_command,
    slot_from_cmdline,
    slot_partuuids,
)

ENV_SIZE = 0x4000
COPIES = ("safecity-ab-1.env", "safecity-ab-2.env")  # never uboot.env: U-Boot's own
DEFAULTS = {"slot": "A", "upgrade_available": "0", "bootcount": "0", "bootlimit": "3"}
TEMPLATE = Path(__file__).resolve().parents[1] / "uboot" / "boot.cmd"


def fw_env_config(boot_dir: Path, copy: int) -> str:
    """The fw_env.config line for copy 1 or 2, e.g. for a technician's
    `fw_printenv -c /etc/safecity-edge/fw_env-2.config`."""
    path = boot_dir / COPIES[copy - 1]
    if re.search(r"\s", str(path)):
        raise BootControlError(f"fw_env.config cannot name a path with spaces: {path}")
    return f"{path} 0x0000 {ENV_SIZE:#06x}\n"


def boot_script(disk_id: str, cmdline: str) -> str:
    """The boot script's source for a card whose MBR disk id is `disk_id` (8 hex digits, as
    in PARTUUID 5afec17e-02) with `cmdline` (console and other kernel arguments) after
    root=; the image build compiles it with `mkimage -A arm64 -T script -C none`."""
    disk = disk_id.lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{8}", disk):
        raise ValueError(f"the disk id must be 8 hex digits (e.g. 5afec17e), not {disk_id!r}")
    if re.search(r'["$\\;\n]', cmdline):
        raise ValueError(f"the kernel arguments cannot hold quotes, $, \\, ; or newlines "
                         f"inside the boot script: {cmdline!r}")
    return TEMPLATE.read_text().replace("@DISK_ID@", disk).replace("@CMDLINE@", cmdline.strip())


def read_copy(path: Path) -> tuple[dict[str, str] | None, str]:
    """The variables of one copy, or None and why it cannot be used. Checked here rather
    than by fw_printenv, which exits 234 on a missing file and 243 on a bad CRC, but prints
    its default environment with status 0 when given one (-f)."""
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except OSError as e:
        return None, f"{path.name} cannot be read ({e.strerror})"
    if len(blob) < ENV_SIZE:
        return None, f"{path.name} is cut short ({len(blob)} of {ENV_SIZE} bytes)"
    if int.from_bytes(blob[:4], "little") != zlib.crc32(blob[4:ENV_SIZE]):
        return None, f"{path.name} has a bad CRC"
    values: dict[str, str] = {}
    for entry in blob[4:ENV_SIZE].split(b"\0"):
        if not entry:
            break  # an empty entry ends the environment
        name, _, value = entry.decode("latin-1").partition("=")
        values[name] = value
    if values.get("slot") not in ("A", "B"):
        # the boot script refuses such a copy as well
        return None, f"{path.name} holds slot={values.get('slot', '')!r}, not A or B"
    return values, ""


def _number(text: str | None, low: int, high: int, default: int) -> int:
    """A counter as the boot script reads it: one digit from low to high, else the default."""
    if text is None or not re.fullmatch(r"[0-9]", text) or not low <= int(text) <= high:
        return default
    return int(text)


class UBoot:
    """A/B boot through U-Boot and our boot script (images that have /boot.scr)."""

    name = "u-boot"

    def __init__(self, boot_dir: Path, partuuids: dict[Slot, str] | None = None,
                 cmdline: str | None = None, limit: int = 3, *, run: Run = run_command,
                 mountinfo: Path = Path("/proc/self/mountinfo")) -> None:
        """`partuuids` None: those the boot script uses, partitions 2 (A) and 3 (B) of the
        disk the kernel's root= is on. `run` runs fw_setenv and mount (tests pass their own);
        `mountinfo` tells whether the boot partition must be remounted to write."""
        if not 1 <= limit <= 9:
            raise BootControlError(f"the trial boot limit must be 1 to 9 (the boot script "
                                   f"counts in one digit), not {limit}")
        self.boot_dir = boot_dir
        self.cmdline = Path("/proc/cmdline").read_text() if cmdline is None else cmdline
        self.partuuids = partuuids or slot_partuuids(self.cmdline)
        self.limit = limit
        self.run = run
        self.mountinfo = mountinfo

    def booted(self) -> Slot:
        return slot_from_cmdline(self.cmdline, self.partuuids)

    def stored(self) -> tuple[dict[str, str] | None, str]:
        """The variables U-Boot would use, or None; and what is wrong with either copy."""
        first, second = (read_copy(self.boot_dir / name) for name in COPIES)
        if first[0] is not None:
            return first[0], second[1] and f"{second[1]}; {COPIES[0]} used"
        if second[0] is not None:
            return second[0], f"{first[1]}; {COPIES[1]} used"
        return None, f"{first[1]} and {second[1]}"

    def state(self) -> BootState:
        booted = self.booted()
        values, damaged = self.stored()
        if values is None:
            return BootState(booted, booted, None, 0, self.limit,
                             f"{damaged}: the next boot goes to slot A with no trial "
                             f"until the state is committed again")
        slot = Slot(values["slot"])
        limit = _number(values.get("bootlimit"), 1, 9, 3)
        if values.get("upgrade_available") == "1":
            tries = _number(values.get("bootcount"), 0, 9, 0)
            return BootState(booted, slot.other, slot, tries, limit, damaged)
        return BootState(booted, slot, None, 0, limit, damaged)

    def start_trial(self, slot: Slot) -> None:
        refuse_running(slot, self.booted())
        self.write({"slot": slot, "upgrade_available": "1", "bootcount": "0",
                    "bootlimit": str(self.limit)})

    def commit(self) -> None:
        self.write({"slot": self.booted(), "upgrade_available": "0", "bootcount": "0",
                    "bootlimit": str(self.limit)})

    def abandon(self) -> None:
        self.commit()  # the same record: the booted slot, no trial

    def reboot_argv(self) -> list[str]:
        return ["systemctl", "reboot"]

    def write(self, values: dict[str, str]) -> None:
        """Set `values` in copy 1, then in copy 2, each read back before going on; a copy
        that cannot be read (missing, bad CRC) is started again from the defaults."""
        script = "".join(f"{name}={value}\n" for name, value in values.items())
        with tempfile.TemporaryDirectory(prefix="safecity-ab-") as tmp, \
                remounted_rw(self.boot_dir / COPIES[0], self.run, self.mountinfo):
            work = Path(tmp)
            (work / "defaults").write_text("".join(f"{k}={v}\n" for k, v in DEFAULTS.items()))
            (work / "set").write_text(script)
            for copy, name in enumerate(COPIES, start=1):
                path = self.boot_dir / name
                config = work / f"fw_env-{copy}.config"
                config.write_text(fw_env_config(self.boot_dir, copy))
                try:
                    path.touch()  # fw_setenv refuses a missing file; an empty one it fills
                except OSError as e:
                    raise BootControlError(f"cannot create {path}: {e.strerror}") from None
                done = self._fw_setenv(["-c", str(config), "-f", str(work / "defaults"),
                                        "-s", str(work / "set")])
                check_written(path, values, done.stderr.strip())

    def _fw_setenv(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            done = self.run(["fw_setenv", *args])
        except FileNotFoundError:
            raise BootControlError("fw_setenv is missing: apt-get install libubootenv-tool"
                                   ) from None
        if done.returncode != 0:
            raise BootControlError(f"fw_setenv {' '.join(args)} failed (status "
                                   f"{done.returncode}): {done.stderr.strip()}")
        return done


def check_written(path: Path, values: dict[str, str], said: str = "") -> None:
    """Raise unless the copy at `path` now holds `values`: fw_setenv exits 0 even when it
    changed nothing (e.g. `name value` lines in its script instead of `name=value`)."""
    found, problem = read_copy(path)
    if found is None:
        raise BootControlError(f"after fw_setenv, {problem}" + (f" (it said: {said})"
                                                                 if said else ""))
    wrong = [f"{k}={found.get(k, '')!r} instead of {v!r}" for k, v in values.items()
             if found.get(k) != str(v)]
    if wrong:
        raise BootControlError(f"fw_setenv left {path} with " + ", ".join(wrong)
                               + (f" (it said: {said})" if said else ""))
