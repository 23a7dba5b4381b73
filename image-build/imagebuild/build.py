"""`make image`: every step from image.yaml to the files a technician flashes, in order, with
progress bars on the long ones and one table at the end (step times and sizes)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from imagebuild import disk, outputs, rootfs, tools, wheels
from imagebuild.config import ImageConfig, ImageConfigError, load

IMAGE_BUILD = Path(__file__).resolve().parents[1]
REPO = IMAGE_BUILD.parent
console = Console(stderr=True)


@dataclass
class Built:
    """What a build made: the files, and how long each step took (for the bench table)."""

    img: Path
    files: list[Path]
    version: str
    kernel: str
    steps: dict[str, float] = field(default_factory=dict)


def source_date_epoch() -> int:
    """SOURCE_DATE_EPOCH if set, else the time of the checked-out commit: same commit, same
    bytes."""
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    out = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%ct"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return int(out)


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "safecity-edge" / "image"


def release_of(version: str) -> str:
    """The image's version: the project's, plus the commit (and '-dirty' for local changes)."""
    described = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty",
                                "--abbrev=10", "--match=NONE"], capture_output=True, text=True,
                               check=False).stdout.strip()
    return f"{version}+g{described}" if described else version


def unmount_below(path: Path) -> None:
    """A build killed mid-way can leave proc, sys or the wheels mounted inside the old root;
    never delete through a mount."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)


def default_signing_key(cache: Path) -> Path:
    """A development release key kept beside the package cache, made on first use: images
    built with it trust only bundles signed with it. Releases use the city's key."""
    return cache.parent / "release-key" / "development.pem"


def signing_key(path: Path) -> Path:
    """The release key's public half (made with the key if this is the development key)."""
    from firmware.keys import generate

    if not path.exists():
        console.print(f"[yellow]no release key at {path}: making a development key there; "
                      "nodes from this image accept only updates signed with it[/]")
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path)
    public = path.with_suffix(".pub")
    if not public.exists():
        raise rootfs.RootfsError(f"{public} is missing: the image must carry the public key "
                                 f"of {path} (edge-firmware keygen writes both)")
    return public


def release_json(config: ImageConfig, version: str, epoch: int, release: str) -> str:
    commit = release.partition("+g")[2]
    return json.dumps({"version": version, "build": epoch, "commit": commit,
                       "boards": config.boards}, sort_keys=True)


