"""The CPU detector on real street footage: the shipped COCO models find the people walking
past the pole, give boxes in the pixels of whatever image they were handed, and the int8
model sees what the fp32 model sees.

Frames come from vtest.avi, frames 0-499 only (500-794 calibrated the int8 model). The
people listed below were counted by eye on those frames.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

import edge.detectors
from devkit.demo.footage import vtest_path
from edge.detectors import Detection, create
from edge.detectors.base import Box, Image
from edge.detectors.tflite_cpu import TFLiteDetector, iou

EVERY_25TH = range(0, 500, 25)
# A point on the body of every person in the frame (x, y in 768×576 pixels).
PEOPLE = {
    200: [(96, 185), (233, 228), (500, 185), (690, 128), (709, 128), (631, 315), (720, 300)],
    300: [(195, 200), (262, 195), (306, 195), (330, 255), (598, 198), (626, 198)],
}
PARKED = [(678, 72), (748, 70)]  # the white van and the car beside it, top right


@pytest.fixture(scope="module")
def frames() -> dict[int, Image]:
    wanted = set(EVERY_25TH)
    found: dict[int, Image] = {}
    with av.open(str(vtest_path())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = np.asarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
            if index >= max(wanted):
                break
    return found


def load(model: str, **options: object) -> TFLiteDetector:
    detector = create("tflite", model=model, **options)
    assert isinstance(detector, TFLiteDetector)
    return detector


@pytest.fixture(scope="module")
def detectors() -> dict[str, TFLiteDetector]:
    return {m: load(m, score_threshold=0.3) for m in ("int8", "fp32")}


def boxes_of(found: list[Detection], label: str, min_score: float) -> list[Box]:
    return [d.box for d in found if d.label == label and d.score >= min_score]


def box_on(point: tuple[int, int], boxes: list[Box]) -> Box | None:
    """The box around `point` whose centre is nearest to it."""
    x, y = point
    around = [b for b in boxes if b[0] <= x <= b[2] and b[1] <= y <= b[3]]
    return min(around, key=lambda b: ((b[0] + b[2]) / 2 - x) ** 2 + ((b[1] + b[3]) / 2 - y) ** 2,
               default=None)


@pytest.mark.parametrize("model", ["int8", "fp32"])
@pytest.mark.parametrize("index", sorted(PEOPLE))
def test_every_person_walking_past_gets_their_own_box(
    frames: dict[int, Image], detectors: dict[str, TFLiteDetector], model: str, index: int
) -> None:
    people = boxes_of(detectors[model].detect(frames[index]), "person", 0.5)
    matched = [box_on(point, people) for point in PEOPLE[index]]
    missed = [p for p, b in zip(PEOPLE[index], matched, strict=True) if b is None]
    assert not missed, f"{model} frame {index}: nobody found at {missed}; boxes {people}"
    assert len(set(matched)) == len(PEOPLE[index]), "two people share one box"
    # People here stand 50-110 px tall; a box much larger is not on one person.
    assert all(40 <= b[3] - b[1] <= 160 for b in matched if b is not None)
    # Nothing else in the frame is taken for a person but an odd duplicate box.
    assert len(people) <= len(PEOPLE[index]) + 1


@pytest.mark.parametrize("model", ["int8", "fp32"])
def test_the_parked_van_and_car_are_cars(
    frames: dict[int, Image], detectors: dict[str, TFLiteDetector], model: str
) -> None:
    cars = boxes_of(detectors[model].detect(frames[0]), "car", 0.5)
    assert all(box_on(p, cars) for p in PARKED), f"{model}: cars found {cars}"


def test_boxes_lie_inside_the_image_they_came_from(
    frames: dict[int, Image], detectors: dict[str, TFLiteDetector]
) -> None:
    corner = frames[200][250:, 500:]  # the bottom-right corner, people cut by its edges
    for detector in detectors.values():
        for image in [*frames.values(), corner]:
            h, w = image.shape[:2]
            for d in detector.detect(image):
                x1, y1, x2, y2 = d.box
                assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, (d, image.shape)
                assert 0.3 <= d.score <= 1.0


@pytest.mark.parametrize("model", ["int8", "fp32"])
def test_a_crop_around_a_person_gives_a_box_on_them_in_the_crop(
    frames: dict[int, Image], detectors: dict[str, TFLiteDetector], model: str
) -> None:
    detector = detectors[model]
    in_frame = box_on((631, 315), boxes_of(detector.detect(frames[200]), "person", 0.5))
    assert in_frame is not None
    left, top = 540, 200
    crop = frames[200][top : top + 240, left : left + 200]  # not square, not at the origin
    in_crop = box_on((631 - left, 315 - top), boxes_of(detector.detect(crop), "person", 0.5))
    assert in_crop is not None, "the person in the crop was not found"
    back = np.array(in_crop, np.float32) + np.array([left, top, left, top], np.float32)
    overlap = float(iou(back, np.array([in_frame], np.float32))[0])
    assert overlap >= 0.6, f"crop box {in_crop} maps to {back}, frame box {in_frame}"


def test_int8_finds_what_fp32_finds_on_the_evaluation_frames(
    frames: dict[int, Image], detectors: dict[str, TFLiteDetector]
) -> None:
    total = matched = 0
    for image in frames.values():
        reference = boxes_of(detectors["fp32"].detect(image), "person", 0.5)
        candidates = np.array(boxes_of(detectors["int8"].detect(image), "person", 0.5),
                              np.float32).reshape(-1, 4)
        for box in reference:
            total += 1
            hit = len(candidates) and iou(np.array(box, np.float32), candidates).max() >= 0.5
            matched += bool(hit)
    recall = matched / total
    print(f"int8 vs fp32 person recall: {matched}/{total} = {recall:.3f}")
    assert total >= 60, "too few fp32 people to judge agreement"
    assert recall >= 0.95  # 0.979 when measured (2 of 97 missed)


def test_labels_keep_only_the_named_classes_and_max_detections_caps_them(
    frames: dict[int, Image],
) -> None:
    cars_only = load("int8", labels={"car"})
    assert {d.label for d in cars_only.detect(frames[0])} == {"car"}
    two = load("int8", max_detections=2)
    found = two.detect(frames[300])
    assert len(found) == 2 and found[0].score >= found[1].score
    assert two.last_invoke_ms > 0
    assert two.input_size == (300, 300)


def test_a_label_coco_does_not_have_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'pedestrian'.*known: .*person"):
        create("tflite", labels={"person", "pedestrian"})


def test_an_unknown_detector_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown detector type 'edgetpu'; known: .*tflite"):
        create("edgetpu")


def test_a_missing_model_file_says_which_file_and_what_is_accepted(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.tflite"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.tflite.*'int8' or 'fp32'"):
        create("tflite", model=str(missing))


def test_without_any_tflite_runtime_the_error_names_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                   "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, module, None)  # None makes the import fail
    with pytest.raises(RuntimeError, match=r"ai-edge-litert.*tflite-runtime"):
        create("tflite")


def test_importing_the_package_registers_tflite_without_loading_a_runtime() -> None:
    probe = (
        "import sys, edge.detectors as d; "
        "print(d.known_types(), 'cv2' in sys.modules, 'ai_edge_litert' in sys.modules)"
    )
    root = Path(edge.detectors.__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "['tflite'] False False"
