"""Sample street footage for the demo, tests and benchmarks, fetched from Debian's archive.

`vtest.avi` (768×576, 795 frames of pedestrians and parked cars) ships in Debian's
`opencv-doc` package (OpenCV's sample data, Apache-2.0 / BSD-3-Clause). We download that
package with apt (no root needed), take the one file out and check its SHA-256, so every
machine runs on the same bytes. The file is cached; set SAFECITY_FOOTAGE_DIR to move the
cache (default: ~/.cache/safecity-edge/footage).

`python -m edge.demo.footage` fetches it and prints its path.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

VTEST_NAME = "vtest.avi"
VTEST_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
VTEST_FRAMES = 795
_PACKAGE = "opencv-doc"
_MEMBER = "./usr/share/doc/opencv-doc/examples/data/vtest.avi"


class FootageError(RuntimeError):
    """The sample footage could not be fetched or does not match its known hash."""


def cache_dir() -> Path:
    configured = os.environ.get("SAFECITY_FOOTAGE_DIR")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "safecity-edge" / "footage"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def vtest_path() -> Path:
    """Path of a verified vtest.avi, fetched from Debian's archive the first time."""
    target = cache_dir() / VTEST_NAME
    if target.exists() and _sha256(target) == VTEST_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="footage-") as tmp:
        work = Path(tmp)
        _run(["apt-get", "download", _PACKAGE], work, "download the opencv-doc package")
        debs = sorted(work.glob(f"{_PACKAGE}_*.deb"))
        if not debs:
            raise FootageError(f"apt-get download {_PACKAGE} produced no .deb in {work}")
        tar = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(debs[0])], capture_output=True, check=False
        )
        if tar.returncode != 0:
            raise FootageError(f"dpkg-deb could not read {debs[0].name}: {tar.stderr.decode()}")
        extract = subprocess.run(
            ["tar", "-x", "-C", str(work), _MEMBER], input=tar.stdout, capture_output=True,
            check=False,
        )
        if extract.returncode != 0:
            raise FootageError(f"{_MEMBER} not in {debs[0].name}: {extract.stderr.decode()}")
        fetched = work / _MEMBER
        got = _sha256(fetched)
        if got != VTEST_SHA256:
            raise FootageError(
                f"{VTEST_NAME} from {debs[0].name} has SHA-256 {got}, expected {VTEST_SHA256}"
            )
        partial = target.with_suffix(".partial")
        partial.write_bytes(fetched.read_bytes())
        partial.replace(target)
    return target


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise FootageError(f"cannot {what}: {cmd[0]} not found (this needs Debian's apt)") from None
    if done.returncode != 0:
        raise FootageError(f"cannot {what}: {' '.join(cmd)} said: {done.stderr.strip()}")


def main() -> int:
    try:
        print(vtest_path())
    except FootageError as e:
        print(f"footage: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