def build(config_path: Path, out: Path, cache: Path, *, keep_work: bool = False,
          key: Path | None = None) -> Built:
    config = load(config_path)
    tools.check_host()
    epoch = source_date_epoch()
    version = wheels.project_version()
    release = release_of(version)
    key = key or default_signing_key(cache)
    public_key = signing_key(key)
    work = out / "work"
    unmount_below(work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    steps: dict[str, float] = {}
    started = time.monotonic()

    def step(name: str, began: float) -> None:
        steps[name] = time.monotonic() - began
        console.print(f"[green]✓[/] {name} ({steps[name]:.0f} s)")

    with progress() as bar:
        t = time.monotonic()
        task = bar.add_task("wheels: the project's own, then aarch64 wheels", total=None)
        own = wheels.build_own(work / "own-wheel", epoch)
        wheel_cache = cache / "wheels" / f"cp{config.python.version.replace('.', '')}"
        for old in wheel_cache.glob("safecity_edge-*.whl"):
            old.unlink()
        wheels.fetch(config, wheel_cache, own)
        bar.remove_task(task)
    step("wheels", t)

    debs = cache / "debs" / rootfs.deb_cache_key(config)
    root = work / "rootfs"
    plan = work / "plan.json"
    plan.write_text(json.dumps({"config": str(config_path.resolve()), "wheels": str(wheel_cache),
                                "debs": str(debs.resolve()),
                                "version": version, "source_date_epoch": str(epoch),
                                "release": release_json(config, version, epoch, release),
                                "public_key": str(public_key.resolve())}))
    hook = (f"{sys.executable} -m imagebuild.rootfs \"$1\" {plan}")
    cmd = rootfs.mmdebstrap_command(config, root, debs, customize=[hook])
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(epoch), "PYTHONPATH": str(IMAGE_BUILD),
           "TZ": "UTC", "LC_ALL": "C.UTF-8"}
    cold = not (debs / rootfs.COMPLETE).exists()
    with progress() as bar:
        t = time.monotonic()
        label = "root A: Debian packages from " + ("the mirror (first build)" if cold
                                                   else "the local cache")
        task = bar.add_task(label, total=None)

        def on_line(line: str) -> None:
            if line.startswith("I: "):
                bar.update(task, description=f"root A: {line[3:][:70]}")

        try:
            rootfs.run_mmdebstrap(cmd, env, work / "mmdebstrap.log", on_line)
        finally:
            unmount_below(root)
        bar.remove_task(task)
    if cold:
        rootfs.index_debs(debs, config)
    step("root filesystem (mmdebstrap, venv, units)", t)

    t = time.monotonic()
    kernel = kernel_version(root)
    with progress() as bar:
        task = bar.add_task("filesystems: boot (FAT), root A and data (ext4)", total=4)
        boot_img = work / "boot.vfat"
        disk.make_fat(boot_files(config, root, kernel, work), boot_img,
                      size_mib=config.partitions.boot_mib, volume_id=config.ids.boot_volume_id,
                      label="BOOT", epoch=epoch)
        bar.advance(task)
        data_tree = data_skeleton(root, work / "data")
        debs_list = outputs.installed_debs(root)
        dists = outputs.installed_dists(site_packages(root, config))
        root_img = work / "root.ext4"
        disk.make_ext4(root, root_img, size_mib=config.partitions.root_mib, label="root",
                       uuid=config.ids.root_uuid, hash_seed=config.ids.hash_seed, epoch=epoch)
        bar.advance(task)
        index_slot_a(root, root_img, data_tree)
        data_img = work / "data.ext4"
        disk.make_ext4(data_tree, data_img, size_mib=config.partitions.data_mib, label="data",
                       uuid=config.ids.data_uuid, hash_seed=config.ids.hash_seed, epoch=epoch)
        bar.advance(task)
        name = f"{config.name}-{release}-arm64"
        img = out / f"{name}.img"
        p = config.partitions
        disk.assemble(img, [
            disk.Partition("boot", p.boot_mib, "c", boot_img),
            disk.Partition("root-a", p.root_mib, "83", root_img),
            disk.Partition("root-b", p.root_mib, "83", None),
            disk.Partition("data", p.data_mib, "83", data_img),
        ], disk_id=config.ids.disk_id, first_offset_mib=p.first_offset_mib)
        bar.advance(task)
    step("filesystems and partition table", t)

    t = time.monotonic()
    bundle = out / f"{name}.bundle"
    make_bundle(config, root_img, bundle, key=key, version=version, epoch=epoch,
                release=release)
    step("update bundle (root A, signed)", t)

    t = time.monotonic()
    files = publish(config, img, release, epoch, debs_list, dists, bundle)
    step("xz, bmap, checksums, Imager list, SBOM", t)
    steps["total"] = time.monotonic() - started
    if not keep_work:
        unmount_below(work)
        shutil.rmtree(work)
    return Built(img=img, files=files, version=release, kernel=kernel, steps=steps)


def make_bundle(config: ImageConfig, root_img: Path, out: Path, *, key: Path, version: str,
                epoch: int, release: str) -> None:
    """Root A as an update for the nodes already in the field, signed with the release key."""
    from firmware import bundle, keys

    bundle.make(root_img, out, key=keys.load_private(key), version=version, build=epoch,
                commit=release.partition("+g")[2], boards=list(config.boards),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)))


