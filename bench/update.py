"""Adaptive updates on the real root filesystem: what a pole downloads, and how long it
installs, for three next releases of the card image's root A, against a full install of the
same bundle (the baseline, measured in the same run).

Release A is root A's tree (copied out of the card image through a read-only loop mount) made
into an ext4 again by the image pipeline's own `make_ext4`, with the build's size, label, UUID
and hash seed (it comes out byte for byte the root A on the card, which the table says). Each
next release is that tree changed, made the same way with the next commit's epoch (one day
later: a new commit moves SOURCE_DATE_EPOCH, which the pipeline stamps on every inode):

(a) one Python module of the node (edge/call/alarm.py) gets a comment line, its unchecked-hash .pyc
    is compiled again, the wheel's RECORD names its new hash, release.json its version;
(b) one Debian library upgraded: libssl3 from bookworm's version to bookworm-security's (arm64
    .debs fetched with apt-get through a private arm64 apt configuration in the work folder),
    its files written over the old ones and dpkg's status and file lists updated;
(c) a new kernel: linux-image-arm64's next ABI from bookworm-security; the old kernel's files
    and modules removed, the new ones put in, modules xz-compressed and depmod run as the
    build does, the initramfs made again in the tree (chroot, qemu-user emulation) and copied
    to /boot/firmware by raspi-firmware's hook; when that cannot run the old initramfs is kept
    under the new name, and the table says so.

For each: the signed bundle (zlib; also its size uncompressed for (a)), a full install
(`running=None`, the whole bundle read) into a slot file of the partition's size, and an
adaptive install from a running slot holding release A (its index scanned once, timed on its
own). Bytes downloaded are FileSource's count of bundle bytes read; each installed slot is
checked against the image's SHA-256. Medians of --runs runs, full and adaptive alternated.
For (a) and (b) a second table plans the download at other chunk sizes: the non-zero chunks of
the new image found nowhere in release A at that size, packed as a bundle stores them, plus
the chunk index (gaps the installer reads between close chunks not counted there; at 4 KiB the
measured figure is beside it).

    sudo .venv/bin/python bench/update.py [--image build/image/X.img] [--work DIR]
                                          [--runs 3] [--markdown]

Needs root (loop mount, chroot), e2fsprogs, dpkg-deb, apt-get and, for (c), qemu-user binfmt.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from base64 import urlsafe_b64encode
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image-build"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from imagebuild import disk, rootfs
from imagebuild.config import ImageConfig, load
from report import Row, print_table

from firmware import bundle, keys
from firmware.chunks import ChunkIndex, SlotIndex, zero_digest
from firmware.install import Installed, Running, install
from firmware.manifest import CHUNK_SIZE
from firmware.release import Release
from firmware.sources import FileSource

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "image-build" / "image.yaml"
BOARD = "pi4"
DAY = 86_400
KIB, MIB = 1 << 10, 1 << 20
PLAN_SIZES = [4 * KIB, 16 * KIB, 64 * KIB, 1 * MIB, 4 * MIB]
RELEASE_JSON = "usr/lib/safecity-edge/release.json"
MODULE = "edge/call/alarm.py"  # the node's module changed in (a)
LIBRARY = ("libssl3", "bookworm-security")  # (b): the package, and the suite of its next version
KERNEL_SUITE = "bookworm-security"  # (c): where linux-image-arm64's next version comes from
INITRAMFS_TIMEOUT_S = 1200
DPKG = "var/lib/dpkg"
T = TypeVar("T")


@dataclass
class Case:
    name: str
    version: str
    epoch: int
    change: str
    image: Path | None = None
    bundle: Path | None = None
    notes: list[str] = field(default_factory=list)


# --- release A: root A's tree, out of the card, made again as the pipeline makes it ---

def newest_image() -> Path | None:
    found = sorted((ROOT / "build" / "image").glob("*.img"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def copy_tree(fs_image: Path, tree: Path, work: Path) -> str:
    """Root A's files into `tree`, owners, modes, times, links and xattrs kept; how."""
    mnt = work / "mnt"
    mnt.mkdir(exist_ok=True)
    tree.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop,ro", str(fs_image), str(mnt)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:  # no loop devices here: debugfs (hard links become copies)
        subprocess.run(["debugfs", "-R", f"rdump / {tree}", str(fs_image)], check=True,
                       capture_output=True)
        shutil.rmtree(tree / "lost+found", ignore_errors=True)
        return "debugfs rdump (no loop mount)"
    try:
        tar = ["tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner"]
        pack = subprocess.Popen([*tar, "-C", str(mnt), "--exclude=./lost+found", "-cf", "-",
                                 "."], stdout=subprocess.PIPE)
        subprocess.run([*tar, "-C", str(tree), "-xpf", "-"], stdin=pack.stdout, check=True)
        if pack.wait() != 0:
            raise SystemExit(f"tar could not read root A from {fs_image}")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    return "read-only loop mount, tar"


