"""The U-Boot environment as the firmware tests see it: the kernel command line of a boot from
a slot, and a state copy read back with the real fw_printenv."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from firmware.bootctl import Slot, fw_env_config

DISK = "5afec17e"  # the card's disk id: slot A is PARTUUID DISK-02, slot B DISK-03

if shutil.which("fw_setenv") is None or shutil.which("fw_printenv") is None:
    # make test installs it; a machine without it must say so, not pass by skipping
    pytest.fail("fw_setenv/fw_printenv missing: apt-get install libubootenv-tool",
                pytrace=False)


def booted_from(slot: Slot) -> str:
    part = 2 if slot is Slot.A else 3
    return f"console=ttyAMA0,115200 console=tty1 root=PARTUUID={DISK}-0{part} ro rootwait\n"


def printenv(boot_dir: Path, copy: int) -> dict[str, str] | None:
    config = boot_dir.parent / f"fw_env-{copy}.config"
    config.write_text(fw_env_config(boot_dir, copy))
    done = subprocess.run(["fw_printenv", "-c", str(config)], capture_output=True, text=True)
    if done.returncode != 0:
        return None
    return dict(line.split("=", 1) for line in done.stdout.splitlines())