def publish(config: ImageConfig, img: Path, release: str, epoch: int,
            debs: list[outputs.DebPackage], dists: list[outputs.PythonDist],
            bundle: Path) -> list[Path]:
    xz = img.with_name(img.name + ".xz")
    with progress(download=True) as bar:
        task = bar.add_task("xz: the compressed image", total=img.stat().st_size)
        # Level 1: a minute for the whole card; level 6 took six and saved 8 %.
        outputs.compress_xz(img, xz, level=1, on_progress=lambda done, total: bar.update(
            task, completed=done, total=total))
    bmap = img.with_suffix(".bmap")
    outputs.make_bmap(img, bmap)
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    os_list = img.with_name(img.stem + ".os_list.json")
    outputs.write_json(outputs.imager_os_list(
        name=f"Safe City pole controller {release}", description=config.description,
        version=release, release_date=date, image_url=config.publish.url + xz.name, img=img,
        img_xz=xz, devices=config.publish.devices), os_list)
    sbom = img.with_name(img.stem + ".spdx.json")
    outputs.write_json(outputs.spdx_sbom(name=config.name, version=release,
                                         source_date_epoch=epoch, namespace_seed=release,
                                         debs=debs, dists=dists, suite=config.debian.suite),
                       sbom)
    files = [img, xz, bmap, os_list, sbom, bundle]
    sums = img.parent / "SHA256SUMS"
    outputs.write_sha256sums(files, sums)
    return [*files, sums]


def kernel_version(root: Path) -> str:
    kernels = sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise rootfs.RootfsError(f"expected one kernel in /boot, found {kernels or 'none'}")
    if not (root / "boot" / f"initrd.img-{kernels[0]}").exists():
        raise rootfs.RootfsError(f"no initramfs for kernel {kernels[0]} in /boot")
    return kernels[0]


def boot_files(config: ImageConfig, root: Path, kernel: str, work: Path) -> dict[str, Path]:
    """What the Pi's firmware reads: its own blobs, the device trees, Debian's kernel and
    initramfs, and config.txt / cmdline.txt."""
    files: dict[str, Path] = {}
    for blob in sorted((root / "usr/lib/raspi-firmware").iterdir()):
        if blob.is_file():
            files[blob.name] = blob
    trees = root / "usr/lib" / f"linux-image-{kernel}" / "broadcom"
    for dtb in config.device_trees:
        if not (trees / dtb).exists():
            raise rootfs.RootfsError(f"kernel {kernel} has no device tree {dtb}")
        files[dtb] = trees / dtb
    files["u-boot.bin"] = root / "usr/lib/u-boot/rpi_arm64/u-boot.bin"
    (work / "config.txt").write_text(CONFIG_TXT)
    files["config.txt"] = work / "config.txt"
    files.update(ab_boot(config, work / "ab"))
    return files


def ab_boot(config: ImageConfig, work: Path) -> dict[str, Path]:
    """U-Boot's part of the A/B boot: the boot script (with this image's disk id and kernel
    arguments) and both copies of the slot state, saying: boot A, no trial."""
    from firmware.bootctl import Slot
    from firmware.bootctl.uboot import COPIES, UBoot, boot_script

    work.mkdir(parents=True, exist_ok=True)
    source = work / "boot.cmd"
    source.write_text(boot_script(config.ids.disk_id.removeprefix("0x"), KERNEL_ARGS))
    scr = work / "boot.scr"
    run = subprocess.run(["mkimage", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
                          "-n", "safecity-edge A/B", "-d", str(source), str(scr)],
                         capture_output=True, text=True, check=False,
                         env={**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch())})
    if run.returncode != 0:
        raise rootfs.RootfsError(f"mkimage failed: {run.stderr}")
    slots = {Slot.A: config.ids.partuuid(2), Slot.B: config.ids.partuuid(3)}
    UBoot(work, partuuids=slots, cmdline=f"root=PARTUUID={slots[Slot.A]}").commit()
    return {"boot.scr": scr, **{name: work / name for name in COPIES}}


