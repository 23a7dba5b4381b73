"""The real image: built from image.yaml (Debian's archive, PyPI's aarch64 wheels), checked,
and booted under qemu-system-aarch64 until the node is READY and its retained status has
reached the broker inside the guest. (Built a second time to the same bytes:
test_reproducible.py; updated: test_image_updates.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from imagebuild import build, qemu
from imagebuild.config import load

from tests.support.image_builds import Rebuild
from tests.support.paths import IMAGE_CONFIG, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def first(built_image: build.Built) -> build.Built:
    return built_image


def test_the_image_has_the_layout_the_pi_firmware_and_the_updates_expect(
        first: build.Built, rebuild: Rebuild) -> None:
    # (`rebuild` starts the second build now, so that it runs while this one is checked)
    config = load(IMAGE_CONFIG)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(first.img)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and table["id"] == config.ids.disk_id
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83", "83"]
    p = config.partitions
    assert [p_["size"] * 512 // 2**20 for p_ in parts] == [p.boot_mib, p.root_mib, p.root_mib,
                                                        p.data_mib]
    offset = parts[0]["start"] * 512
    listing = subprocess.run(["mdir", "-b", "-i", f"{first.img}@@{offset}", "::"],
                             capture_output=True, text=True, check=True,
                             env={"MTOOLS_SKIP_CHECK": "1"}).stdout
    names = {line.rsplit("/", 1)[-1] for line in listing.split()}
    for needed in ("start4.elf", "fixup4.dat", "bootcode.bin", "u-boot.bin", "boot.scr",
                   "safecity-ab-1.env", "safecity-ab-2.env", "config.txt",
                   "bcm2711-rpi-4-b.dtb", "bcm2837-rpi-3-b.dtb"):
        assert needed in names, f"{needed} missing from the boot partition: {sorted(names)}"
    # Root B is empty until the first update: not one byte of it is stored in the image.
    start_b, size_b = parts[2]["start"] * 512, parts[2]["size"] * 512
    with first.img.open("rb") as f:
        f.seek(start_b)
        remaining = size_b
        while remaining:
            chunk = f.read(min(remaining, 1 << 24))
            assert chunk.count(0) == len(chunk), "root B is not empty"
            remaining -= len(chunk)


def test_the_outputs_are_all_there_and_checked(first: build.Built) -> None:
    names = {f.name for f in first.files}
    stem = first.img.stem
    assert names == {first.img.name, f"{first.img.name}.xz", f"{stem}.bmap",
                     f"{stem}.os_list.json", f"{stem}.spdx.json", f"{stem}.bundle",
                     "SHA256SUMS"}
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=first.img.parent,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    sums = {name: digest for digest, name in
            (line.split() for line in (first.img.parent / "SHA256SUMS").read_text().splitlines())}
    xz = first.img.with_name(first.img.name + ".xz")
    # Budget: the compressed image a technician downloads.
    assert xz.stat().st_size <= 500 * 10**6, f"{xz.stat().st_size / 1e6:.0f} MB"
    os_list = json.loads(first.img.with_name(f"{stem}.os_list.json").read_text())["os_list"][0]
    assert os_list["extract_sha256"] == sums[first.img.name]
    assert os_list["image_download_sha256"] == sums[xz.name]
    assert os_list["extract_size"] == first.img.stat().st_size
    sbom = json.loads(first.img.with_name(f"{stem}.spdx.json").read_text())
    names_in_sbom = {p["name"] for p in sbom["packages"]}
    for package in ("linux-image-arm64", "raspi-firmware", "python3-systemd", "systemd",
                    "paho-mqtt", "numpy", "safecity-edge", "ai-edge-litert"):
        assert package in names_in_sbom, f"{package} is not in the SBOM"


def test_the_image_boots_in_qemu_and_the_node_reaches_ready_with_its_status_at_the_broker(
        first: build.Built, tmp_path: Path) -> None:
    config = load(IMAGE_CONFIG)
    disk = qemu.prepare(first.img, tmp_path, ROOT / "image-build" / "boot-test" / "node.yaml",
                        extra_args=qemu.reporter_args(config))
    boot = qemu.boot(disk, tmp_path)
    assert boot.ready_s is not None, qemu.tail(boot)
    assert boot.status is not None, "no retained status reached the guest's broker" + \
        qemu.tail(boot)
    assert boot.status["node"] == "qemu-boot-test"
    assert boot.status["state"] == "online"
    facts = boot.facts or {}
    # Root is read-only; the card's machine id was saved on the data partition; the
    # technician's config moved from the boot partition to the data partition.
    assert "ro" in str(facts["root"]).split(","), facts
    assert facts["machine_id"] == facts["saved_machine_id"], facts
    assert "node.yaml" in facts["provisioned"], facts  # type: ignore[operator]
    assert not [u for u in facts["failed_units"] if u], facts  # type: ignore[attr-defined]
    # The pole carries only pole code: no hub console, no demo, no provisioning, no rich.
    assert facts["importable"] == {"edge": True, "contract": True, "drivers": True,
                                   "firmware": True, "hub": False, "devkit": False,
                                   "provisioning": False, "rich": False}, facts["importable"]
    shipped = set(facts["distributions"])  # type: ignore[call-overload]
    assert "safecity-edge" in shipped, shipped
    assert not shipped & {"safecity-hub", "safecity-devkit", "safecity-provisioning", "rich"}
    print(f"boot: READY after {boot.ready_s:.1f} s (guest: {boot.ready_guest_s:.1f} s since "
          f"the kernel started), powered off after {boot.powered_off_s:.1f} s")
    chain = [line.split("CHAIN", 1)[1] for line in boot.console if "EDGE-TEST CHAIN" in line]
    print("since the kernel started:\n" + "\n".join(chain))
