"""Making writes survive a power cut: the one place that syncs a directory entry."""

from __future__ import annotations

import os
from pathlib import Path


def sync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
