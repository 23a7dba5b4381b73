"""The Raspberry Pi firmware's own A/B switch ("tryboot"; Pi 4 EEPROM from late 2022, Pi 5).

`autoboot.txt` on FAT partition 1 names the boot partition for ordinary boots ([all]) and the
one for a single trial boot ([tryboot]). The trial is armed by rebooting with the one-shot
tryboot flag, `systemctl reboot "0 tryboot"`, which only Raspberry Pi's own kernel can pass
to the firmware (mailbox tag 0x00038064; Debian's kernel cannot). Any later reboot without
the flag is back on [all]'s partition: one try, and the firmware falls back by itself. The
running partition and whether this boot is the trial are in the device tree the firmware
hands the kernel: /proc/device-tree/chosen/bootloader/{partition,tryboot}."""

from __future__ import annotations

import re
from pathlib import Path

from drivers.storage import write_whole
from firmware.bootctl.base import (
    BootControlError,
    BootState,
    Run,
    Slot,
    refuse_running,
    remounted_rw,
    run_command,
)

AUTOBOOT = "autoboot.txt"
PARTITIONS = {Slot.A: 2, Slot.B: 3}


def kernel_supports_tryboot(proc: Path = Path("/proc"), dev: Path = Path("/dev")) -> bool:
    """Whether this kernel can arm a trial: booted by the Pi firmware (its bootloader node
    is in the device tree) and a Raspberry Pi kernel (its firmware mailbox is /dev/vcio)."""
    return (proc / "device-tree" / "chosen" / "bootloader").is_dir() and (dev / "vcio").exists()


def autoboot_text(primary: int, trial: int) -> str:
    return f"[all]\ntryboot_a_b=1\nboot_partition={primary}\n[tryboot]\nboot_partition={trial}\n"


def read_autoboot(path: Path) -> tuple[dict[str, dict[str, str]], str]:
    """autoboot.txt's sections and their settings, and "" or why the firmware cannot use
    it for A/B boot."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return {}, f"{path} is missing"
    sections: dict[str, dict[str, str]] = {}
    section = "all"
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if header := re.fullmatch(r"\[(.+)\]", line):
            section = header[1].strip()
        elif "=" in line:
            key, _, value = line.partition("=")
            sections.setdefault(section, {})[key.strip()] = value.strip()
    settings = sections.get("all", {})
    if settings.get("tryboot_a_b") != "1":
        return sections, f"{path} has no tryboot_a_b=1 under [all]"
    if not settings.get("boot_partition", "").isdigit():
        return sections, f"{path} has no boot_partition=<number> under [all]"
    return sections, ""


class Tryboot:
    """A/B boot through the Pi firmware's autoboot.txt and one-shot tryboot flag."""

    name = "tryboot"

    def __init__(self, boot_dir: Path, proc: Path = Path("/proc"),
                 partitions: dict[Slot, int] | None = None, *, run: Run = run_command) -> None:
        """`boot_dir` holds autoboot.txt (FAT partition 1); `partitions` are each slot's
        FAT boot partition; `proc` is /proc, or a fake tree in tests."""
        self.boot_dir = boot_dir
        self.proc = proc
        self.partitions = partitions or dict(PARTITIONS)
        self.run = run

    @property
    def autoboot(self) -> Path:
        return self.boot_dir / AUTOBOOT

    def _bootloader(self, name: str) -> int:
        path = self.proc / "device-tree" / "chosen" / "bootloader" / name
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise BootControlError(f"cannot read {path} ({e.strerror}): this boot was not "
                                   f"started by Raspberry Pi firmware that tells it") from None
        if len(raw) != 4:
            raise BootControlError(f"{path} holds {len(raw)} bytes, not a 32-bit number")
        return int.from_bytes(raw, "big")

    def slot_of(self, partition: int, where: str) -> Slot:
        for slot, number in self.partitions.items():
            if number == partition:
                return slot
        known = ", ".join(f"{slot}={number}" for slot, number in self.partitions.items())
        raise BootControlError(f"{where} names boot partition {partition}, which is neither "
                               f"A/B slot ({known})")

    def booted(self) -> Slot:
        return self.slot_of(self._bootloader("partition"), "the device tree")

    def primary(self, booted: Slot) -> tuple[Slot, str]:
        """The slot of [all]'s boot_partition, or the booted slot and what was wrong."""
        sections, problem = read_autoboot(self.autoboot)
        if problem:
            return booted, problem
        try:
            return self.slot_of(int(sections["all"]["boot_partition"]), str(self.autoboot)), ""
        except BootControlError as e:
            return booted, str(e)

    def state(self) -> BootState:
        booted = self.booted()
        primary, damaged = self.primary(booted)
        if self._bootloader("tryboot") == 1 and booted != primary:
            return BootState(booted, primary, booted, 1, 1, damaged)
        return BootState(booted, primary, None, 0, 1, damaged)

    def start_trial(self, slot: Slot) -> None:
        booted = self.booted()
        refuse_running(slot, booted)
        primary, _ = self.primary(booted)
        self.write(autoboot_text(self.partitions[primary], self.partitions[slot]))

    def commit(self) -> None:
        booted = self.partitions[self.booted()]
        self.write(autoboot_text(booted, booted))  # [tryboot] too: nothing left armed

    def abandon(self) -> None:
        self.commit()  # the same file: the booted slot, nothing armed

    def reboot_argv(self) -> list[str]:
        return ["systemctl", "reboot", "0 tryboot"]

    def write(self, text: str) -> None:
        """Replace autoboot.txt by a rename, so a power cut leaves the old or the new one."""
        with remounted_rw(self.autoboot, self.run, self.proc / "self" / "mountinfo"):
            try:
                write_whole(self.autoboot, text.encode())
            except OSError as e:
                raise BootControlError(f"cannot write {self.autoboot}: {e.strerror}") from None
