"""Privacy masks: areas of the picture (a neighbour's window, a private garden) that the node
must never analyse or store. They are blanked before detection, so every snapshot has them
black too."""

from __future__ import annotations

from collections.abc import Sequence

from edge.detectors.base import Image
from edge.vision.geometry import Size
from edge.vision.polygons import Polygon, polygon_mask


class PrivacyMask:
    """Blanks every pixel inside any of `polygons` (normalised 0..1) on `frame_size` frames."""

    def __init__(self, polygons: Sequence[Polygon], frame_size: Size) -> None:
        self.frame_size = frame_size
        self._inside = polygon_mask(polygons, frame_size) > 0
        self._empty = not bool(self._inside.any())

    @property
    def covered_fraction(self) -> float:
        """Share of the frame the mask blanks (0..1)."""
        return float(self._inside.mean())

    def apply(self, image: Image) -> Image:
        """Blank the masked pixels of `image` in place (black) and return it."""
        h, w = image.shape[:2]
        if (w, h) != self.frame_size:
            raise ValueError(
                f"privacy mask was built for {self.frame_size[0]}x{self.frame_size[1]} frames, "
                f"got a {w}x{h} frame"
            )
        if not self._empty:
            image[self._inside] = 0
        return image