@dataclass(frozen=True)
class Pipeline:
    """make_ext4 as build.py calls it for root A."""

    config: ImageConfig

    def make(self, tree: Path, out: Path, epoch: int) -> Path:
        ids = self.config.ids
        disk.make_ext4(tree, out, size_mib=self.config.partitions.root_mib, label="root",
                       uuid=ids.root_uuid, hash_seed=ids.hash_seed, epoch=epoch)
        return out


def release_of(tree: Path) -> Release:
    data = json.loads((tree / RELEASE_JSON).read_text())
    return Release(data["version"], int(data["build"]), data.get("commit", ""),
                   tuple(data["boards"]))


def set_release(tree: Path, version: str, epoch: int) -> None:
    path = tree / RELEASE_JSON
    data = {**json.loads(path.read_text()), "version": version, "build": epoch}
    rewrite(path, (json.dumps(data) + "\n").encode())


def rewrite(path: Path, data: bytes) -> None:
    """New contents in the same inode (a directory's entries stay where they were)."""
    with path.open("r+b" if path.exists() else "wb") as f:
        f.write(data)
        f.truncate()


# --- (a) one module of the node ---

def change_module(tree: Path, venv: str, py: str) -> str:
    site = tree / venv.lstrip("/") / "lib" / f"python{py}" / "site-packages"
    source = site / MODULE
    text = source.read_bytes() + b"# adaptive update benchmark: one line more\n"
    rewrite(source, text)
    pyc = source.parent / "__pycache__" / f"{source.stem}.cpython-{py.replace('.', '')}.pyc"
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    if pyc.exists():
        fresh = Path(tempfile.mkdtemp()) / pyc.name
        py_compile.compile(str(source), cfile=str(fresh), dfile=f"{venv}/lib/python{py}/"
                           f"site-packages/{MODULE}", doraise=True, invalidation_mode=mode)
        rewrite(pyc, fresh.read_bytes())
        shutil.rmtree(fresh.parent)
    digest = urlsafe_b64encode(hashlib.sha256(text).digest()).rstrip(b"=").decode()
    changed = [f"{MODULE} (+1 line)", "its .pyc" if pyc.exists() else "no .pyc"]
    for record in site.glob("safecity_edge-*.dist-info/RECORD"):
        lines = [f"{MODULE},sha256={digest},{len(text)}" if line.startswith(f"{MODULE},")
                 else line for line in record.read_text().splitlines()]
        rewrite(record, ("\n".join(lines) + "\n").encode())
        changed.append("RECORD")
    return ", ".join(changed)


# --- (b), (c): a Debian package replaced by another version, as dpkg would ---

