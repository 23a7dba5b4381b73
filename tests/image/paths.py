"""Where the image tests find the repository's image config."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "image-build" / "image.yaml"
