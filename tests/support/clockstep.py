"""Wall-clock steps for one process, as NTP or GPS make after a cold boot: `clockstep.c`,
preloaded, moves CLOCK_REALTIME, gettimeofday() and time() by an offset read from a file,
and leaves the monotonic clocks, sleeps and timeouts alone. (libfaketime either broke
Python's sleeps or stepped the monotonic clock too; a real step does neither.)"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("clockstep.c")


def library() -> Path:
    """The shim, compiled once per version of its source into the temp folder."""
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"edge-clockstep-{digest}.so"
    if not lib.exists():
        partial = lib.with_suffix(".partial")
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o",
                        str(partial), str(SOURCE), "-ldl"], check=True)
        partial.replace(lib)
    return lib


class ClockStep:
    """The wall clock of the processes started with `env()`, stepped by `step()`."""

    def __init__(self, workdir: Path) -> None:
        self.file = workdir / "clock-offset"
        self.offset_s = 0.0
        self.file.write_text("0\n")
        self.lib = library()

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": str(self.lib), "EDGE_CLOCK_OFFSET_FILE": str(self.file)}

    def step(self, seconds: float) -> None:
        """Move their wall clock by `seconds` (negative: back), at once."""
        self.offset_s += seconds
        self.file.write_text(f"{self.offset_s}\n")