class Apt:
    """apt-get for arm64 in a private configuration (lists and .debs under `folder`): the
    host's own apt state is not touched."""

    SOURCES = ("deb http://deb.debian.org/debian bookworm main\n"
               "deb http://deb.debian.org/debian bookworm-updates main\n"
               "deb http://deb.debian.org/debian-security bookworm-security main\n")

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for sub in ("lists/partial", "cache/archives/partial", "debs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "sources.list").write_text(self.SOURCES)
        (folder / "status").touch()
        (folder / "apt.conf").write_text(
            'APT::Architecture "arm64";\nAPT::Architectures { "arm64"; };\n'
            f'Dir::State "{folder}";\nDir::State::Lists "{folder}/lists";\n'
            f'Dir::State::status "{folder}/status";\nDir::Cache "{folder}/cache";\n'
            f'Dir::Etc::SourceList "{folder}/sources.list";\n'
            f'Dir::Etc::SourceParts "{folder}/none";\n')
        self.run(["apt-get", "update", "-qq"])

    def run(self, cmd: list[str], cwd: Path | None = None) -> str:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False,
                              env={**os.environ, "APT_CONFIG": str(self.folder / "apt.conf")})
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
        return done.stdout

    def version_in(self, package: str, suite: str) -> str:
        for line in self.run(["apt-cache", "madison", package]).splitlines():
            name, version, where = (part.strip() for part in line.split("|"))
            if name == package and f" {suite}/" in where:
                return version
        raise SystemExit(f"{package} has no version in {suite} for arm64")

    def download(self, package: str, version: str) -> Path:
        debs = self.folder / "debs"
        self.run(["apt-get", "download", "-q", f"{package}:arm64={version}"], cwd=debs)
        [deb] = debs.glob(f"{package}_*_arm64.deb")
        return deb


def in_tree(tree: Path, name: str) -> Path:
    """Where the package path `name` is in the tree, through its merged-/usr links."""
    parts = Path(name.lstrip("/")).parts
    here = tree
    for part in parts[:-1]:
        here = here / part
        while here.is_symlink():
            link = os.readlink(here)
            here = tree / link.lstrip("/") if link.startswith("/") else here.parent / link
    return here / parts[-1] if parts else tree


def put(src: Path, dest: Path) -> None:
    """One file of a package at `dest`, over the old one in place when there is one."""
    st = src.lstat()
    if src.is_symlink():
        if dest.is_symlink() or dest.exists():
            dest.unlink()
        dest.symlink_to(os.readlink(src))
    elif src.is_dir():
        dest.mkdir(exist_ok=True)
    else:
        if dest.is_symlink():
            dest.unlink()
        rewrite(dest, src.read_bytes())
    if not src.is_symlink():
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o7777)
        os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))


def control_of(deb: Path, into: Path) -> dict[str, str]:
    subprocess.run(["dpkg-deb", "-e", str(deb), str(into)], check=True)
    fields: dict[str, str] = {}
    last = ""
    for line in (into / "control").read_text().splitlines():
        if line.startswith((" ", "\t")):
            fields[last] += "\n" + line
        elif ":" in line:
            last, _, value = line.partition(":")
            fields[last] = value.strip()
    return fields


def upgrade(tree: Path, deb: Path, old: str, work: Path) -> dict[str, str]:
    """Replace installed package `old` with `deb`: its files over the old ones, files it no
    longer ships removed, dpkg's file list, md5sums, scripts and status entry updated.
    Returns the new package's control fields."""
    stage, control = work / "stage", work / "control"
    for folder in (stage, control):
        shutil.rmtree(folder, ignore_errors=True)
    stage.mkdir()
    subprocess.run(["dpkg-deb", "-x", str(deb), str(stage)], check=True)
    fields = control_of(deb, control)
    listed = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True,
                            check=True).stdout
    names = subprocess.run(["tar", "-t"], input=listed, capture_output=True,
                           check=True).stdout.decode().splitlines()
    new_list = ["/." if n in ("./", ".") else "/" + n.removeprefix("./").rstrip("/")
                for n in names]
    info = tree / DPKG / "info"
    old_info = next(n for n in (f"{old}:arm64", old) if (info / f"{n}.list").exists())
    old_list = (info / f"{old_info}.list").read_text().splitlines()
    remove_unshipped(tree, set(old_list) - set(new_list))
    for name in new_list[1:]:
        put(stage / name.lstrip("/"), in_tree(tree, name))
    package = fields["Package"]
    new_info = f"{package}:arm64" if fields.get("Multi-Arch") == "same" else package
    replace_info(info, old_info, new_info, new_list, control)
    set_status(tree, old, fields)
    return fields


