"""What the build host must have, checked before anything runs, each missing piece named with
the command that fixes it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

BINFMT = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Tool:
    command: str
    package: str
    why: str


TOOLS = [
    Tool("mmdebstrap", "mmdebstrap", "makes the Debian root filesystem"),
    Tool("mkfs.ext4", "e2fsprogs", "root and data filesystems, filled without mounting"),
    Tool("debugfs", "e2fsprogs", "sets inode times the same on every build"),
    Tool("mkfs.vfat", "dosfstools", "the boot partition"),
    Tool("mcopy", "mtools", "fills the boot partition without mounting"),
    Tool("sfdisk", "fdisk", "the MBR partition table"),
    Tool("bmaptool", "bmap-tools", "the .bmap for fast flashing"),
    Tool("xz", "xz-utils", "the compressed image"),
    Tool("apt-ftparchive", "apt-utils", "the local package cache as an apt repository"),
    Tool("depmod", "kmod", "indexes the image's compressed kernel modules natively"),
    Tool("mkimage", "u-boot-tools", "compiles the A/B boot script for U-Boot"),
    Tool("fw_setenv", "libubootenv-tool", "writes the first A/B slot state"),
    Tool("systemd-hwdb", "udev", "compiles the image's hardware database natively (1 min "
         "under emulation)"),
]
BOOT_TEST_TOOLS = [
    Tool("qemu-system-aarch64", "qemu-system-arm", "the boot test"),
    Tool("/usr/lib/u-boot/qemu_arm64/u-boot.bin", "u-boot-qemu", "U-Boot for the boot test"),
]
# Every Debian package the build and the boot test need on the host (Debian 12 or later).
HOST_PACKAGES = sorted({t.package for t in TOOLS + BOOT_TEST_TOOLS}
                       | {"qemu-user-static", "binfmt-support", "arch-test"})


class HostNotReady(Exception):
    """Something the build needs is missing from this machine; the message says how to fix it."""


def missing_tools(tools: list[Tool]) -> list[Tool]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [t for t in tools if not (Path(t.command).is_file() if t.command.startswith("/")
                                     else shutil.which(t.command, path=path))]


def aarch64_binfmt() -> str | None:
    """None when arm64 programs run here through qemu-user, else what is wrong and the fix."""
    if not (BINFMT / "status").exists():
        return ("binfmt_misc is not mounted, so arm64 programs cannot run here. As root:\n"
                "  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\n"
                "  update-binfmts --enable qemu-aarch64")
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        return ("no binfmt handler for arm64 programs. As root:\n"
                "  apt-get install qemu-user-static binfmt-support\n"
                "  update-binfmts --enable qemu-aarch64")
    text = entry.read_text()
    if not text.startswith("enabled"):
        return ("the arm64 binfmt handler is disabled. As root:\n"
                "  update-binfmts --enable qemu-aarch64")
    # The F flag opens the interpreter at registration, so it works inside the chroot too.
    if "flags: " in text and "F" not in text.split("flags: ", 1)[1].split("\n", 1)[0]:
        return ("the arm64 binfmt handler lacks the F (fix binary) flag and will fail in a "
                "chroot. As root:\n  apt-get install --reinstall qemu-user-static")
    return None


def check_host(*, boot_test: bool = False) -> None:
    """Raise HostNotReady naming every missing piece at once."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the build runs as root (mmdebstrap's root mode, file owners in the "
                        "image): run it with sudo")
    missing = missing_tools(TOOLS + (BOOT_TEST_TOOLS if boot_test else []))
    if missing:
        names = "\n".join(f"  {t.command:20} ({t.package}): {t.why}" for t in missing)
        packages = " ".join(sorted({t.package for t in missing}))
        problems.append(f"missing tools:\n{names}\nAs root:\n  apt-get install {packages}")
    binfmt = aarch64_binfmt()
    if binfmt:
        problems.append(binfmt)
    if problems:
        raise HostNotReady("this machine cannot build the image yet:\n\n" + "\n\n".join(problems))
