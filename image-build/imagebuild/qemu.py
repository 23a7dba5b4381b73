"""Boot the built image under qemu-system-aarch64 -M virt (software emulation): Debian's
U-Boot runs the image's boot.scr, which boots root A or B with that slot's kernel; a
technician's files are written onto the boot partition, and the console is read line by line.
`boot()` is one boot that powers off by itself; `Machine` keeps running across reboots (with
user-mode networking, the host is 10.0.2.2) until it is killed like a power cut."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from imagebuild.config import ImageConfig

if TYPE_CHECKING:
    from firmware.bootctl import UBoot

BOOT_TEST = Path(__file__).resolve().parents[1] / "boot-test"
MARK = "EDGE-TEST "
UBOOT = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
SLOT_LINE = "safecity-ab: booting slot "
ENV = {"MTOOLS_SKIP_CHECK": "1", "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}


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
    subprocess.run(args, check=True, capture_output=True, env=ENV)


def fat(disk: Path) -> str:
    """The boot partition, as mtools names it."""
    return f"{disk}@@{fat_offset(disk)}"


def prepare(img: Path, work: Path, node_yaml: Path, *, extra_args: str,
            reporter: bool = True) -> Path:
    """A sparse copy of the image with the node's config on the boot partition (as a technician
    puts it there), the reporter beside it, and kernel arguments for the test added to both
    copies of the A/B state (`bootargs_extra`, which the boot script appends)."""
    work.mkdir(parents=True, exist_ok=True)
    disk = work / "card.img"
    subprocess.run(["cp", "--sparse=always", str(img), str(disk)], check=True)
    mtools(["mmd", "-i", fat(disk), "::edge"])
    mtools(["mcopy", "-i", fat(disk), str(node_yaml), "::edge/node.yaml"])
    if reporter:
        mtools(["mmd", "-i", fat(disk), "::boot-test"])
        mtools(["mcopy", "-i", fat(disk), str(BOOT_TEST / "report.py"),
                "::boot-test/report.py"])
    set_state(disk, work, bootargs_extra=extra_args)
    return disk


def set_state(disk: Path, work: Path, **values: str) -> None:
    """Set variables in both copies of the A/B state on the card, as Linux would."""
    from firmware.bootctl.uboot import COPIES

    folder = _state_copies(disk, work / "ab-state")
    _copies_only(folder).write(values)
    for name in COPIES:
        mtools(["mcopy", "-o", "-i", fat(disk), str(folder / name), f"::{name}"])


def state(disk: Path, work: Path) -> dict[str, str]:
    """The A/B state on the card as U-Boot would read it (copy 1, else copy 2), as a dict."""
    values, _ = _copies_only(_state_copies(disk, work / "ab-read")).stored()
    return values or {}


def _state_copies(disk: Path, folder: Path) -> Path:
    from firmware.bootctl.uboot import COPIES

    folder.mkdir(parents=True, exist_ok=True)
    for name in COPIES:
        mtools(["mcopy", "-n", "-o", "-i", fat(disk), f"::{name}", str(folder / name)])
    return folder


def _copies_only(folder: Path) -> UBoot:
    """The U-Boot backend on copies taken off a card: it reads and writes them, and which
    slot runs does not matter here."""
    from firmware.bootctl import Slot, UBoot

    return UBoot(folder, partuuids={Slot.A: "copy", Slot.B: "copy"}, cmdline="")


def qemu_command(disk: Path, *, network: bool) -> list[str]:
    if shutil.which("qemu-system-aarch64") is None:
        raise BootError("qemu-system-aarch64 is missing. As root: apt-get install qemu-system-arm")
    if not UBOOT.exists():
        raise BootError(f"{UBOOT} is missing. As root: apt-get install u-boot-qemu")
    return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", "1024",
            "-nographic", "-bios", str(UBOOT),
            # romfile= : no PXE option ROM (U-Boot boots from the card; ipxe-qemu not needed)
            *(["-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0,romfile="]
              if network else ["-nic", "none"]),
            "-drive", f"if=none,id=card,format=raw,file={disk},discard=unmap,detect-zeroes=unmap",
            "-device", "virtio-blk-pci,drive=card"]


def reporter_args(config: ImageConfig) -> str:
    """Kernel arguments that run the boot test's reporter and power off after it, with the
    console on qemu's serial port."""
    venv = config.python.venv
    return " ".join([
        "console=ttyAMA0", "panic=-1",
        f'systemd.run="{venv}/bin/python /boot/firmware/boot-test/report.py"',
        "systemd.run_success_action=poweroff", "systemd.run_failure_action=poweroff"])


def boot(disk: Path, work: Path, *, timeout_s: float = 420) -> Boot:
    """Boot once; the guest runs the reporter, which powers it off when it is done."""
    cmd = [*qemu_command(disk, network=False), "-no-reboot"]
    result = Boot()
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None  # noqa: S101 (for mypy: stdout=PIPE always sets it)
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


class Machine:
    """The card in a qemu that keeps running across reboots, as a pole does; `kill()` is a
    power cut. Every console line is kept (and logged); `expect` waits for one."""

    def __init__(self, disk: Path, log: Path, *, network: bool = True) -> None:
        self.disk, self.log_path, self.network = disk, log, network
        self.lines: list[str] = []
        self.boots: list[tuple[float, str]] = []  # (seconds since start, "A" or "B (trial…)")
        self._seen = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._new = threading.Condition(self._lock)
        self.started = 0.0

    def start(self) -> Machine:
        self.started = time.monotonic()
        self._seen = len(self.lines)
        proc = subprocess.Popen(qemu_command(self.disk, network=self.network),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
        self._proc = proc
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()
        return self

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None  # noqa: S101 (for mypy: started with stdout=PIPE)
        with self.log_path.open("a") as log:
            for raw in proc.stdout:
                line = raw.rstrip("\r\n")
                log.write(line + "\n")
                log.flush()
                with self._new:
                    self.lines.append(line)
                    if SLOT_LINE in line:
                        self.boots.append((time.monotonic() - self.started,
                                           line.split(SLOT_LINE, 1)[1].strip()))
                    self._new.notify_all()
        with self._new:
            self._new.notify_all()

    def expect(self, text: str, timeout_s: float) -> str:
        """The next console line containing `text` (after the last one matched)."""
        deadline = time.monotonic() + timeout_s
        with self._new:
            while True:
                for i in range(self._seen, len(self.lines)):
                    if text in self.lines[i]:
                        self._seen = i + 1
                        return self.lines[i]
                self._seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self._proc is not None and self._proc.poll() is not None):
                    raise BootError(f"no console line with {text!r} within {timeout_s:.0f} s"
                                    + self.tail())
                self._new.wait(min(left, 1.0))

    def tail(self, n: int = 60) -> str:
        return "\n--- last console lines ---\n" + "\n".join(self.lines[-n:])

    def kill(self) -> None:
        """Pull the power: no shutdown, no flush of the guest's caches."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> Machine:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.kill()