def remove_unshipped(tree: Path, names: set[str]) -> None:
    """The files (or their .xz) and the folders left empty of `names`, deepest first."""
    for name in sorted(names, key=len, reverse=True):
        path = in_tree(tree, name)
        for candidate in (path, path.with_name(path.name + ".xz")):  # modules were packed
            if candidate.is_symlink() or candidate.is_file():
                candidate.unlink()
            elif candidate.is_dir() and not any(candidate.iterdir()):
                candidate.rmdir()


def replace_info(info: Path, old_info: str, new_info: str, new_list: list[str],
                 control: Path) -> None:
    """dpkg's files about the old package (file list, md5sums, scripts) become the new
    one's, from its control folder."""
    written = {f"{new_info}.list"}
    rewrite(info / f"{new_info}.list", ("\n".join(new_list) + "\n").encode())
    for part in sorted(control.iterdir()):
        if part.name != "control":
            rewrite(info / f"{new_info}.{part.name}", part.read_bytes())
            os.chmod(info / f"{new_info}.{part.name}", part.stat().st_mode & 0o7777)
            written.add(f"{new_info}.{part.name}")
    for stale in info.glob(f"{old_info}.*"):
        if stale.name not in written:
            stale.unlink()


def set_status(tree: Path, old: str, fields: dict[str, str]) -> None:
    """dpkg's status entry of `old` becomes the new package's, installed."""
    status = tree / DPKG / "status"
    entries = status.read_text().rstrip("\n").split("\n\n")
    body = [f"{k}: {v}" for k, v in fields.items() if k != "Package"]
    new = "\n".join([f"Package: {fields['Package']}", "Status: install ok installed", *body])
    entries = [new if e.startswith(f"Package: {old}\n") and
               "Architecture: arm64" in e else e for e in entries]
    rewrite(status, ("\n\n".join(entries) + "\n\n").encode())


def installed_version(tree: Path, package: str) -> str:
    for entry in (tree / DPKG / "status").read_text().split("\n\n"):
        if entry.startswith(f"Package: {package}\n"):
            for line in entry.splitlines():
                if line.startswith("Version: "):
                    return line.removeprefix("Version: ")
    raise SystemExit(f"{package} is not installed in root A")


# --- (c) a new kernel ---

