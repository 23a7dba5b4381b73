"""The CPU detector (``detector.type: tflite``): SSDLite-MobileNetV2 trained on COCO, run
by LiteRT on the Pi's cores.

The models in ``models/`` are built by image-build/models/build_coco_ssd.py (see
models/PROVENANCE.md). They take one RGB image of 300×300 scaled to [-1, 1] and give, for
each of 1917 anchors, a decoded box (ymin, xmin, ymax, xmax as fractions of the input) and
90 per-class probabilities (sigmoid already applied; column k is COCO id k + 1). This
module resizes the image to 300×300 without letterboxing (the picture is stretched, and
boxes are stretched back), keeps scores over the threshold and does class-aware NMS.

``models/coco_labels.txt`` has one line per COCO id 1..90; ids COCO never used hold
``(unused)`` so that line numbers stay equal to ids.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.detectors.base import Detection, Image, register

MODELS_DIR = Path(__file__).resolve().parent / "models"
MODEL_FILES = {
    "int8": "ssdlite_mobilenet_v2_coco_int8.tflite",
    "fp32": "ssdlite_mobilenet_v2_coco_fp32.tflite",
}
LABELS_FILE = MODELS_DIR / "coco_labels.txt"
UNUSED_LABEL = "(unused)"
INPUT_SIDE = 300
# Candidates NMS looks at, best first: bounds the work on a Pi when the threshold is low.
NMS_CANDIDATES = 300

FloatArray = npt.NDArray[np.float32]


def load_labels(path: Path = LABELS_FILE) -> dict[int, str]:
    """COCO id → name, from a file with the name for id N on line N."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {i: name.strip() for i, name in enumerate(lines, start=1)
            if name.strip() and name.strip() != UNUSED_LABEL}


def prepare(image: Image, size: tuple[int, int] = (INPUT_SIDE, INPUT_SIDE)) -> FloatArray:
    """The model's input for a BGR image: 1×height×width×3 RGB float32 in [-1, 1]."""
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ValueError(f"expected a non-empty BGR image H×W×3, got shape {image.shape}")
    import cv2  # here, not at the top: `import edge.detectors` must stay cheap

    resized = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    rgb = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
    scaled = rgb.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    return scaled[np.newaxis]


def iou(box: FloatArray, others: FloatArray) -> FloatArray:
    """Intersection over union of one (x1, y1, x2, y2) box with each row of `others`."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = np.maximum(area + areas - inter, np.float32(1e-9))
    ratio: FloatArray = (inter / union).astype(np.float32)
    return ratio


def nms(boxes: FloatArray, scores: FloatArray, iou_threshold: float, limit: int) -> list[int]:
    """Greedy non-maximum suppression: indices kept, best score first."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size and len(kept) < limit:
        best = int(order[0])
        kept.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) < iou_threshold]
    return kept


def _interpreter_class() -> Any:
    # Imported here so that `import edge.detectors` stays cheap on a node that uses no model.
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise RuntimeError(
                "the tflite detector needs a TFLite runtime: install ai-edge-litert "
                "(preferred) or tflite-runtime; neither ai_edge_litert nor tflite_runtime "
                "could be imported"
            ) from None
    return Interpreter


def model_path(model: str | Path) -> Path:
    """The .tflite file for ``model``: "int8", "fp32" or a path to a .tflite file."""
    path = MODELS_DIR / MODEL_FILES[model] if model in MODEL_FILES else Path(model)
    if not path.is_file():
        raise FileNotFoundError(
            f"detector model {str(path)!r} does not exist; detector.model is "
            f"{' or '.join(map(repr, MODEL_FILES))} or the path of a .tflite file"
        )
    return path


