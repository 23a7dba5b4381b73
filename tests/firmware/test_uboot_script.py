"""The A/B boot script under Debian's real U-Boot (qemu_arm64) on a small card built without
mounting: FAT boot partition with boot.scr and the two state copies, roots A and B whose
/boot/vmlinuz and /boot/initrd.img are junk (U-Boot loads them, then booti refuses them,
and the script goes on to the other slot and says so). Linux's side is played by the
U-Boot backend on a directory that the state copies are carried to and from with mtools."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.bootctl import Slot, UBoot, boot_script
from firmware.bootctl.uboot import COPIES, fw_env_config

pytestmark = [pytest.mark.image, pytest.mark.slow]

UBOOT_BIN = Path("/usr/lib/u-boot/qemu_arm64/u-boot.bin")
TOOLS = ["qemu-system-aarch64", "mkimage", "fw_printenv", "fw_setenv", "mcopy", "mkfs.vfat",
         "mkfs.ext4", "sfdisk"]
DISK_ID = "5afec17e"
MIB = 1024 * 1024
# partition: (start MiB, size MiB); 1 FAT32 boot, 2 root A, 3 root B, 4 data
LAYOUT = {1: (1, 40), 2: (41, 8), 3: (49, 8), 4: (57, 4)}
END = "safecity-ab: neither slot A nor slot B could be booted"


def _missing() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    return missing + ([str(UBOOT_BIN)] if not UBOOT_BIN.exists() else [])


if _missing():
    # make test installs them (sysdeps-image); a machine without them must say so
    pytest.fail(f"the U-Boot boot test needs {', '.join(_missing())} (apt-get install "
                "qemu-system-arm u-boot-qemu u-boot-tools libubootenv-tool mtools dosfstools "
                "e2fsprogs fdisk)", pytrace=False)


def cmdline_of(slot: Slot) -> str:
    return f"root=PARTUUID={DISK_ID}-0{2 if slot is Slot.A else 3} ro rootwait"


class Card:
    """The test card and the Linux view of its boot partition (`boot_dir`)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.disk = work / "card.img"
        self.boot_dir = work / "boot-firmware"
        self.boot_dir.mkdir()
        self.fat = f"{self.disk}@@{LAYOUT[1][0] * MIB}"

    def build(self) -> None:
        with self.disk.open("wb") as f:
            f.truncate((LAYOUT[4][0] + LAYOUT[4][1]) * MIB)
        table = [f"label: dos\nlabel-id: 0x{DISK_ID}\nunit: sectors\n"]
        for number, (start, size) in LAYOUT.items():
            kind = "c, bootable" if number == 1 else "83"
            table.append(f"p{number} : start={start * 2048}, size={size * 2048}, type={kind}\n")
        subprocess.run(["sfdisk", "-q", str(self.disk)], input="".join(table), text=True,
                       check=True)
        fat = self.work / "fat.img"
        subprocess.run(["mkfs.vfat", "-C", "-F", "32", str(fat), str(LAYOUT[1][1] * 1024)],
                       check=True, capture_output=True)
        self.place(1, fat)
        source = self.work / "boot.cmd"
        source.write_text(boot_script(DISK_ID, "console=ttyAMA0,115200 console=tty1"))
        subprocess.run(["mkimage", "-A", "arm64", "-T", "script", "-C", "none", "-d",
                        str(source), str(self.work / "boot.scr")], check=True,
                       capture_output=True)
        self.mtools("mcopy", str(self.work / "boot.scr"), "::boot.scr")
        for slot in Slot:
            self.root(slot, kernel=True)
        self.root_number(4, {})

    def place(self, number: int, image: Path) -> None:
        subprocess.run(["dd", f"if={image}", f"of={self.disk}", "bs=1M",
                        f"seek={LAYOUT[number][0]}", "conv=notrunc", "status=none"], check=True)

    def root(self, slot: Slot, *, kernel: bool) -> None:
        """Root `slot` with junk in /boot/initrd.img and, if `kernel`, in /boot/vmlinuz, each
        a symlink to a versioned file as Debian makes them."""
        files = {"boot/initrd.img-6.1.0-test": os.urandom(3000)}
        if kernel:
            files["boot/vmlinuz-6.1.0-test"] = os.urandom(70_000)
        self.root_number(2 if slot is Slot.A else 3, files)

    def root_number(self, number: int, files: dict[str, bytes]) -> None:
        tree = self.work / f"tree-{number}"
        shutil.rmtree(tree, ignore_errors=True)
        (tree / "boot").mkdir(parents=True)
        for name, data in files.items():
            (tree / name).write_bytes(data)
            link = tree / name.rsplit("-", 3)[0]  # boot/vmlinuz -> vmlinuz-6.1.0-test
            link.symlink_to(Path(name).name)
        image = self.work / f"p{number}.img"
        image.unlink(missing_ok=True)
        subprocess.run(["mkfs.ext4", "-q", "-d", str(tree), str(image),
                        f"{LAYOUT[number][1]}M"], check=True, capture_output=True)
        self.place(number, image)

    def mtools(self, command: str, *args: str, check: bool = True) -> bool:
        done = subprocess.run([command, "-i", self.fat, *args], capture_output=True,
                              env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
        if check and done.returncode != 0:
            raise AssertionError(f"{command} {args}: {done.stderr.decode()}")
        return done.returncode == 0

    def push(self) -> None:
        """Linux's changes to the state copies, onto the card."""
        for name in COPIES:
            local = self.boot_dir / name
            if local.exists():
                self.mtools("mcopy", "-o", str(local), f"::{name}")
            else:
                self.mtools("mdel", f"::{name}", check=False)

    def pull(self) -> None:
        """The state copies as U-Boot left them, into the Linux view."""
        for name in COPIES:
            (self.boot_dir / name).unlink(missing_ok=True)
            self.mtools("mcopy", "-n", f"::{name}", str(self.boot_dir / name), check=False)

    def printenv(self, copy: int) -> dict[str, str] | None:
        """A copy as a technician's fw_printenv shows it; None when it cannot read it."""
        config = self.work / f"fw_env-{copy}.config"
        config.write_text(fw_env_config(self.boot_dir, copy))
        done = subprocess.run(["fw_printenv", "-c", str(config)], capture_output=True,
                              text=True)
        if done.returncode != 0:
            return None
        return dict(line.split("=", 1) for line in done.stdout.splitlines())

    def boot(self, timeout_s: float = 90) -> list[str]:
        """One power-on: U-Boot runs the script until it has tried both slots; the script's
        lines (and booti's complaints) in order."""
        self.push()
        started = time.monotonic()
        qemu = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-m", "512",
             "-nographic", "-no-reboot", "-bios", str(UBOOT_BIN), "-nic", "none",
             "-drive", f"if=none,file={self.disk},format=raw,id=card",
             "-device", "virtio-blk-device,drive=card"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace")
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert qemu.stdout is not None
            for raw in qemu.stdout:
                lines.put(raw.rstrip("\r\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        console: list[str] = []
        try:
            while True:
                left = timeout_s - (time.monotonic() - started)
                try:
                    line = lines.get(timeout=max(left, 0.1))
                except queue.Empty:
                    raise AssertionError("U-Boot did not finish the script in time:\n"
                                         + "\n".join(console[-40:])) from None
                if line is None:
                    raise AssertionError("qemu ended early:\n" + "\n".join(console[-40:]))
                console.append(line)
                if END in line or line.startswith("=>"):
                    break
        finally:
            qemu.terminate()
            qemu.wait(timeout=30)
        with (self.work / "console.log").open("a") as log:
            log.write("\n".join(console)
                      + f"\n(qemu ran {time.monotonic() - started:.1f} s)\n\n")
        self.pull()
        said = [line.strip() for line in console if "safecity-ab:" in line or "Bad Linux" in line]
        assert said, "the script said nothing:\n" + "\n".join(console[-40:])
        return said

    def linux(self, booted: Slot) -> UBoot:
        return UBoot(self.boot_dir, cmdline=cmdline_of(booted))


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Card]:
    card = Card(tmp_path_factory.mktemp("card"))
    card.build()
    yield card


def booting(lines: list[str]) -> list[str]:
    return [line for line in lines if "booting slot" in line]


def test_a_committed_slot_a_boots_a_and_the_state_is_not_written(card: Card) -> None:
    card.linux(Slot.A).commit()
    before = [(card.boot_dir / name).read_bytes() for name in COPIES]
    said = card.boot()
    assert booting(said)[0] == "safecity-ab: booting slot A"
    assert "Bad Linux ARM64 Image magic!" in said  # the junk kernel was loaded and refused
    assert [(card.boot_dir / name).read_bytes() for name in COPIES] == before


def test_a_trial_of_b_is_counted_in_both_copies(card: Card) -> None:
    card.linux(Slot.A).start_trial(Slot.B)
    said = card.boot()
    assert booting(said)[0] == "safecity-ab: booting slot B (trial 1 of 3)"
    for copy in (1, 2):
        assert card.printenv(copy) == {"bootcount": "1", "bootlimit": "3", "slot": "B",
                                       "upgrade_available": "1"}
    state = card.linux(Slot.B).state()
    assert (state.booted, state.primary, state.trial, state.tries) == (Slot.B, Slot.A, Slot.B, 1)


def test_a_trial_never_committed_falls_back_after_three_boots(card: Card) -> None:
    card.linux(Slot.A).start_trial(Slot.B)
    for n in (1, 2, 3):
        assert booting(card.boot())[0] == f"safecity-ab: booting slot B (trial {n} of 3)"
    said = card.boot()
    assert "safecity-ab: slot B failed 3 trial boots, back to slot A" in said
    assert booting(said)[0] == "safecity-ab: booting slot A"
    for copy in (1, 2):
        assert card.printenv(copy) == {"bootcount": "0", "bootlimit": "3", "slot": "A",
                                       "upgrade_available": "0"}
    state = card.linux(Slot.A).state()
    assert (state.primary, state.trial, state.damaged) == (Slot.A, None, "")


def test_a_trial_committed_from_linux_stays(card: Card) -> None:
    card.linux(Slot.A).start_trial(Slot.B)
    assert booting(card.boot())[0] == "safecity-ab: booting slot B (trial 1 of 3)"
    card.linux(Slot.B).commit()
    for _ in range(2):
        assert booting(card.boot())[0] == "safecity-ab: booting slot B"
    assert card.linux(Slot.B).state().primary == Slot.B


def flip_a_bit(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[40] ^= 0x01
    path.write_bytes(bytes(blob))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:2000])


@pytest.mark.parametrize("damage", [flip_a_bit, cut_short, Path.unlink],
                         ids=["bad CRC", "cut short", "missing"])
def test_a_damaged_copy_1_is_read_from_copy_2(card: Card, damage: object) -> None:
    card.linux(Slot.A).start_trial(Slot.B)
    damage(card.boot_dir / COPIES[0])  # type: ignore[operator]
    said = card.boot()
    assert said[0] == ("safecity-ab: safecity-ab-1.env is missing or damaged, "
                       "reading safecity-ab-2.env")
    assert booting(said)[0] == "safecity-ab: booting slot B (trial 1 of 3)"
    assert card.printenv(1) == card.printenv(2) == {  # U-Boot wrote both whole again
        "bootcount": "1", "bootlimit": "3", "slot": "B", "upgrade_available": "1"}


def test_without_any_state_the_card_boots_a(card: Card) -> None:
    for name in COPIES:
        (card.boot_dir / name).unlink()
    said = card.boot()
    assert said[:2] == [
        "safecity-ab: safecity-ab-1.env is missing or damaged, reading safecity-ab-2.env",
        "safecity-ab: safecity-ab-2.env is missing or damaged too: slot A, no trial"]
    assert booting(said)[0] == "safecity-ab: booting slot A"
    assert not any((card.boot_dir / name).exists() for name in COPIES)  # Linux writes them
    state = card.linux(Slot.A).state()
    assert state.primary == Slot.A and "safecity-ab-1.env is missing" in state.damaged
    card.linux(Slot.A).commit()
    assert card.printenv(1) == card.printenv(2) is not None


def test_a_slot_without_a_kernel_falls_back_for_this_boot(card: Card) -> None:
    card.root(Slot.B, kernel=False)
    try:
        card.linux(Slot.A).start_trial(Slot.B)
        said = card.boot()
        assert booting(said) == ["safecity-ab: booting slot B (trial 1 of 3)",
                                 "safecity-ab: booting slot A",
                                 ]
        assert "safecity-ab: slot B has no /boot/vmlinuz or /boot/initrd.img" in said
        assert said.index("safecity-ab: slot B has no /boot/vmlinuz or /boot/initrd.img") < (
            said.index("safecity-ab: booting slot A"))
        state = card.linux(Slot.A).state()  # the trial goes on counting; A runs meanwhile
        assert (state.booted, state.primary, state.trial, state.tries) == (
            Slot.A, Slot.A, Slot.B, 1)
    finally:
        card.root(Slot.B, kernel=True)
        card.linux(Slot.A).commit()


def test_extra_kernel_arguments_in_the_state_survive_u_boots_own_writes(card: Card) -> None:
    card.linux(Slot.A).start_trial(Slot.B)
    for copy in (1, 2):
        config = card.work / f"fw_env-{copy}.config"
        config.write_text(fw_env_config(card.boot_dir, copy))
        subprocess.run(["fw_setenv", "-c", str(config), "bootargs_extra", "console=ttyAMA0"],
                       check=True, capture_output=True)
    assert booting(card.boot())[0] == "safecity-ab: booting slot B (trial 1 of 3)"
    for copy in (1, 2):
        assert card.printenv(copy) == {"bootargs_extra": "console=ttyAMA0", "bootcount": "1",
                                       "bootlimit": "3", "slot": "B", "upgrade_available": "1"}
    card.linux(Slot.B).commit()
    assert card.printenv(1) == {"bootargs_extra": "console=ttyAMA0", "bootcount": "0",
                                "bootlimit": "3", "slot": "B", "upgrade_available": "0"}