def change_kernel(tree: Path, apt: Apt, work: Path, epoch: int) -> tuple[str, list[str]]:
    meta = apt.version_in("linux-image-arm64", KERNEL_SUITE)
    depends = apt.run(["apt-cache", "show", f"linux-image-arm64={meta}"])
    image_pkg = next(line.split(":", 1)[1].split()[0] for line in depends.splitlines()
                     if line.startswith("Depends:"))
    old_ver = sorted(p.name.removeprefix("vmlinuz-") for p in (tree / "boot").glob("vmlinuz-*"))
    old = old_ver[-1]
    new = image_pkg.removeprefix("linux-image-")
    if new == old:
        raise SystemExit(f"{KERNEL_SUITE} has the kernel root A has ({old})")
    old_initrd = work / "initrd.old"  # kept aside in case the initramfs cannot be made
    shutil.copy2(tree / f"boot/initrd.img-{old}", old_initrd)
    for name in (f"boot/initrd.img-{old}", f"boot/firmware/initrd.img-{old}",
                 f"boot/firmware/vmlinuz-{old}"):
        (tree / name).unlink(missing_ok=True)
    upgrade(tree, apt.download(image_pkg, meta), f"linux-image-{old}", work)
    upgrade(tree, apt.download("linux-image-arm64", meta), "linux-image-arm64", work)
    shutil.rmtree(tree / "usr/lib/modules" / old, ignore_errors=True)
    rootfs.compress_modules(tree)  # the build's: modules .ko.xz, then depmod
    for link, target in (("boot/vmlinuz", f"vmlinuz-{new}"),
                         ("boot/initrd.img", f"initrd.img-{new}"),
                         ("vmlinuz", f"boot/vmlinuz-{new}"), ("vmlinuz.old", f"boot/vmlinuz-{new}"),
                         ("initrd.img", f"boot/initrd.img-{new}"),
                         ("initrd.img.old", f"boot/initrd.img-{new}")):
        if (tree / link).is_symlink():
            (tree / link).unlink()
            (tree / link).symlink_to(target)
    notes: list[str] = []
    # update-initramfs in the tree, under qemu-user, as rootfs.make_initramfs; proc and dev
    # mounted in a private namespace that goes with the process.
    script = (f'mount -t proc proc "{tree}/proc" && mount --rbind /dev "{tree}/dev" && '
              f'chroot "{tree}" update-initramfs -c -k {new}')
    try:
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               script], capture_output=True, text=True, check=False,
                              env=rootfs.chroot_env(epoch), timeout=INITRAMFS_TIMEOUT_S)
        ok = done.returncode == 0 and (tree / f"boot/initrd.img-{new}").exists()
        why = done.stderr.strip().splitlines()[-1:] if not ok else []
    except subprocess.TimeoutExpired:
        ok, why = False, [f"timed out after {INITRAMFS_TIMEOUT_S} s"]
    if ok:
        notes.append("initramfs made again in the tree (qemu-user)")
    else:
        notes.append(f"initramfs NOT made again ({' '.join(why)}): the old one kept")
        shutil.copy2(old_initrd, tree / f"boot/initrd.img-{new}")
    old_initrd.unlink()
    for name in (f"vmlinuz-{new}", f"initrd.img-{new}"):  # raspi-firmware's copies
        if not (tree / "boot/firmware" / name).exists() and (tree / "boot" / name).exists():
            shutil.copy2(tree / "boot" / name, tree / "boot/firmware" / name)
    return f"kernel {old} → {new} ({meta})", notes


# --- installs ---

@dataclass
class Runs:
    full_s: list[float] = field(default_factory=list)
    adaptive_s: list[float] = field(default_factory=list)
    full: Installed | None = None
    adaptive: Installed | None = None
    exact: list[bool] = field(default_factory=list)


def slot_file(path: Path, size: int) -> Path:
    path.unlink(missing_ok=True)
    with path.open("wb") as f:
        f.truncate(size)
    return path


def sha256_of(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while size > 0 and (data := f.read(min(8 * MIB, size))):
            digest.update(data)
            size -= len(data)
    return digest.hexdigest()


def installs(path: Path, slot: Path, size: int, trusted: list[Ed25519PublicKey],
             base: Release, running: Running, runs: int) -> Runs:
    out = Runs()
    for _ in range(runs):
        for adaptive in (False, True):
            slot_file(slot, size)
            began = time.monotonic()
            done = install(FileSource(path), slot, keys=trusted, board=BOARD, installed=base,
                           running=running if adaptive else None)
            took = time.monotonic() - began
            out.exact.append(sha256_of(slot, done.manifest.image_size)
                             == done.manifest.image_sha256)
            if adaptive:
                out.adaptive_s.append(took)
                out.adaptive = done
            else:
                out.full_s.append(took)
                out.full = done
    slot.unlink()
    return out


# --- planning other chunk sizes ---

def chunk_digests(path: Path, size: int, chunk: int) -> Iterator[bytes]:
    """SHA-256 of each `chunk` bytes of `path` (chunks.digests_of reads 1 MiB at a time and
    so cuts larger chunks at 1 MiB)."""
    with path.open("rb") as f:
        at = 0
        while at < size and (data := f.read(min(chunk, size - at))):
            yield hashlib.sha256(data).digest()
            at += len(data)


def plan(new: Path, old_digests: dict[int, set[bytes]], sizes: list[int],
         head: int) -> dict[int, tuple[int, int, int]]:
    """Per chunk size: (chunks to fetch, bytes to download, index bytes)."""
    out: dict[int, tuple[int, int, int]] = {}
    size = new.stat().st_size
    fd = os.open(new, os.O_RDONLY)
    try:
        for chunk in sizes:
            index = ChunkIndex(chunk, size)
            fetch, stored = 0, 0
            for i, digest in enumerate(chunk_digests(new, size, chunk)):
                length = index.length(i)
                if digest == zero_digest(length):
                    index.add(digest, 0)
                    continue
                index.add(digest, length)  # the index's size barely depends on it
                if digest not in old_digests[chunk]:
                    data = os.pread(fd, length, i * chunk)
                    fetch += 1
                    stored += min(len(zlib.compress(data, 6)), length)
            packed = len(index.encode())
            out[chunk] = (fetch, head + packed + stored, packed)
    finally:
        os.close(fd)
    return out


# --- the report ---

def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f} %"


