"""What every boot loader backend offers: the two root slots, the state of a trial boot of
one of them, and the small interface the updater and the commit service drive; and what
the backends share to change files on a boot partition Linux mounts read-only."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)

Run = Callable[[list[str]], subprocess.CompletedProcess[str]]


class Slot(StrEnum):
    """A root filesystem slot: A is partition 2 of the card, B partition 3."""

    A = "A"
    B = "B"

    @property
    def other(self) -> Slot:
        return Slot.B if self is Slot.A else Slot.A


class BootControlError(Exception):
    """The boot state could not be read or changed; the message says what and where."""


@dataclass(frozen=True)
class BootState:
    """Where the node stands between two boots.

    `booted` runs now; `primary` is what the loader boots when no trial runs (the committed
    slot); `trial` is the slot under trial, if any, with `tries` of its `limit` boots used.
    `damaged` is "" or what was wrong with the stored state (and what was used instead)."""

    booted: Slot
    primary: Slot
    trial: Slot | None
    tries: int
    limit: int
    damaged: str = ""


class BootControl(Protocol):
    """The boot loader's A/B switch, as the updater and the commit service see it."""

    name: str

    def state(self) -> BootState:
        """The booted slot, the committed one and any trial, read from where the loader
        keeps them."""
        ...

    def start_trial(self, slot: Slot) -> None:
        """The next boot(s) try `slot`; after its limit of boots without a commit the loader
        goes back to the other slot by itself."""
        ...

    def commit(self) -> None:
        """The booted slot becomes the primary one and no trial is left armed; called once a
        trial boot has proved healthy. Also rewrites damaged state."""
        ...

    def abandon(self) -> None:
        """Cancel a trial armed but not yet booted (e.g. the install failed after arming):
        the booted slot stays primary."""
        ...

    def reboot_argv(self) -> list[str]:
        """The command that reboots into the armed trial."""
        ...


_ROOT = re.compile(r"(?:^|\s)root=PARTUUID=(\S+)")


def slot_from_cmdline(cmdline: str, partuuids: dict[Slot, str]) -> Slot:
    """The slot whose PARTUUID the kernel command line's `root=` names."""
    found = _ROOT.findall(cmdline)
    if not found:
        raise BootControlError(
            f"the kernel command line has no root=PARTUUID=…, so the booted slot is unknown: "
            f"{cmdline.strip()!r}")
    root = found[-1].lower()  # the kernel takes the last root= it is given
    for slot, partuuid in partuuids.items():
        if partuuid.lower() == root:
            return slot
    known = ", ".join(f"{slot}={uuid}" for slot, uuid in partuuids.items())
    raise BootControlError(
        f"the kernel booted root=PARTUUID={root}, which is neither A/B root slot ({known})")


def slot_partuuids(cmdline: str) -> dict[Slot, str]:
    """Partitions 2 (A) and 3 (B) of the disk the kernel's root= is on, as the boot script
    uses them."""
    found = re.findall(r"(?:^|\s)root=PARTUUID=([0-9a-fA-F]{8})-0[23](?=\s|$)", cmdline)
    if not found:
        raise BootControlError(
            f"the kernel was not booted from root slot A or B (root=PARTUUID=<disk>-02 or "
            f"-03): {cmdline.strip()!r}")
    disk = found[-1].lower()
    return {Slot.A: f"{disk}-02", Slot.B: f"{disk}-03"}


def refuse_running(slot: Slot, booted: Slot) -> None:
    """A trial is for the slot just installed, never the running one: a loader that gives up
    on a trial of the running slot would boot the other, older one."""
    if slot == booted:
        raise BootControlError(f"slot {slot} is running now; a trial is for the other slot "
                               f"({slot.other}), the one an update was installed into")


def run_command(argv: list[str]) -> subprocess.CompletedProcess[str]:
    # S603: argv is one of the boot controls' fixed commands (mount, fw_setenv...), no shell
    return subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603


@contextmanager
def remounted_rw(path: Path, run: Run, mountinfo: Path) -> Iterator[None]:
    """The read-only mount holding `path` (Linux mounts the boot partition so) remounted
    read-write for the block, then synced and read-only again; nothing when it is rw."""
    mount = mount_point_if_readonly(path, mountinfo)
    if mount is None:
        yield
        return
    done = run(["mount", "-o", "remount,rw", str(mount)])
    if done.returncode != 0:
        raise BootControlError(f"cannot remount {mount} read-write to change the boot "
                               f"state: {done.stderr.strip()}")
    try:
        yield
    finally:
        os.sync()
        done = run(["mount", "-o", "remount,ro", str(mount)])
        if done.returncode != 0:
            log.warning("could not remount %s read-only again: %s", mount, done.stderr.strip())


def mount_point_if_readonly(path: Path, mountinfo: Path) -> Path | None:
    """The mount point holding `path` when that mount is read-only, else None."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    target = path.resolve()
    best: tuple[Path, bool] | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        mount = Path(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[4]))
        # the deepest mount holding the path; of equal ones the later, which shadows
        if target.is_relative_to(mount) and (best is None
                                             or len(mount.parts) >= len(best[0].parts)):
            best = (mount, "ro" in fields[5].split(","))
    return best[0] if best is not None and best[1] else None
