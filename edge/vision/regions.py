"""Regions: the parts of a frame the detector runs on. Around motion and around where known
tracks are expected, cut at native resolution (a small far-away person is found in a crop
that a scaled-down whole frame loses), merged where they overlap, and one whole-frame region
when that is cheaper. Detections come back in frame pixels with overlaps de-duplicated."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from edge.detectors.base import Box, Detection, Detector, Image
from edge.vision.geometry import Size, area, intersection, iou, shift

# Integer pixel box (x1, y1, x2, y2) of a crop; x2/y2 exclusive.
Region = tuple[int, int, int, int]

# A detection whose edge lies this close to a crop's inner edge was probably cut in half.
_CUT_PX = 3


def full_frame(frame_size: Size) -> Region:
    return 0, 0, frame_size[0], frame_size[1]


def _fit(box: Box, frame_size: Size, input_size: Size, margin: float) -> Region:
    """`box` grown by `margin` (of its size) each side, at least the detector's input size,
    in the detector's aspect ratio, shifted (not cut) to lie inside the frame."""
    fw, fh = frame_size
    iw, ih = input_size
    w = max((box[2] - box[0]) * (1 + 2 * margin), float(iw))
    h = max((box[3] - box[1]) * (1 + 2 * margin), float(ih))
    aspect = iw / ih
    if w / h < aspect:
        w = h * aspect
    else:
        h = w / aspect
    w, h = min(w, float(fw)), min(h, float(fh))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x1 = min(max(cx - w / 2, 0.0), fw - w)
    y1 = min(max(cy - h / 2, 0.0), fh - h)
    return round(x1), round(y1), round(x1 + w), round(y1 + h)


def _as_box(region: Region) -> Box:
    return float(region[0]), float(region[1]), float(region[2]), float(region[3])


def plan_regions(
    seeds: Sequence[Box],
    frame_size: Size,
    input_size: Size,
    *,
    margin: float = 0.25,
    max_regions: int = 3,
    max_area_fraction: float = 0.6,
) -> list[Region]:
    """Crops that cover every seed box (motion, predicted tracks), merged where they overlap.

    When more than `max_regions` crops remain or together they exceed `max_area_fraction` of
    the frame, one whole-frame region replaces them: fewer inferences for nearly the same
    coverage. No seeds, no regions.
    """
    if not seeds:
        return []
    regions = [_fit(s, frame_size, input_size, margin) for s in seeds]
    merged = True
    while merged:
        merged = False
        for i in range(len(regions)):
            for j in range(i + 1, len(regions)):
                a, b = regions[i], regions[j]
                if intersection(_as_box(a), _as_box(b)) > 0:
                    joined = (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))
                    regions[i] = _fit(_as_box(joined), frame_size, input_size, 0.0)
                    del regions[j]
                    merged = True
                    break
            if merged:
                break
    frame_area = frame_size[0] * frame_size[1]
    covered = sum(area(_as_box(r)) for r in regions)
    if len(regions) > max_regions or covered > max_area_fraction * frame_area:
        return [full_frame(frame_size)]
    return sorted(regions)


@dataclass(frozen=True, slots=True)
class RegionDetections:
    """Detections of one frame in frame pixels, and what the detector cost for them."""

    detections: list[Detection]
    inferences: int
    detector_ms: float


def detect_in_regions(
    detector: Detector, image: Image, regions: Sequence[Region], *, iou_threshold: float = 0.5
) -> RegionDetections:
    """Run `detector` on each region of `image`; boxes mapped back to frame pixels.

    An object touching a crop edge inside the frame is cut: its box is part of the object, so
    it is dropped (regions are planned with a margin around what they are for; what they cut
    is seen whole by another region or the next whole-frame scan). Duplicates from
    overlapping regions are suppressed.
    """
    h, w = image.shape[:2]
    found: list[Detection] = []
    spent = 0.0
    for x1, y1, x2, y2 in regions:
        started = time.perf_counter()
        detections = detector.detect(image[y1:y2, x1:x2])
        spent += (time.perf_counter() - started) * 1000
        for d in detections:
            bx1, by1, bx2, by2 = d.box
            cut = (
                (x1 > 0 and bx1 <= _CUT_PX)
                or (y1 > 0 and by1 <= _CUT_PX)
                or (x2 < w and bx2 >= x2 - x1 - _CUT_PX)
                or (y2 < h and by2 >= y2 - y1 - _CUT_PX)
            )
            if not cut:
                found.append(Detection(d.label, d.class_id, d.score, shift(d.box, x1, y1)))
    return RegionDetections(suppress_duplicates(found, iou_threshold), len(regions), spent)


def suppress_duplicates(found: Sequence[Detection], iou_threshold: float = 0.5
                        ) -> list[Detection]:
    """Per-label non-maximum suppression: the best of each group of overlapping boxes."""
    kept: list[Detection] = []
    for det in sorted(found, key=lambda d: d.score, reverse=True):
        if all(k.label != det.label or iou(k.box, det.box) < iou_threshold for k in kept):
            kept.append(det)
    return kept