def med(values: list[float]) -> float:
    return statistics.median(values)


def print_grid(head: list[str], rows: list[list[str]], markdown: bool) -> None:
    cells = [head, *rows]
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for c in cells:
        print("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


@contextlib.contextmanager
def work_folder(given: Path | None, keep: bool) -> Iterator[Path]:
    base = given or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(base).free
    if free < 12e9:
        raise SystemExit(f"{base} has {free / 1e9:.1f} GB free; the bench needs ~12 GB "
                         "(give --work on a larger disk)")
    work = Path(tempfile.mkdtemp(prefix="edge-update-bench-", dir=base))
    try:
        yield work
    finally:
        mnt = work / "mnt"
        if mnt.is_dir() and os.path.ismount(mnt):
            subprocess.run(["umount", str(mnt)], check=False)
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


@dataclass
class Bench:
    """What the steps of one run share: the work folder, the image pipeline, how many
    installs of each kind, how long each timed step took, and what each case measured."""

    work: Path
    config: ImageConfig
    pipeline: Pipeline
    runs: int
    steps: dict[str, float] = field(default_factory=dict)
    planned: dict[str, dict[int, tuple[int, int, int]]] = field(default_factory=dict)
    measured: dict[str, int] = field(default_factory=dict)  # bytes downloaded, adaptive
    bundles: dict[str, int] = field(default_factory=dict)  # bytes of the whole bundle

    def timed(self, name: str, run: Callable[[], T]) -> T:
        began = time.monotonic()
        out = run()
        self.steps[name] = time.monotonic() - began
        print(f"  {name}: {self.steps[name]:.1f} s", file=sys.stderr, flush=True)
        return out


@dataclass(frozen=True)
class ReleaseA:
    """Release A made again from root A: its slot image and what reads it, and the key the
    next releases are signed with."""

    base: Release
    image: Path
    size: int
    key: Ed25519PrivateKey
    running: Running
    old_digests: dict[int, set[bytes]]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None,
                        help="card image (default: the newest build/image/*.img)")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the ~10 GB of trees, images and slots (default: TMPDIR)")
    parser.add_argument("--runs", type=int, default=3, help="installs of each kind, per case")
    parser.add_argument("--cases", default="abc", help="which of a, b, c to run")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--markdown", action="store_true")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    img = args.image or newest_image()
    if img is None or not img.exists():
        raise SystemExit("no card image in build/image/: run `make image` first")
    if os.geteuid() != 0:
        raise SystemExit("run as root: root A is read through a loop mount, (c) uses chroot")
    config = load(CONFIG)
    with work_folder(args.work, args.keep) as work:
        run = Bench(work, config, Pipeline(config), args.runs)
        card_root = disk.cut_partition(img, 1, work / "card-root-a.ext4")
        tree = work / "tree"
        how = copy_tree(card_root, tree, work)
        a = release_a(run, tree)
        same = sha256_of(a.image, a.size) == sha256_of(card_root, a.size)
        apt = Apt(work / "apt") if set(args.cases) & {"b", "c"} else None
        cases: list[Case] = []
        for letter in "abc":
            if letter in args.cases:
                cases.append(next_release(run, letter, len(cases) + 1, tree, a.base, apt))
        shutil.rmtree(tree)

        rows: list[Row] = [
            Row("release A (make_ext4 of root A's tree)",
                "= root A on the card" if same else "differs from root A on the card",
                f"tree copied by {how}; {a.size // MIB} MiB slot"),
            Row("running slot index (scan, once per release)",
                f"{run.steps['running slot index (scan of release A)']:.1f} s",
                f"{a.size // CHUNK_SIZE} chunks of {CHUNK_SIZE // KIB} KiB"),
        ]
        for case in cases:
            rows += measure_case(run, case, a)

    print(f"image {img.name}, root A {a.size // MIB} MiB, {os.cpu_count()} cores; "
          f"release A {a.base.label()}; next releases one day later (epoch +{DAY} s each)")
    print_table(rows, args.markdown)
    if run.planned:
        print()
        print_plans(run, args.markdown)
    return 0


