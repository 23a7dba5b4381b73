"""Boot control from Linux's side: the U-Boot backend with the real fw_setenv on state copies
in a directory standing in for /boot/firmware, and the tryboot backend on a fake /proc
device tree (the Pi firmware's) and autoboot.txt."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from firmware.bootctl import (
    BootControlError,
    BootState,
    Slot,
    Tryboot,
    UBoot,
    boot_script,
    detect,
    fw_env_config,
    kernel_supports_tryboot,
    slot_from_cmdline,
)
from firmware.bootctl.base import mount_point_if_readonly, run_command
from firmware.bootctl.uboot import COPIES, ENV_SIZE, check_written, read_copy
from tests.support.uboot_env import DISK, booted_from, printenv

PARTUUIDS = {Slot.A: f"{DISK}-02", Slot.B: f"{DISK}-03"}


def uboot(boot_dir: Path, booted: Slot, **kwargs: object) -> UBoot:
    return UBoot(boot_dir, cmdline=booted_from(booted), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def boot_dir(tmp_path: Path) -> Path:
    path = tmp_path / "boot-firmware"
    path.mkdir()
    return path


# --- the booted slot ------------------------------------------------------------------

def test_the_booted_slot_is_the_root_the_kernel_was_given() -> None:
    assert slot_from_cmdline(booted_from(Slot.A), PARTUUIDS) is Slot.A
    assert slot_from_cmdline(booted_from(Slot.B), PARTUUIDS) is Slot.B
    # the kernel takes the last root=, and PARTUUIDs compare without case
    assert slot_from_cmdline(f"root=PARTUUID={DISK}-02 root=PARTUUID=5AFEC17E-03",
                             PARTUUIDS) is Slot.B


def test_a_root_that_is_no_slot_is_reported_with_what_was_found() -> None:
    with pytest.raises(BootControlError, match="root=PARTUUID=5afec17e-04, which is neither"):
        slot_from_cmdline(f"root=PARTUUID={DISK}-04 ro", PARTUUIDS)
    with pytest.raises(BootControlError, match="no root=PARTUUID"):
        slot_from_cmdline("root=/dev/mmcblk0p2 ro", PARTUUIDS)


# --- U-Boot: the state copies through fw_setenv ---------------------------------------

def test_a_trial_armed_from_a_is_in_both_copies(boot_dir: Path) -> None:
    control = uboot(boot_dir, Slot.A)
    control.start_trial(Slot.B)
    assert control.state() == BootState(Slot.A, Slot.A, Slot.B, 0, 3, "")
    expected = {"slot": "B", "upgrade_available": "1", "bootcount": "0", "bootlimit": "3"}
    assert printenv(boot_dir, 1) == printenv(boot_dir, 2) == expected
    assert read_copy(boot_dir / COPIES[0]) == (expected, "")  # our reader agrees
    assert control.reboot_argv() == ["systemctl", "reboot"]


def test_a_healthy_trial_boot_commits_and_the_trial_ends(boot_dir: Path) -> None:
    uboot(boot_dir, Slot.A).start_trial(Slot.B)
    for copy in (1, 2):  # what U-Boot writes on the first trial boot
        config = boot_dir.parent / "fw.config"
        config.write_text(fw_env_config(boot_dir, copy))
        subprocess.run(["fw_setenv", "-c", str(config), "bootcount", "1"], check=True)
    on_b = uboot(boot_dir, Slot.B)
    assert on_b.state() == BootState(Slot.B, Slot.A, Slot.B, 1, 3, "")
    on_b.commit()
    assert on_b.state() == BootState(Slot.B, Slot.B, None, 0, 3, "")
    assert printenv(boot_dir, 2) == {"slot": "B", "upgrade_available": "0", "bootcount": "0",
                                     "bootlimit": "3"}


def test_an_install_that_fails_after_arming_abandons_the_trial(boot_dir: Path) -> None:
    control = uboot(boot_dir, Slot.A, limit=5)
    control.start_trial(Slot.B)
    assert control.state().limit == 5
    control.abandon()
    assert control.state() == BootState(Slot.A, Slot.A, None, 0, 5, "")


def test_the_running_slot_cannot_be_put_on_trial(boot_dir: Path) -> None:
    with pytest.raises(BootControlError, match="slot A is running now"):
        uboot(boot_dir, Slot.A).start_trial(Slot.A)
    assert not (boot_dir / COPIES[0]).exists()


def flip_a_bit(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[20] ^= 0x01
    path.write_bytes(bytes(blob))


def cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def set_slot_c(path: Path) -> None:  # a good CRC around a value the boot script refuses
    config = path.parent.parent / "one.config"
    config.write_text(f"{path} 0x0000 {ENV_SIZE:#x}\n")
    subprocess.run(["fw_setenv", "-c", str(config), "slot", "C"], check=True)


@pytest.mark.parametrize(("damage", "said"), [
    (flip_a_bit, "safecity-ab-1.env has a bad CRC; safecity-ab-2.env used"),
    (cut_short, "safecity-ab-1.env is cut short (1000 of 16384 bytes); safecity-ab-2.env used"),
    (Path.unlink, "safecity-ab-1.env is missing; safecity-ab-2.env used"),
    (set_slot_c, "safecity-ab-1.env holds slot='C', not A or B; safecity-ab-2.env used"),
])
def test_a_damaged_copy_1_is_read_from_copy_2_and_healed_by_commit(
        boot_dir: Path, damage: object, said: str) -> None:
    uboot(boot_dir, Slot.A).start_trial(Slot.B)
    damage(boot_dir / COPIES[0])  # type: ignore[operator]
    assert uboot(boot_dir, Slot.B).state() == BootState(Slot.B, Slot.A, Slot.B, 0, 3, said)
    uboot(boot_dir, Slot.B).commit()
    assert uboot(boot_dir, Slot.B).state() == BootState(Slot.B, Slot.B, None, 0, 3, "")
    assert printenv(boot_dir, 1) == printenv(boot_dir, 2)


def test_a_damaged_copy_2_is_reported_while_copy_1_is_used(boot_dir: Path) -> None:
    uboot(boot_dir, Slot.A).commit()
    flip_a_bit(boot_dir / COPIES[1])
    assert printenv(boot_dir, 2) is None  # fw_printenv refuses it as well
    assert uboot(boot_dir, Slot.A).state().damaged == (
        "safecity-ab-2.env has a bad CRC; safecity-ab-1.env used")


def test_with_both_copies_gone_the_booted_slot_is_primary_until_committed(
        boot_dir: Path) -> None:
    state = uboot(boot_dir, Slot.B).state()
    assert (state.booted, state.primary, state.trial) == (Slot.B, Slot.B, None)
    assert state.damaged == ("safecity-ab-1.env is missing and safecity-ab-2.env is missing: "
                             "the next boot goes to slot A with no trial until the state is "
                             "committed again")
    uboot(boot_dir, Slot.B).commit()
    assert printenv(boot_dir, 1) == printenv(boot_dir, 2) == {
        "slot": "B", "upgrade_available": "0", "bootcount": "0", "bootlimit": "3"}


def test_fw_setenv_with_name_space_value_lines_is_caught_by_the_read_back(
        boot_dir: Path) -> None:
    uboot(boot_dir, Slot.A).commit()
    script = boot_dir.parent / "wrong.txt"
    script.write_text("slot B\n")  # libubootenv wants slot=B; this exits 0, changing nothing
    config = boot_dir.parent / "fw.config"
    config.write_text(fw_env_config(boot_dir, 1))
    done = subprocess.run(["fw_setenv", "-c", str(config), "-s", str(script)])
    assert done.returncode == 0
    with pytest.raises(BootControlError, match="slot='A' instead of 'B'"):
        check_written(boot_dir / COPIES[0], {"slot": "B"})


def test_a_write_that_did_nothing_is_an_error(boot_dir: Path) -> None:
    uboot(boot_dir, Slot.A).commit()

    def fw_setenv_doing_nothing(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, "", "")

    with pytest.raises(BootControlError, match="upgrade_available='0' instead of '1'"):
        uboot(boot_dir, Slot.A, run=fw_setenv_doing_nothing).start_trial(Slot.B)


def test_a_read_only_boot_partition_is_remounted_for_the_write_and_back(
        boot_dir: Path, tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 259:2 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
        f"30 22 259:1 / {boot_dir} ro,relatime shared:7 - vfat /dev/mmcblk0p1 ro,fmask=0022\n")
    calls: list[list[str]] = []

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        if argv[0] == "mount":
            return subprocess.CompletedProcess(argv, 0, "", "")
        return run_command(argv)

    uboot(boot_dir, Slot.A, run=run, mountinfo=mountinfo).start_trial(Slot.B)
    assert [c[0] for c in calls] == ["mount", "fw_setenv", "fw_setenv", "mount"]
    assert calls[0] == ["mount", "-o", "remount,rw", str(boot_dir)]
    assert calls[-1] == ["mount", "-o", "remount,ro", str(boot_dir)]


def test_the_mount_holding_a_file_is_the_deepest_one(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 259:2 / / ro,relatime - ext4 /dev/root ro\n"
        "30 22 259:1 / /boot/fw\\040card rw,relatime - vfat /dev/mmcblk0p1 rw\n")
    assert mount_point_if_readonly(Path("/boot/fw card/x.env"), mountinfo) is None
    assert mount_point_if_readonly(Path("/etc/x"), mountinfo) == Path("/")
    assert mount_point_if_readonly(Path("/etc/x"), tmp_path / "none") is None


def test_the_trial_limit_fits_the_boot_scripts_one_digit(boot_dir: Path) -> None:
    with pytest.raises(BootControlError, match="must be 1 to 9"):
        uboot(boot_dir, Slot.A, limit=10)


def test_the_boot_script_is_filled_in_for_the_card() -> None:
    script = boot_script("0x5AFEC17E", "console=ttyAMA0,115200 console=tty1")
    assert ('setenv bootargs "root=PARTUUID=5afec17e-0${ab_part} ro rootwait '
            'console=ttyAMA0,115200 console=tty1 ${bootargs_extra}"') in script
    assert "@" not in script
    with pytest.raises(ValueError, match="8 hex digits"):
        boot_script("5afec17", "")
    with pytest.raises(ValueError, match="cannot hold quotes"):
        boot_script(DISK, 'console=ttyAMA0 init="/bin/sh"')


def test_the_technicians_fw_env_config_names_each_copy() -> None:
    assert fw_env_config(Path("/boot/firmware"), 1) == (
        "/boot/firmware/safecity-ab-1.env 0x0000 0x4000\n")
    assert fw_env_config(Path("/boot/firmware"), 2).startswith(
        "/boot/firmware/safecity-ab-2.env ")


# --- tryboot: the Pi firmware's autoboot.txt and device tree ----------------------------

def pi(tmp_path: Path, partition: int, tryboot: int, autoboot: str | None) -> Tryboot:
    """A Pi that booted `partition` (with the tryboot flag if `tryboot`) and its FAT
    partition 1 holding `autoboot` (None: no file)."""
    node = tmp_path / "proc" / "device-tree" / "chosen" / "bootloader"
    node.mkdir(parents=True, exist_ok=True)
    (node / "partition").write_bytes(partition.to_bytes(4, "big"))
    (node / "tryboot").write_bytes(tryboot.to_bytes(4, "big"))
    boot = tmp_path / "autoboot-fat"
    boot.mkdir(exist_ok=True)
    if autoboot is not None:
        (boot / "autoboot.txt").write_text(autoboot)
    return Tryboot(boot, tmp_path / "proc")


AUTOBOOT_A = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n"


def test_tryboot_an_ordinary_boot_of_a(tmp_path: Path) -> None:
    assert pi(tmp_path, 2, 0, AUTOBOOT_A).state() == BootState(Slot.A, Slot.A, None, 0, 1, "")


def test_tryboot_the_trial_boot_of_b_and_its_commit(tmp_path: Path) -> None:
    control = pi(tmp_path, 3, 1, AUTOBOOT_A)
    assert control.state() == BootState(Slot.B, Slot.A, Slot.B, 1, 1, "")
    control.commit()
    assert control.autoboot.read_text() == (
        "[all]\ntryboot_a_b=1\nboot_partition=3\n[tryboot]\nboot_partition=3\n")
    assert control.state() == BootState(Slot.B, Slot.B, None, 0, 1, "")
    assert not (control.boot_dir / "autoboot.txt.new").exists()


def test_tryboot_arming_a_trial_keeps_the_primary_slot(tmp_path: Path) -> None:
    committed_a = "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=2\n"
    control = pi(tmp_path, 2, 0, committed_a)
    control.start_trial(Slot.B)
    assert control.autoboot.read_text() == AUTOBOOT_A
    assert control.reboot_argv() == ["systemctl", "reboot", "0 tryboot"]
    control.abandon()
    assert control.autoboot.read_text() == committed_a
    with pytest.raises(BootControlError, match="slot A is running now"):
        control.start_trial(Slot.A)


def test_tryboot_a_trial_that_failed_is_back_on_the_primary(tmp_path: Path) -> None:
    # the trial boot of B did not commit; the next reboot, without the flag, runs A again
    assert pi(tmp_path, 2, 0, AUTOBOOT_A).state().trial is None


@pytest.mark.parametrize(("autoboot", "said"), [
    (None, "autoboot.txt is missing"),
    ("[all]\nboot_partition=2\n", "autoboot.txt has no tryboot_a_b=1 under [all]"),
    ("[all]\ntryboot_a_b=1\nboot_partition=two\n", "has no boot_partition=<number> under"),
    ("[all]\ntryboot_a_b=1\nboot_partition=5\n", "names boot partition 5, which is neither"),
])
def test_tryboot_a_garbled_autoboot_txt_is_reported(tmp_path: Path, autoboot: str | None,
                                                    said: str) -> None:
    state = pi(tmp_path, 3, 0, autoboot).state()
    assert (state.booted, state.primary, state.trial) == (Slot.B, Slot.B, None)
    assert said in state.damaged


def test_tryboot_without_the_firmwares_device_tree_node_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(BootControlError, match="not started by Raspberry Pi firmware"):
        Tryboot(tmp_path, tmp_path / "proc").state()


def test_only_a_raspberry_pi_kernel_can_arm_tryboot(tmp_path: Path) -> None:
    pi(tmp_path, 2, 0, AUTOBOOT_A)
    dev = tmp_path / "dev"
    dev.mkdir()
    assert not kernel_supports_tryboot(tmp_path / "proc", dev)  # Debian's kernel: no vcio
    (dev / "vcio").touch()
    assert kernel_supports_tryboot(tmp_path / "proc", dev)
    assert not kernel_supports_tryboot(tmp_path / "elsewhere", dev)


# --- which backend -------------------------------------------------------------------

def test_detect_picks_the_loader_the_card_was_set_up_for(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "cmdline").write_text(booted_from(Slot.A))
    boot = tmp_path / "boot"
    boot.mkdir()
    with pytest.raises(BootControlError, match="no A/B boot loader set up on this card"):
        detect(boot, proc)
    (boot / "autoboot.txt").write_text(AUTOBOOT_A)
    assert detect(boot, proc).name == "tryboot"
    (boot / "boot.scr").write_bytes(b"\x27\x05\x19\x56")
    control = detect(boot, proc)
    assert control.name == "u-boot"
    assert isinstance(control, UBoot) and control.partuuids == PARTUUIDS
