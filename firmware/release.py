"""What a release is (version, build time, commit, the boards it runs on), the release the
running root filesystem carries in `/usr/lib/safecity-edge/release.json`, and which board
this node is, read from its device tree."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RELEASE_FILE = Path("/usr/lib/safecity-edge/release.json")
VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_BOARDS = (("raspberrypi,4", "pi4"), ("raspberrypi,3", "pi3"), ("raspberrypi,5", "pi5"),
           ("linux,dummy-virt", "qemu"))


@dataclass(frozen=True)
class Release:
    """One build of the firmware: `version` like "0.1.0" (1 to 4 numbers), `build` the time of
    its commit in seconds since the epoch (orders two builds of one version), `commit` the
    short git id ("" when built outside git), `boards` the boards its image boots on."""

    version: str
    build: int
    commit: str = ""
    boards: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not VERSION.match(self.version):
            raise ValueError(f"release version {self.version!r} is not 1 to 4 numbers with "
                             "dots between them, like 0.1.0")
        if self.build < 0:
            raise ValueError(f"release build {self.build} is before 1970; give the commit time")

    @property
    def key(self) -> tuple[tuple[int, ...], int]:
        """What releases sort by: the version's numbers (missing ones are 0), then build."""
        numbers = tuple(int(part) for part in self.version.split("."))
        return numbers + (0,) * (4 - len(numbers)), self.build

    def label(self) -> str:
        """How a person sees it: "0.1.0 (build 1763730000, g1234abc)"."""
        commit = f", g{self.commit}" if self.commit else ""
        return f"{self.version} (build {self.build}{commit})"


def installed(path: Path = RELEASE_FILE) -> Release | None:
    """The release of the running root filesystem; None when its file is missing or
    unreadable (a development system, a damaged image): the caller decides what that means."""
    try:
        data = json.loads(path.read_bytes())
        return Release(version=data["version"], build=int(data["build"]),
                       commit=str(data.get("commit", "")),
                       boards=tuple(str(board) for board in data.get("boards", ())))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        log.warning("cannot read the installed release from %s: %s", path, e)
        return None


def to_json(release: Release) -> bytes:
    """The release as the image build writes it to RELEASE_FILE."""
    data = {"version": release.version, "build": release.build, "commit": release.commit,
            "boards": list(release.boards)}
    return json.dumps(data, indent=2).encode() + b"\n"


def board(root: Path = Path("/")) -> str:
    """Which board this is: "pi3", "pi4", "pi5", "qemu" (the arm64 virt machine) or
    "unknown", from the first string of the device tree's `compatible` that names one."""
    try:
        compatible = (root / "proc/device-tree/compatible").read_bytes()
    except OSError:
        return "unknown"
    for name in compatible.decode("ascii", "replace").split("\0"):
        for prefix, known in _BOARDS:
            if name.startswith(prefix):
                return known
    return "unknown"