def release_a(run: Bench, tree: Path) -> ReleaseA:
    """Root A's tree made again into a slot image as the pipeline makes it, indexed as the
    running slot, and a new release key."""
    base = release_of(tree)
    image = run.pipeline.make(tree, run.work / "running-release-A.ext4", base.build)
    size = image.stat().st_size
    key = keys.generate(run.work / "keys" / "release.pem")
    running_index: dict[int, SlotIndex] = {}

    def scan() -> None:
        running_index[CHUNK_SIZE] = SlotIndex.scan(image, label=base.label(),
                                                   chunk_size=CHUNK_SIZE)

    run.timed("running slot index (scan of release A)", scan)
    running = Running(image, lambda chunk: running_index[chunk])
    old_digests = {chunk: set(chunk_digests(image, size, chunk)) for chunk in PLAN_SIZES}
    return ReleaseA(base, image, size, key, running, old_digests)


def next_release(run: Bench, letter: str, n: int, tree: Path, base: Release,
                 apt: Apt | None) -> Case:
    """The n-th next release, one day after the one before: release A's tree with case
    `letter`'s change, made into a slot image."""
    major, minor, patch = (int(p) for p in [*base.version.split("."), "0", "0"][:3])
    version = f"{major}.{minor}.{patch + n}"
    epoch = base.build
    new_epoch = epoch + DAY * n
    case = Case(letter, version, new_epoch, "")
    case_tree = run.work / f"tree-{letter}"
    subprocess.run(["cp", "-a", str(tree), str(case_tree)], check=True)
    if letter == "a":
        case.change = change_module(case_tree, str(run.config.python.venv),
                                    run.config.python.version)
    elif letter == "b":
        assert apt is not None
        package, suite = LIBRARY
        old = installed_version(case_tree, package)
        version_b = apt.version_in(package, suite)
        upgrade(case_tree, apt.download(package, version_b), package, run.work)
        case.change = f"{package} {old} → {version_b} ({suite})"
    else:
        assert apt is not None
        case.change, case.notes = change_kernel(case_tree, apt, run.work, new_epoch)
    set_release(case_tree, version, new_epoch)
    case.image = run.work / f"next-{letter}.ext4"
    run.timed(f"({letter}) make_ext4",
              functools.partial(run.pipeline.make, case_tree, case.image, new_epoch))
    if letter == "a":  # the same change at release A's epoch: what the epoch costs
        set_release(case_tree, version, epoch)
        run.pipeline.make(case_tree, run.work / "next-a-same-epoch.ext4", epoch)
    shutil.rmtree(case_tree)
    return case


TARGETS = {"a": 2.0, "b": 10.0}  # % of the full download an adaptive install may take


