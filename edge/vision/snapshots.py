"""Snapshots: one JPEG per event, the (already privacy-masked) frame with the object's box
drawn, at `<directory>/<camera>/<event_id>.jpg`. Written whole or not at all (temporary file,
then rename), so the uplink never sends half a picture. A failed write is logged and
counted; it never stops the pipeline."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from drivers.storage import write_whole
from edge.detectors.base import Box, Image

log = logging.getLogger(__name__)

_BOX_COLOUR = (0, 200, 255)  # BGR amber: visible on grass, asphalt and night footage


class SnapshotStore:
    """Writes event snapshots under `directory`; `failures` counts writes that did not happen."""

    def __init__(self, directory: Path, *, quality: int = 80, max_side: int = 1280) -> None:
        self.directory = directory
        self.quality = quality
        self.max_side = max_side
        self.failures = 0

    def path(self, camera: str, event_id: str) -> Path:
        return self.directory / camera / f"{event_id}.jpg"

    def write(
        self, camera: str, event_id: str, image: Image, box: Box, caption: str = ""
    ) -> Path | None:
        """Save `image` with `box` (pixels) drawn; the path, or None when it could not be."""
        target = self.path(camera, event_id)
        try:
            jpeg = self._encode(image, box, caption)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_whole(target, jpeg)
        except (OSError, cv2.error, ValueError) as e:
            self.failures += 1
            log.warning("snapshot for camera %s event %s not written to %s: %s",
                        camera, event_id, target, e)
            return None
        return target

    def _encode(self, image: Image, box: Box, caption: str) -> bytes:
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(w, h))
        picture = (
            cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
            if scale < 1.0
            else image.copy()  # the frame goes on to the detector; draw on a copy
        )
        x1, y1, x2, y2 = (round(v * scale) for v in box)
        thickness = max(2, round(max(picture.shape[:2]) / 400))
        cv2.rectangle(picture, (x1, y1), (x2, y2), _BOX_COLOUR, thickness)
        if caption:
            cv2.putText(picture, caption, (x1, max(y1 - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5, _BOX_COLOUR, 1, cv2.LINE_AA)
        ok, jpeg = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoder refused the frame")
        return jpeg.tobytes()
