"""Polygons as config writes them (points 0..1 of the frame's width and height), turned into
pixels and masks for one frame size: privacy masks, motion masks, zones."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge.vision.geometry import Size

Polygon = Sequence[tuple[float, float]]
Mask = npt.NDArray[np.uint8]


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
