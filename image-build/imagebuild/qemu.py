"""Boot the built image under qemu-system-aarch64 -M virt (software emulation, no network):
Debian's kernel and initramfs from the image's boot partition, root A from the image, a
technician's files written onto the boot partition, and the console read line by line."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from imagebuild.config import ImageConfig

BOOT_TEST = Path(__file__).resolve().parents[1] / "boot-test"
MARK = "EDGE-TEST "


class BootError(Exception):
    """The guest did not come up as expected; the message ends with its last console lines."""


@dataclass
class Boot:
    """One boot's console and the times the markers appeared (seconds since qemu started)."""

    console: list[str] = field(default_factory=list)
    userspace_s: float | None = None
    ready_s: float | None = None
    ready_guest_s: float | None = None
    status: dict[str, object] | None = None
    facts: dict[str, object] | None = None
    powered_off_s: float | None = None


def fat_offset(img: Path) -> int:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                      text=True, check=True).stdout)
    return int(table["partitiontable"]["partitions"][0]["start"]) * 512


def mtools(args: list[str]) -> None:
    subprocess.run(args, check=True, capture_output=True, env={"MTOOLS_SKIP_CHECK": "1",
                                                               "PATH": "/usr/bin:/bin"})


def prepare(img: Path, work: Path, node_yaml: Path) -> Path:
    """A sparse copy of the image with the node's config on the boot partition (as a technician
    puts it there) and the reporter beside it; the kernel and initramfs copied out for qemu."""
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "card.img"
    subprocess.run(["cp", "--sparse=always", str(img), str(disk)], check=True)
    fat = f"{disk}@@{fat_offset(disk)}"
    mtools(["mmd", "-i", fat, "::edge", "::boot-test"])
    mtools(["mcopy", "-i", fat, str(node_yaml), "::edge/node.yaml"])
    mtools(["mcopy", "-i", fat, str(BOOT_TEST / "report.py"), "::boot-test/report.py"])
    for name in ("vmlinuz", "initrd.img"):
        mtools(["mcopy", "-n", "-i", fat, f"::{name}", str(work / name)])
    return disk


def boot(config: ImageConfig, disk: Path, work: Path, *, timeout_s: float = 420) -> Boot:
    """Boot once; the guest runs the reporter, which powers it off when it is done."""
    if shutil.which("qemu-system-aarch64") is None:
        raise BootError("qemu-system-aarch64 is missing. As root: apt-get install qemu-system-arm")
    venv = config.python.venv
    cmdline = " ".join([
        f"root=PARTUUID={config.ids.partuuid(2)}", "rootfstype=ext4", "ro", "rootwait",
        "console=ttyAMA0", "panic=-1",
        f'systemd.run="{venv}/bin/python /boot/firmware/boot-test/report.py"',
        "systemd.run_success_action=poweroff", "systemd.run_failure_action=poweroff",
    ])
    cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
           "-nographic", "-no-reboot", "-nic", "none",
           "-kernel", str(work / "vmlinuz"), "-initrd", str(work / "initrd.img"),
           "-append", cmdline,
           "-drive", f"if=none,id=card,format=raw,file={disk}",
           "-device", "virtio-blk-pci,drive=card"]
    result = Boot()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.rstrip("\r\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        with (work / "console.log").open("w") as log:
            while True:
                left = timeout_s - (time.monotonic() - started)
                try:
                    line = lines.get(timeout=max(left, 0.1))
                except queue.Empty:
                    raise BootError(f"the guest did not power off within {timeout_s:.0f} s"
                                    + tail(result)) from None
                if line is None:
                    break
                log.write(line + "\n")
                result.console.append(line)
                note(result, line, time.monotonic() - started)
        proc.wait(timeout=30)
        result.powered_off_s = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return result


def note(result: Boot, line: str, at: float) -> None:
    """The reporter's lines: READY (with the guest's own clock), STATUS, FACTS, TIMEOUT."""
    if result.userspace_s is None and "Welcome to" in line:
        result.userspace_s = at  # systemd's banner: the kernel and initramfs are done
    if MARK not in line:
        return
    kind, _, rest = line.split(MARK, 1)[1].partition(" ")
    if kind == "READY":
        result.ready_s = at
        result.ready_guest_s = int(rest.split("=", 1)[1]) / 1e6
    elif kind == "STATUS" and rest != "none":
        result.status = json.loads(rest)
    elif kind == "FACTS":
        result.facts = json.loads(rest)
    elif kind == "TIMEOUT":
        raise BootError("the node never became active: " + rest + tail(result))


def tail(result: Boot, lines: int = 60) -> str:
    return "\n--- last console lines ---\n" + "\n".join(result.console[-lines:])
