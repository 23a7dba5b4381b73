"""Boxes and polygons on a frame: overlap, clipping, and config polygons (0..1 of the frame)
turned into pixels for one frame size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge.detectors.base import Box

# A polygon as config writes it: (x, y) points, each 0..1 of the frame's width and height.
Polygon = Sequence[tuple[float, float]]
# (width, height) in pixels.
Size = tuple[int, int]
Mask = npt.NDArray[np.uint8]


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


def polygon_pixels(polygon: Polygon, size: Size) -> npt.NDArray[np.int32]:
    """A config polygon as an (N, 2) int32 array of pixel points on a `size` frame."""
    if len(polygon) < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {len(polygon)}: {polygon!r}")
    w, h = size
    points = np.asarray(polygon, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"polygon points must be (x, y) pairs, got {polygon!r}")
    if points.min() < -0.01 or points.max() > 1.01:
        raise ValueError(f"polygon points must be 0..1 of the frame (normalised): {polygon!r}")
    points = np.rint(points * (w, h))
    return points.astype(np.int32)


def polygon_mask(polygons: Sequence[Polygon], size: Size) -> Mask:
    """A (height, width) uint8 mask: 255 inside any polygon, 0 elsewhere."""
    w, h = size
    mask = np.zeros((h, w), dtype=np.uint8)
    if polygons:
        cv2.fillPoly(mask, [polygon_pixels(p, size) for p in polygons], 255)
    return mask


def point_in_polygon(point: tuple[float, float], polygon: npt.NDArray[np.int32]) -> bool:
    """True when `point` is inside or on the edge of a pixel polygon."""
    contour = polygon.reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0
