"""Where tests find the repository's own files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
IMAGE_CONFIG = ROOT / "image-build" / "image.yaml"