class TFLiteDetector:
    """SSDLite-MobileNetV2 on the CPU. One per worker: the interpreter is not thread-safe."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int,
        score_threshold: float,
        labels: Iterable[str] | None,
        max_detections: int,
        iou_threshold: float,
    ) -> None:
        self.path = path
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.iou_threshold = iou_threshold
        #: Milliseconds the last model invocation took (telemetry; excludes pre/post).
        self.last_invoke_ms = 0.0
        self._names = load_labels()
        self._interpreter = _interpreter_class()(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        _, height, width, _ = (int(n) for n in self._input["shape"])
        self.input_size = (width, height)
        outputs = self._interpreter.get_output_details()
        # Outputs are told apart by shape: boxes end in 4, class scores in the class count.
        self._boxes = next(d for d in outputs if int(d["shape"][-1]) == 4)
        self._scores = next(d for d in outputs if d is not self._boxes)
        classes = int(self._scores["shape"][-1])
        self._columns = self._wanted_columns(classes, labels)

    def _wanted_columns(self, classes: int, labels: Iterable[str] | None) -> npt.NDArray[np.intp]:
        names = {self._names.get(k + 1, ""): k for k in range(classes)}
        names.pop("", None)
        if labels is None:
            return np.array(sorted(names.values()), dtype=np.intp)
        wanted = set(labels)
        unknown = sorted(wanted - names.keys())
        if unknown:
            raise ValueError(
                f"detector labels {unknown} are not COCO labels of this model; "
                f"known: {', '.join(sorted(names))}"
            )
        return np.array(sorted(names[n] for n in wanted), dtype=np.intp)

    def _tensor(self, detail: dict[str, Any]) -> FloatArray:
        value: npt.NDArray[Any] = self._interpreter.get_tensor(detail["index"])
        scale, zero = detail["quantization"]
        if value.dtype != np.float32 and scale:
            value = (value.astype(np.float32) - np.float32(zero)) * np.float32(scale)
        return value.astype(np.float32, copy=False)

    def _feed(self, image: Image) -> None:
        tensor = prepare(image, self.input_size)
        dtype = self._input["dtype"]
        if dtype != np.float32:
            scale, zero = self._input["quantization"]
            info = np.iinfo(dtype)
            tensor = np.clip(np.round(tensor / scale + zero), info.min, info.max).astype(dtype)
        self._interpreter.set_tensor(self._input["index"], tensor)

    def detect(self, image: Image) -> list[Detection]:
        """Objects in `image` (BGR, any size), boxes in its pixels, best score first."""
        self._feed(image)
        started = time.perf_counter()
        self._interpreter.invoke()
        self.last_invoke_ms = (time.perf_counter() - started) * 1000.0
        scores = self._tensor(self._scores).reshape(-1, int(self._scores["shape"][-1]))
        boxes = self._tensor(self._boxes).reshape(-1, 4)
        chosen = scores[:, self._columns]
        anchor, column = np.nonzero(chosen >= self.score_threshold)
        if anchor.size == 0:
            return []
        if anchor.size > NMS_CANDIDATES:
            best = np.argpartition(-chosen[anchor, column], NMS_CANDIDATES)[:NMS_CANDIDATES]
            anchor, column = anchor[best], column[best]
        h, w = image.shape[:2]
        # Model boxes are (ymin, xmin, ymax, xmax) in fractions of the stretched input.
        frac = boxes[anchor]
        pixels = np.stack([frac[:, 1] * w, frac[:, 0] * h, frac[:, 3] * w, frac[:, 2] * h], 1)
        pixels = np.clip(pixels, 0, [w, h, w, h]).astype(np.float32)
        keep = (pixels[:, 2] > pixels[:, 0]) & (pixels[:, 3] > pixels[:, 1])
        pixels, column, hits = pixels[keep], column[keep], chosen[anchor[keep], column[keep]]
        # Class-aware NMS in one pass: each class is shifted to its own region of the plane.
        offset = (column.astype(np.float32) * np.float32(w + h + 1))[:, np.newaxis]
        kept = nms(pixels + offset, hits, self.iou_threshold, self.max_detections)
        found = []
        for i in kept:
            class_id = int(self._columns[column[i]]) + 1
            x1, y1, x2, y2 = (float(v) for v in pixels[i])
            found.append(Detection(self._names[class_id], class_id, float(hits[i]),
                                   (x1, y1, x2, y2)))
        return found


@register("tflite")
def create_tflite_detector(
    *,
    model: str | Path = "int8",
    threads: int = 1,
    score_threshold: float = 0.4,
    labels: Iterable[str] | None = None,
    max_detections: int = 50,
    iou_threshold: float = 0.5,
) -> TFLiteDetector:
    """The CPU detector. `threads` defaults to 1: the Pi also records and serves alerts."""
    if threads < 1:
        raise ValueError(f"detector threads must be at least 1, got {threads}")
    if not 0.0 < score_threshold <= 1.0:
        raise ValueError(f"detector score_threshold must be in (0, 1], got {score_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"detector iou_threshold must be in (0, 1], got {iou_threshold}")
    if max_detections < 1:
        raise ValueError(f"detector max_detections must be at least 1, got {max_detections}")
    return TFLiteDetector(
        model_path(model),
        threads=threads,
        score_threshold=score_threshold,
        labels=labels,
        max_detections=max_detections,
        iou_threshold=iou_threshold,
    )
