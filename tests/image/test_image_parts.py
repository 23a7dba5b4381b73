"""The image pipeline's parts on small inputs: image.yaml's errors, the host check, filesystems
that come out the same twice, the MBR layout, the boot partition's files, and mmdebstrap's
command for a first and a cached build."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from imagebuild import build, disk, rootfs, tools, wheels
from imagebuild.config import ImageConfigError, load

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "image-build" / "image.yaml"
EPOCH = 1_763_683_200


def test_the_shipped_image_yaml_is_valid_and_names_the_pi_device_trees() -> None:
    config = load(CONFIG)
    assert "linux-image-arm64" in config.debian.packages
    assert "bcm2711-rpi-4-b.dtb" in config.device_trees
    assert config.ids.partuuid(2) == config.ids.disk_id[2:] + "-02"
    assert config.python.platform_tags[0] == f"manylinux_2_{config.python.glibc[2:]}_aarch64"
    assert "manylinux_2_17_aarch64" in config.python.platform_tags


def test_a_bad_image_yaml_names_every_bad_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(CONFIG.read_text())
    raw["boards"] = ["pi5"]
    raw["ids"]["disk_id"] = "5afe"
    raw["debian"]["packages"].append("Not A Package")
    bad = tmp_path / "image.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ImageConfigError) as err:
        load(bad)
    text = str(err.value)
    assert "boards.0" in text and "ids.disk_id" in text and "debian.packages" in text
    bad.write_text("boards: [pi4\n")
    with pytest.raises(ImageConfigError, match="not valid YAML"):
        load(bad)


def test_missing_tools_are_named_with_the_apt_line_that_installs_them(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("imagebuild.tools.shutil.which", lambda cmd, path=None: None)
    with pytest.raises(tools.HostNotReady) as err:
        tools.check_host(boot_test=True)
    text = str(err.value)
    assert "mmdebstrap" in text and "qemu-system-aarch64" in text
    assert "apt-get install" in text and "qemu-system-arm" in text and "mtools" in text


def test_a_disabled_or_absent_arm64_handler_says_how_to_enable_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tools, "BINFMT", tmp_path)
    assert "mount -t binfmt_misc" in str(tools.aarch64_binfmt())
    (tmp_path / "status").write_text("enabled\n")
    assert "apt-get install qemu-user-static" in str(tools.aarch64_binfmt())
    (tmp_path / "qemu-aarch64").write_text("disabled\ninterpreter /usr/libexec/x\nflags: PF\n")
    assert "update-binfmts --enable qemu-aarch64" in str(tools.aarch64_binfmt())
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/x\nflags: P\n")
    assert "F (fix binary)" in str(tools.aarch64_binfmt())
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/libexec/x\nflags: PF\n")
    assert tools.aarch64_binfmt() is None


def small_tree(base: Path) -> Path:
    tree = base / "tree"
    (tree / "etc" / "edge").mkdir(parents=True)
    (tree / "etc" / "edge" / "node.yaml").write_text("node: {id: x}\n")
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "usr" / "bin" / "tool").write_bytes(os.urandom(100_000))
    (tree / "usr" / "bin" / "tool").chmod(0o755)
    (tree / "etc" / "link").symlink_to("edge/node.yaml")
    return tree


def test_an_ext4_image_of_the_same_tree_is_the_same_bytes_even_when_its_files_changed_time(
        tmp_path: Path) -> None:
    tree = small_tree(tmp_path)
    args: dict[str, Any] = {
        "size_mib": 16, "label": "root", "uuid": "5afec17e-0002-4a00-8000-000000000002",
        "hash_seed": "5afec17e-ffff-4a00-8000-00000000a5ed", "epoch": EPOCH}
    disk.make_ext4(tree, tmp_path / "one.ext4", **args)
    time.sleep(1.1)
    (tree / "usr" / "bin" / "tool").chmod(0o755)  # a new ctime, as a rebuild's files have
    disk.make_ext4(tree, tmp_path / "two.ext4", **args)
    assert (tmp_path / "one.ext4").read_bytes() == (tmp_path / "two.ext4").read_bytes()
    fsck = subprocess.run(["e2fsck", "-fn", str(tmp_path / "one.ext4")], capture_output=True,
                          text=True, check=False)
    assert fsck.returncode == 0, fsck.stdout
    cat = subprocess.run(["debugfs", "-R", "cat /etc/edge/node.yaml", str(tmp_path / "one.ext4")],
                         capture_output=True, text=True, check=True)
    assert cat.stdout == "node: {id: x}\n"
    stat = subprocess.run(["debugfs", "-R", "stat /usr/bin/tool", str(tmp_path / "one.ext4")],
                          capture_output=True, text=True, check=True).stdout
    assert f"ctime: {EPOCH:#x}" in stat and f"mtime: {EPOCH:#x}" in stat


def test_a_fat_image_of_the_same_files_is_the_same_bytes(tmp_path: Path) -> None:
    blob = tmp_path / "start4.elf"
    blob.write_bytes(os.urandom(50_000))
    cfg = tmp_path / "config.txt"
    cfg.write_text("arm_64bit=1\n")
    files = {"start4.elf": blob, "config.txt": cfg, "overlays/x.dtbo": cfg}
    args: dict[str, Any] = {"size_mib": 64, "volume_id": "5AFE0001", "label": "BOOT",
                            "epoch": EPOCH}
    disk.make_fat(files, tmp_path / "one.vfat", **args)
    time.sleep(1.1)
    cfg.touch()
    disk.make_fat(files, tmp_path / "two.vfat", **args)
    assert (tmp_path / "one.vfat").read_bytes() == (tmp_path / "two.vfat").read_bytes()
    out = subprocess.run(["mtype", "-i", str(tmp_path / "one.vfat"), "::overlays/x.dtbo"],
                         capture_output=True, text=True, check=True,
                         env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    assert out == "arm_64bit=1\n"


def test_the_card_has_four_primary_partitions_each_image_at_its_place_and_root_b_empty(
        tmp_path: Path) -> None:
    one = tmp_path / "a.bin"
    one.write_bytes(b"A" * 4096 + bytes(200_000) + b"Z")
    two = tmp_path / "b.bin"
    two.write_bytes(os.urandom(5000))
    img = tmp_path / "card.img"
    placed = disk.assemble(img, [disk.Partition("boot", 2, "c", one),
                                 disk.Partition("root-a", 3, "83", two),
                                 disk.Partition("root-b", 3, "83", None),
                                 disk.Partition("data", 1, "83", two)],
                           disk_id="0x5afec17e", first_offset_mib=1)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["id"] == "0x5afec17e"
    assert [(p["start"] * 512, p["size"] * 512) for p in table["partitions"]] == placed
    assert [p["type"] for p in table["partitions"]] == ["c", "83", "83", "83"]
    data = img.read_bytes()
    assert data[placed[0][0]:placed[0][0] + one.stat().st_size] == one.read_bytes()
    assert data[placed[1][0]:placed[1][0] + 5000] == two.read_bytes()
    assert data[placed[2][0]:placed[2][0] + placed[2][1]].count(0) == placed[2][1]
    # Sparse: the zero run inside the first image and root B are holes, not written blocks.
    assert os.stat(img).st_blocks * 512 < img.stat().st_size // 2
    with pytest.raises(disk.DiskError, match="do not fit"):
        disk.assemble(img, [disk.Partition("boot", 1, "c", tmp_path / "a.bin"),
                            disk.Partition("big", 1, "83", img)],
                      disk_id="0x5afec17e", first_offset_mib=1)


def test_mmdebstrap_uses_the_mirror_the_first_time_and_only_the_cache_after(
        tmp_path: Path) -> None:
    config = load(CONFIG)
    debs = tmp_path / "debs"
    cold = rootfs.mmdebstrap_command(config, tmp_path / "root", debs, customize=["true"])
    assert cold[-1].startswith(f"deb {config.debian.mirror} {config.debian.suite} main")
    assert any(a.startswith("--customize-hook=mkdir -p") and str(debs) in a for a in cold)
    assert any("MODULES=list" in a for a in cold if a.startswith("--essential-hook"))
    debs.mkdir()
    (debs / rootfs.COMPLETE).write_text("")
    warm = rootfs.mmdebstrap_command(config, tmp_path / "root", debs, customize=["true"])
    assert warm[-1] == f"deb [trusted=yes] file://{debs} ./"
    assert not any(config.debian.mirror in a for a in warm)
    other = config.model_copy(update={"debian": config.debian.model_copy(
        update={"packages": [*config.debian.packages, "htop"]})})
    assert rootfs.deb_cache_key(other) != rootfs.deb_cache_key(config)


def test_commands_in_the_image_get_none_of_the_hosts_pip_or_locale_settings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    env = rootfs.chroot_env(EPOCH)
    assert "PIP_FIND_LINKS" not in env and env["SOURCE_DATE_EPOCH"] == str(EPOCH)
    assert env["PYTHONHASHSEED"] == "0"


def test_a_build_leaves_no_machine_id_logs_or_package_lists(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("etc", "var/log/apt", "var/lib/apt/lists", "var/cache/debconf", "tmp",
              "var/lib/dbus"):
        (root / d).mkdir(parents=True)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/lib/dbus/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "var/log/apt/history.log").write_text("x")
    (root / "var/lib/apt/lists/deb.debian.org_Packages").write_text("x")
    (root / "var/cache/debconf/config.dat").write_text("keep")
    (root / "var/cache/debconf/config.dat-old").write_text("x")
    (root / "tmp/wheels.txt").write_text("x")
    rootfs.clean(root)
    assert (root / "etc/machine-id").read_text() == ""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert not any((root / "var/log").iterdir()) and not any((root / "tmp").iterdir())
    assert not any((root / "var/lib/apt/lists").iterdir())
    assert [p.name for p in (root / "var/cache/debconf").iterdir()] == ["config.dat"]


def test_the_boot_partition_gets_firmware_device_trees_u_boot_its_script_and_the_slot_state(
        tmp_path: Path) -> None:
    config = load(CONFIG)
    root = tmp_path / "root"
    (root / "usr/lib/raspi-firmware").mkdir(parents=True)
    for blob in ("start4.elf", "fixup4.dat", "bootcode.bin"):
        (root / "usr/lib/raspi-firmware" / blob).write_text(blob)
    (root / "usr/lib/u-boot/rpi_arm64").mkdir(parents=True)
    (root / "usr/lib/u-boot/rpi_arm64/u-boot.bin").write_text("u-boot")
    trees = root / "usr/lib/linux-image-6.12.0-1-arm64/broadcom"
    trees.mkdir(parents=True)
    for dtb in config.device_trees:
        (trees / dtb).write_text(dtb)
    (root / "boot").mkdir()
    (root / "boot/vmlinuz-6.12.0-1-arm64").write_text("kernel")
    (root / "boot/initrd.img-6.12.0-1-arm64").write_text("initrd")
    kernel = build.kernel_version(root)
    files = build.boot_files(config, root, kernel, tmp_path)
    assert kernel == "6.12.0-1-arm64"
    assert "start4.elf" in files and files["u-boot.bin"].read_text() == "u-boot"
    # The kernel comes from the slot's own /boot, not from the shared boot partition.
    assert "vmlinuz" not in files and "cmdline.txt" not in files
    assert "kernel=u-boot.bin" in files["config.txt"].read_text()
    script = files["boot.scr"].read_bytes()
    assert f"root=PARTUUID={config.ids.partuuid(1)[:-3]}-0${{ab_part}}".encode() in script
    for copy in ("safecity-ab-1.env", "safecity-ab-2.env"):
        state = dict(line.split("=", 1) for line in subprocess.run(
            ["fw_printenv", "-c", "/dev/stdin"], input=f"{files[copy]} 0x0000 0x4000\n",
            capture_output=True, text=True, check=True).stdout.splitlines())
        assert state == {"slot": "A", "upgrade_available": "0", "bootcount": "0",
                         "bootlimit": "3"}, copy
    (trees / "bcm2711-rpi-4-b.dtb").unlink()
    with pytest.raises(rootfs.RootfsError, match=r"bcm2711-rpi-4-b\.dtb"):
        build.boot_files(config, root, kernel, tmp_path)


def test_the_image_installs_the_locked_versions_without_the_test_tools() -> None:
    text = wheels.constraints(load(CONFIG))
    assert "paho-mqtt==" in text and "setuptools==" in text
    assert wheels.project_version().count(".") == 2


def test_a_cached_build_leaves_no_trace_of_the_cache_folder_in_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/info/base-files.list").write_text("/.\n/root\n/tmp\n")
    mounted = Path("/tmp/ci-cache/safecity-edge/image/debs/0123abcd")
    (root / mounted.relative_to("/")).mkdir(parents=True)
    (root / "tmp/keep.txt").write_text("x")
    rootfs.remove_unowned_dirs(root, mounted)
    assert sorted(p.name for p in (root / "tmp").iterdir()) == ["keep.txt"]
    # A folder that is not empty is never removed.
    (root / "root/.cache/x").mkdir(parents=True)
    (root / "root/.cache/x/file").write_text("x")
    rootfs.remove_unowned_dirs(root, Path("/root/.cache/x/y"))
    assert (root / "root/.cache/x/file").exists()
