"""The image build and boot against their budgets: a whole build (with the package and wheel
cache as it is: run twice for the warm figure), the sizes a technician downloads and flashes,
and boot-to-READY under qemu. Baselines measured in the same run: a bare Debian minbase made by
mmdebstrap from the same cache (what Debian alone costs under emulation), and, in the same boot,
the moment systemd starts (what the node's start adds).

    sudo .venv/bin/python bench/image.py [--markdown]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "image-build"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from imagebuild import build, qemu, rootfs
from imagebuild.config import load
from report import Row, print_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "image-build" / "image.yaml"


def minbase_seconds(cache: Path, work: Path) -> float:
    """mmdebstrap's bare minbase of the same suite from the same cached packages."""
    config = load(CONFIG)
    debs = cache / "debs" / rootfs.deb_cache_key(config)
    if not (debs / rootfs.COMPLETE).exists():
        raise SystemExit("no package cache yet: build the image once first (make image)")
    started = time.monotonic()
    subprocess.run(["mmdebstrap", "--quiet", "--arch=arm64", "--variant=minbase", "--mode=root",
                    "--format=tar", "--dpkgopt=force-unsafe-io",
                    "--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount",
                    config.debian.suite, str(work / "minbase.tar"),
                    f"deb [trusted=yes] file://{debs} ./"], check=True,
                   env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"})
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    cache = build.default_cache()
    warm = (cache / "debs" / rootfs.deb_cache_key(load(CONFIG)) / rootfs.COMPLETE).exists()
    # Memory-backed work space if there is room: the build writes ~2 GB it then throws away.
    with tempfile.TemporaryDirectory(prefix="edge-image-bench-") as tmp:
        work = Path(tmp)
        built = build.build(CONFIG, work / "out", cache)
        base_s = minbase_seconds(cache, work)
        disk = qemu.prepare(built.img, work / "boot",
                            ROOT / "image-build" / "boot-test" / "node.yaml",
                            extra_args=qemu.reporter_args(load(CONFIG)))
        boot = qemu.boot(disk, work / "boot")
        img = built.img
        xz = img.with_name(img.name + ".xz")
        stored = os.stat(img).st_blocks * 512
        rows = [
            Row("image build, whole" + ("" if warm else " (cold: packages downloaded)"),
                f"{built.steps['total'] / 60:.1f} min",
                f"Debian minbase alone: {base_s / 60:.1f} min",
                f"{built.steps['total'] / base_s:.1f}× minbase", "≤ 10 min (warm cache)"),
            *[Row(f"  step: {name}", f"{seconds:.0f} s") for name, seconds in built.steps.items()
              if name != "total"],
            Row("compressed image (.img.xz)", f"{xz.stat().st_size / 1e6:.0f} MB",
                f"image {img.stat().st_size / 1e6:.0f} MB, {stored / 1e6:.0f} MB of it stored",
                f"{xz.stat().st_size / stored:.2f} of stored", "≤ 500 MB"),
            Row("boot to READY (qemu -M virt, TCG)", f"{boot.ready_s or 0:.1f} s",
                f"systemd started at {boot.userspace_s or 0:.1f} s",
                f"node +{(boot.ready_s or 0) - (boot.userspace_s or 0):.1f} s",
                "guest clock: " + f"{boot.ready_guest_s or 0:.1f} s"),
        ]
        shutil.rmtree(work / "out", ignore_errors=True)
    print(f"image {built.version}, kernel {built.kernel}, {os.cpu_count()} cores")
    print_table(rows, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