def data_skeleton(root: Path, tree: Path) -> Path:
    """The data partition as the first boot finds it: the node's folder owned by edge, the
    journal's folder, and systemd's state (a writable copy of the image's /var/lib/systemd)."""
    def ids(path: str, name: str) -> int:
        for line in (root / path).read_text().splitlines():
            fields = line.split(":")
            if fields[0] == name:
                return int(fields[2])
        raise rootfs.RootfsError(f"the image has no {name} in /{path}")

    tree.mkdir()
    edge = tree / "edge"
    edge.mkdir(mode=0o750)
    os.chown(edge, ids("etc/passwd", "edge"), ids("etc/group", "edge"))
    journal = tree / "journal"
    journal.mkdir()
    os.chown(journal, 0, ids("etc/group", "systemd-journal"))
    journal.chmod(0o2755)
    shutil.copytree(root / "var/lib/systemd", tree / "systemd", symlinks=True)
    return tree


def index_slot_a(root: Path, root_img: Path, data_tree: Path) -> None:
    """Root A's chunk index on the data partition, where the installer keeps the running
    slot's: the first update of a new card then does not read the whole slot to make it."""
    from firmware import release
    from firmware.chunks import SlotIndex
    from firmware.manifest import CHUNK_SIZE

    running = release.installed(root / str(release.RELEASE_FILE).lstrip("/"))
    if running is None:
        raise rootfs.RootfsError("root A has no readable release.json")
    folder = data_tree / "edge" / "firmware"  # the node's (user edge) hand-off folder
    folder.mkdir()
    edge = (data_tree / "edge").stat()
    os.chown(folder, edge.st_uid, edge.st_gid)
    SlotIndex.scan(root_img, label=running.label(), chunk_size=CHUNK_SIZE).save(
        folder / "slot-A.index")


def site_packages(root: Path, config: ImageConfig) -> Path:
    venv = root / str(config.python.venv).lstrip("/")
    return venv / "lib" / f"python{config.python.version}" / "site-packages"


def progress(download: bool = False) -> Progress:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               *([DownloadColumn()] if download else []), TimeElapsedColumn()]
    return Progress(*columns, console=console, transient=True)


# Kernel arguments the boot script gives every slot (it adds root=PARTUUID=… of the slot).
# The serial console is the GPIO header's UART (ttyS1 on the Pi); the last console= wins.
KERNEL_ARGS = "console=tty0 console=ttyS1,115200 rootfstype=ext4 fsck.repair=yes"

CONFIG_TXT = """\
# The Raspberry Pi firmware starts U-Boot (Pi 3, Pi 4, CM4); U-Boot's boot.scr picks root
# slot A or B and loads Debian's kernel and initramfs from that slot's /boot.
arm_64bit=1
upstream_kernel=1
kernel=u-boot.bin
# The console on the GPIO header's UART (pins 8 and 10), 115200 baud.
enable_uart=1
# Let the firmware's hardware watchdog and GPIO work with the mainline device trees.
dtparam=watchdog=on
disable_splash=1
"""


def summary(built: Built) -> Table:
    table = Table(title=f"image {built.version} (kernel {built.kernel})")
    table.add_column("step")
    table.add_column("time", justify="right")
    for name, seconds in built.steps.items():
        table.add_row(name, f"{seconds:.0f} s")
    table.add_section()
    for f in built.files:
        table.add_row(f.name, f"{f.stat().st_size / 1e6:.1f} MB")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description="Build the pole's SD-card image.")
    parser.add_argument("--config", type=Path, default=IMAGE_BUILD / "image.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "build" / "image")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="kept .debs and wheels (default: ~/.cache/safecity-edge/image)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the root tree and filesystem images in OUT/work")
    parser.add_argument("--key", type=Path, default=None,
                        help="the release key that signs the bundle; its public half goes "
                        "into the image (default: a development key beside the cache)")
    args = parser.parse_args()
    try:
        built = build(args.config, args.out, args.cache, keep_work=args.keep_work,
                      key=args.key)
    except (ImageConfigError, tools.HostNotReady, wheels.WheelError, rootfs.RootfsError,
            disk.DiskError) as exc:
        console.print(f"[red]image build failed:[/] {exc}")
        sys.exit(1)
    console.print(summary(built))
    print(built.img)


if __name__ == "__main__":
    main()
