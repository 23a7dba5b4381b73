"""What every object detector gives the vision pipeline, whatever runs the model.

A detector takes one BGR image (a whole frame or a region cut from it) and returns the
objects it sees, with boxes in that image's pixel coordinates. Implementations register
under a `type` key (``detector.type`` in the node's config), so an Edge TPU or a Jetson
(ONNX/TensorRT) detector is one more module that calls :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

# (x1, y1, x2, y2) in pixels, x to the right and y down; x2/y2 exclusive.
Box = tuple[float, float, float, float]
Image = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True)
class Detection:
    """One object the model saw: COCO label, its score (0..1) and where it is."""

    label: str
    class_id: int  # COCO 90 id, 1 = person
    score: float
    box: Box


class Detector(Protocol):
    """A loaded model, ready to run. Not thread-safe: one detector per worker process."""

    #: The model's input size (width, height); regions are cut to this aspect ratio.
    input_size: tuple[int, int]

    def detect(self, image: Image) -> list[Detection]:
        """Objects in `image` (BGR, HxWx3, any size), boxes in `image`'s pixels."""
        ...


DetectorFactory = Callable[..., Detector]
_REGISTRY: dict[str, DetectorFactory] = {}


def register(type_name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Make a detector implementation selectable as ``detector.type: <type_name>``."""

    def add(factory: DetectorFactory) -> DetectorFactory:
        _REGISTRY[type_name] = factory
        return factory

    return add


def known_types() -> list[str]:
    return sorted(_REGISTRY)


def create(type_name: str, **options: Any) -> Detector:
    """Build the detector config asks for; ValueError names the known types."""
    try:
        factory = _REGISTRY[type_name]
    except KeyError:
        raise ValueError(
            f"unknown detector type {type_name!r}; known: {', '.join(known_types())}"
        ) from None
    return factory(**options)
