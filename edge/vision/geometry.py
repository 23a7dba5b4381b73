"""Boxes on a frame: overlap, clipping, and boxes as 0..1 of the frame. Plain Python, so the
node's main process can handle events without loading numpy or OpenCV."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.detectors.base import Box

# (width, height) in pixels.
Size = tuple[int, int]


def area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def intersection(a: Box, b: Box) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    if inter == 0.0:
        return 0.0
    return inter / (area(a) + area(b) - inter)


def centre(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def bottom_centre(box: Box) -> tuple[float, float]:
    """Where the object stands: feet of a person, wheels of a car."""
    return (box[0] + box[2]) / 2, box[3]


def union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def clip(box: Box, size: Size) -> Box:
    w, h = size
    return (min(max(box[0], 0.0), w), min(max(box[1], 0.0), h),
            min(max(box[2], 0.0), w), min(max(box[3], 0.0), h))


def shift(box: Box, dx: float, dy: float) -> Box:
    return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy


def normalise(box: Box, size: Size) -> Box:
    """A pixel box as 0..1 of the frame, clipped, for payloads that survive resolution changes."""
    w, h = size
    x1, y1, x2, y2 = clip(box, size)
    return x1 / w, y1 / h, x2 / w, y2 / h
