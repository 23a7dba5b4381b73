"""Boot control for the two root slots: which slot runs, which is committed, and the trial
boot of a newly installed one, behind one interface (BootControl) with a backend per boot
loader: our U-Boot boot script (uboot) or the Raspberry Pi firmware's tryboot (tryboot)."""

from __future__ import annotations

from pathlib import Path

from firmware.bootctl.base import (
    BootControl,
    BootControlError,
    BootState,
    Slot,
    slot_from_cmdline,
    slot_partuuids,
)
from firmware.bootctl.tryboot import AUTOBOOT, Tryboot, kernel_supports_tryboot, read_autoboot
from firmware.bootctl.uboot import UBoot, boot_script, fw_env_config

__all__ = [
    "BootControl",
    "BootControlError",
    "BootState",
    "Slot",
    "Tryboot",
    "UBoot",
    "boot_script",
    "detect",
    "fw_env_config",
    "kernel_supports_tryboot",
    "slot_from_cmdline",
    "slot_partuuids",
]


def detect(boot_dir: Path = Path("/boot/firmware"), proc: Path = Path("/proc")) -> BootControl:
    """The backend this card was set up for: U-Boot when our boot script is on the boot
    partition (our images), the Pi firmware's tryboot when autoboot.txt asks for A/B."""
    if (boot_dir / "boot.scr").is_file():
        return UBoot(boot_dir, cmdline=(proc / "cmdline").read_text())
    autoboot = boot_dir / AUTOBOOT
    if autoboot.is_file() and read_autoboot(autoboot)[0].get("all", {}).get("tryboot_a_b") == "1":
        return Tryboot(boot_dir, proc)
    raise BootControlError(
        f"no A/B boot loader set up on this card: {boot_dir} has neither boot.scr (U-Boot "
        f"with the safecity-ab script) nor an {AUTOBOOT} with tryboot_a_b=1 (Pi firmware)")
