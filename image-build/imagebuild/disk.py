"""The card's bytes, made without mounting anything: a FAT boot partition filled by mtools, ext4
filesystems filled by mkfs.ext4 -d, an MBR by sfdisk, and the parts copied into one sparse file.
Times, UUIDs, the FAT volume id and ext4's hash seed are fixed, so the same tree gives the same
bytes."""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

MIB = 1024 * 1024


class DiskError(Exception):
    """A filesystem or the partition table could not be made; the message has the tool's words."""


@dataclass(frozen=True)
class Partition:
    """One primary MBR partition: its filesystem image, size and type (c: FAT32 LBA, 83: Linux).
    An image of None leaves the partition empty (root B until the first update)."""

    name: str
    size_mib: int
    type_id: str
    image: Path | None


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise DiskError(f"{' '.join(cmd[:3])}... failed ({done.returncode}):\n"
                        f"{done.stdout[-1500:]}{done.stderr[-3000:]}")


def clamp_mtimes(root: Path, epoch: int) -> None:
    """No file in the image is newer than SOURCE_DATE_EPOCH (links themselves, not targets)."""
    for base, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = os.path.join(base, name)
            st = os.lstat(path)
            if st.st_mtime > epoch or st.st_atime != epoch:
                os.utime(path, (epoch, min(int(st.st_mtime), epoch)), follow_symlinks=False)
    st = os.lstat(root)
    os.utime(root, (epoch, min(int(st.st_mtime), epoch)))


def make_ext4(tree: Path, out: Path, *, size_mib: int, label: str, uuid: str, hash_seed: str,
              epoch: int) -> None:
    """An ext4 image holding tree, owners and modes as they are there."""
    out.unlink(missing_ok=True)
    with out.open("wb") as f:
        f.truncate(size_mib * MIB)
    clamp_mtimes(tree, epoch)
    # E2FSPROGS_FAKE_TIME fixes the superblock's times; -E hash_seed the directory hashing.
    run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-I", "256", "-T", "default", "-L", label,
         "-U", uuid, "-E", f"hash_seed={hash_seed},root_owner=0:0,lazy_itable_init=0,"
         "lazy_journal_init=0,nodiscard", "-d", str(tree), str(out)],
        env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    settle_inode_times(out, epoch)


def settle_inode_times(image: Path, epoch: int) -> None:
    """mkfs.ext4 -d (e2fsprogs 1.47.0) copies each file's change time, which is when this build
    wrote it; set every used inode's ctime, atime and crtime to the epoch so builds compare
    equal."""
    commands = [f"set_inode_field <{ino}> {field} @{epoch}"
                for ino in used_inodes(image) for field in ("ctime", "atime", "crtime")]
    script = image.with_suffix(".debugfs")
    script.write_text("\n".join(commands) + "\n")
    try:
        run(["debugfs", "-w", "-f", str(script), str(image)],
            env={"E2FSPROGS_FAKE_TIME": str(epoch)})
    finally:
        script.unlink()


def used_inodes(image: Path) -> list[int]:
    """Inode numbers in use (the root and everything from the first non-reserved one), read
    from dumpe2fs's free-inode ranges per group."""
    dump = subprocess.run(["dumpe2fs", str(image)], capture_output=True, text=True, check=False)
    if dump.returncode != 0:
        raise DiskError(f"dumpe2fs {image.name} failed:\n{dump.stderr}")
    per_group = first = 0
    used: list[int] = [2]
    group = -1
    for line in dump.stdout.splitlines():
        line = line.strip()
        if line.startswith("Inodes per group:"):
            per_group = int(line.split(":")[1])
        elif line.startswith("First inode:"):
            first = int(line.split(":")[1])
        elif re.match(r"Group \d+:", line):
            group = int(line.split()[1].rstrip(":"))
        elif line.startswith("Free inodes:") and group >= 0:
            free: set[int] = set()
            for span in filter(None, (s.strip() for s in line.split(":", 1)[1].split(","))):
                lo, _, hi = span.partition("-")
                free.update(range(int(lo), int(hi or lo) + 1))
            low = group * per_group + 1
            used += [i for i in range(max(low, first), low + per_group) if i not in free]
    return used


