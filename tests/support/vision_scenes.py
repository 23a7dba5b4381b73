"""Synthetic street scenes for the vision tests: a textured still background, solid-colour
"people" (red) and "cars" (blue) that move, and a detector that finds those colours in
whatever image (frame or crop) it is given, so region cropping and mapping are exercised."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.detectors.base import Box, Detection, Image

SIZE = (640, 480)
PERSON = (0, 0, 255)  # BGR red
CAR = (255, 0, 0)  # BGR blue
_COLOURS = {"person": (PERSON, 1), "car": (CAR, 3)}


def background(size: tuple[int, int] = SIZE, seed: int = 7) -> Image:
    """Grey-green texture, the same for a given seed: asphalt and grass, no pure colours."""
    w, h = size
    rng = np.random.default_rng(seed)
    noise = rng.integers(60, 140, size=(h // 8, w // 8, 3), dtype=np.uint8)
    image = cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC)
    image[:, :, 2] = np.minimum(image[:, :, 2], 120)  # keep red and blue away from the actors
    image[:, :, 0] = np.minimum(image[:, :, 0], 120)
    return np.ascontiguousarray(image)


def read_jpeg(path: Path) -> Image:
    """A written snapshot read back as BGR; fails the test if it is not a readable image."""
    picture = cv2.imread(str(path))
    assert picture is not None, f"{path} is not a readable image"
    return np.asarray(picture, dtype=np.uint8)


def draw(image: Image, box: Box, colour: tuple[int, int, int]) -> Image:
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), colour, thickness=-1)
    return image


def scene(actors: list[tuple[Box, str]], size: tuple[int, int] = SIZE) -> Image:
    """The background with each (box, "person" | "car") painted on it."""
    image = background(size)
    for box, label in actors:
        draw(image, box, _COLOURS[label][0])
    return image


class ColourDetector:
    """Finds red people and blue cars in any BGR image; counts its calls like inferences."""

    def __init__(self, input_size: tuple[int, int] = (300, 300), min_area: int = 40) -> None:
        self.input_size = input_size
        self.min_area = min_area
        self.calls = 0
        self.shapes: list[tuple[int, int]] = []

    def detect(self, image: Image) -> list[Detection]:
        self.calls += 1
        self.shapes.append((image.shape[1], image.shape[0]))
        found = []
        for label, (colour, class_id) in _COLOURS.items():
            lo = np.array([max(c - 30, 0) for c in colour], dtype=np.uint8)
            hi = np.array([min(c + 30, 255) for c in colour], dtype=np.uint8)
            mask = cv2.inRange(image, lo, hi)
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            for contour in contours:
                if cv2.contourArea(contour) < self.min_area:
                    continue
                x, y, w, h = cv2.boundingRect(contour)
                found.append(Detection(label, class_id, 0.9, (x, y, x + w, y + h)))
        return found