def measure_case(run: Bench, case: Case, a: ReleaseA) -> list[Row]:
    """Bundle the case's release, install it full and adaptive (run.runs times each), and
    plan its download at other chunk sizes; its rows of the table."""
    assert case.image is not None
    name = f"({case.name})"
    case.bundle = run.work / f"next-{case.name}.scfw"
    run.timed(f"{name} bundle.make", functools.partial(
        bundle.make, case.image, case.bundle, key=a.key, version=case.version,
        build=case.epoch, commit="bench", boards=list(run.config.boards)))
    whole = case.bundle.stat().st_size
    runs = installs(case.bundle, run.work / "slot-b", a.size, [a.key.public_key()], a.base,
                    a.running, run.runs)
    assert runs.full is not None and runs.adaptive is not None
    tally = runs.adaptive.tally
    run.measured[case.name] = tally.downloaded
    run.bundles[case.name] = whole
    fetched = tally.total - tally.reused - tally.zeroed
    exact = all(runs.exact)
    target = TARGETS.get(case.name)
    rows = [
        Row(f"{name} {case.change}", mb(whole) + " bundle",
            f"full install reads {mb(runs.full.tally.downloaded)}"
            + ("; " + "; ".join(case.notes) if case.notes else "")),
        Row(f"{name} downloaded, adaptive", mb(tally.downloaded),
            f"full: {mb(runs.full.tally.downloaded)}",
            pct(tally.downloaded, runs.full.tally.downloaded),
            f"≤ {target:g} %" if target else ""),
        Row(f"{name} install time, adaptive", f"{med(runs.adaptive_s):.1f} s",
            f"full: {med(runs.full_s):.1f} s (medians of {run.runs})",
            f"{med(runs.adaptive_s) / med(runs.full_s):.2f}×"),
        Row(f"{name} image bytes: reused / zeroed / fetched",
            f"{mb(tally.reused)} / {mb(tally.zeroed)} / {mb(fetched)}",
            f"slot = image SHA-256: {'yes' if exact else 'NO'} "
            f"({len(runs.exact)} installs)"),
    ]
    for row in rows:
        print(f"  {row}", file=sys.stderr, flush=True)
    if case.name in "ab":
        with case.bundle.open("rb") as f:
            head = bundle.read_head(f).length
        run.planned[case.name] = plan(case.image, a.old_digests, PLAN_SIZES, head)
        if case.name == "a":
            rows += epoch_and_compression_rows(run, case, a, whole, head)
    case.bundle.unlink()
    case.image.unlink()
    return rows


def epoch_and_compression_rows(run: Bench, case: Case, a: ReleaseA, whole: int,
                               head: int) -> list[Row]:
    """Case (a) again: its full bundle without compression, and its planned download had
    the epoch stayed release A's."""
    assert case.image is not None
    plain = run.work / "next-a-none.scfw"
    bundle.make(case.image, plain, key=a.key, version=case.version, build=case.epoch,
                commit="bench", boards=list(run.config.boards), compression="none")
    rows = [Row("(a) full bundle, compression none", mb(plain.stat().st_size),
                f"zlib: {mb(whole)}", f"{whole / plain.stat().st_size:.2f}")]
    plain.unlink()
    same_epoch = plan(run.work / "next-a-same-epoch.ext4", a.old_digests,
                      [CHUNK_SIZE], head)[CHUNK_SIZE]
    rows.append(Row("(a) planned download if the epoch stayed the same",
                    mb(same_epoch[1]), f"{same_epoch[0]} chunks to fetch",
                    pct(same_epoch[1], whole)))
    return rows


def print_plans(run: Bench, markdown: bool) -> None:
    """The planned downloads of cases (a) and (b) at each chunk size, as a grid."""
    head_row = ["chunk size"]
    for name in run.planned:
        head_row += [f"({name}) chunks to fetch", f"({name}) download",
                     f"({name}) of its 4 KiB bundle", f"({name}) index"]
    grid = []
    for chunk in PLAN_SIZES:
        label = f"{chunk // KIB} KiB" if chunk < MIB else f"{chunk // MIB} MiB"
        cells = [label]
        for name, found in run.planned.items():
            fetch, total, index_size = found[chunk]
            extra = f" (measured {mb(run.measured[name])})" if chunk == CHUNK_SIZE else ""
            cells += [str(fetch), mb(total) + extra, pct(total, run.bundles[name]),
                      mb(index_size)]
        grid.append(cells)
    print_grid(head_row, grid, markdown)


if __name__ == "__main__":
    sys.exit(main())