def make_fat(files: dict[str, Path], out: Path, *, size_mib: int, volume_id: str, label: str,
             epoch: int) -> None:
    """A FAT32 image with files at the given names ('overlays/x.dtbo' makes the folder)."""
    out.unlink(missing_ok=True)
    env = {"MTOOLS_SKIP_CHECK": "1", "SOURCE_DATE_EPOCH": str(epoch), "TZ": "UTC"}
    run(["mkfs.vfat", "-C", "-F", "32", "-i", volume_id, "-n", label, "--invariant", str(out),
         str(size_mib * 1024)], env=env)
    made: set[str] = set()
    for name in sorted(files):
        parts = name.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder not in made:
                run(["mmd", "-i", str(out), f"::{folder}"], env=env)
                made.add(folder)
        src = files[name]
        os.utime(src, (epoch, min(int(src.stat().st_mtime), epoch)))
        run(["mcopy", "-m", "-i", str(out), str(src), f"::{name}"], env=env)


def assemble(out: Path, partitions: list[Partition], *, disk_id: str,
             first_offset_mib: int) -> list[tuple[int, int]]:
    """The whole card: MBR with up to four primary partitions, each image copied to its place.
    Returns each partition's (start, size) in bytes."""
    if len(partitions) > 4:
        raise DiskError("an MBR holds four primary partitions")
    total = first_offset_mib + sum(p.size_mib for p in partitions)
    out.unlink(missing_ok=True)
    with out.open("wb") as f:
        f.truncate(total * MIB)
    layout = [f"label: dos\nlabel-id: {disk_id}\nunit: sectors\n"]
    placed = []
    start = first_offset_mib * MIB
    for i, part in enumerate(partitions, 1):
        boot = ", bootable" if i == 1 else ""
        layout.append(f"p{i} : start={start // 512}, size={part.size_mib * MIB // 512}, "
                      f"type={part.type_id}{boot}\n")
        placed.append((start, part.size_mib * MIB))
        start += part.size_mib * MIB
    sfdisk = subprocess.run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(out)],
                            input="".join(layout), capture_output=True, text=True, check=False)
    if sfdisk.returncode != 0:
        raise DiskError(f"sfdisk refused the layout:\n{sfdisk.stderr}")
    for part, (offset, size) in zip(partitions, placed, strict=True):
        if part.image is None:
            continue
        if part.image.stat().st_size > size:
            raise DiskError(f"{part.name}: {part.image.stat().st_size} bytes do not fit in "
                            f"{part.size_mib} MiB")
        copy_sparse(part.image, out, offset)
    return placed


def copy_sparse(src: Path, dest: Path, offset: int) -> None:
    """Copy src into dest at offset, skipping all-zero blocks so dest stays sparse (dest was
    just truncated, so the skipped blocks read as zeros)."""
    block = 64 * 1024
    zero = bytes(block)
    with src.open("rb") as fin, dest.open("r+b") as fout:
        pos = 0
        while chunk := fin.read(block):
            if chunk != zero[:len(chunk)]:
                fout.seek(offset + pos)
                fout.write(chunk)
            pos += len(chunk)


def cut_partition(img: Path, index: int, out: Path) -> Path:
    """Partition `index` (0: boot, 1: root A, 2: root B, 3: data) of the card image `img`
    copied out to `out`, sparse: a slot image as an update bundle carries it."""
    table = json.loads(subprocess.run(["sfdisk", "--json", str(img)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    part = table["partitions"][index]
    subprocess.run(["dd", f"if={img}", f"of={out}", "bs=1M", "conv=sparse",
                    f"skip={part['start'] * 512}", f"count={part['size'] * 512}",
                    "iflag=skip_bytes,count_bytes", "status=none"], check=True)
    return out
