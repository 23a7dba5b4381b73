"""Turn the TF.js COCO-SSD graph (model.json + weight shards) into TFLite files.

Runs inside the throwaway TensorFlow venv that build_coco_ssd.py makes; it is not part of
the firmware and never runs on a pole. Steps: rebuild the TensorFlow GraphDef from the
JSON topology, put the float32 weights from the shards into their Const nodes, cut the
graph between the normalised image (input of the first convolution) and the decoded boxes
and class scores, then convert that piece to an fp32 model and a full-integer int8 model.

The graph's own pre-processing (a while-loop resize) and the model's NMS stay out: the
runtime (edge/detectors/tflite_cpu.py) resizes and normalises, and does NMS in numpy.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format

INPUT_NODE = "normalized_image"  # new placeholder: RGB 1x300x300x3 scaled to [-1, 1]
CUT_AT = "Preprocessor/sub"  # the graph's own normalised image, fed to the first Conv2D
BOXES_FROM = "Postprocessor/Reshape_2"  # decoded boxes [1, 1917, 4] before ExpandDims_1
SCORES_FROM = "Postprocessor/Slice"  # sigmoid scores [1, 1917, 90], background dropped
BOXES_OUT, SCORES_OUT = "detection_boxes", "detection_scores"
SIDE = 300


def load_weights(model_dir: Path, manifest: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Weights by Const node name; shards are one byte stream, tensors in manifest order."""
    weights: dict[str, np.ndarray] = {}
    for group in manifest:
        blob = b"".join((model_dir / p).read_bytes() for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            if "quantization" in spec:
                raise SystemExit(f"{spec['name']}: quantised TF.js weights are not handled")
            dtype = np.dtype(spec["dtype"])
            count = int(np.prod(spec["shape"])) if spec["shape"] else 1
            value = np.frombuffer(blob, dtype, count, offset).reshape(spec["shape"])
            weights[spec["name"]] = value
            offset += count * dtype.itemsize
        if offset != len(blob):
            raise SystemExit(f"weights use {offset} bytes of {len(blob)} in the shards")
    return weights


def _encode_strings(attr: dict[str, Any]) -> None:
    # TF.js stores bytes fields as lists of ints; protobuf's JSON form wants base64.
    for value in attr.values():
        if isinstance(value.get("s"), list):
            value["s"] = base64.b64encode(bytes(value["s"])).decode()
        listed = value.get("list")
        if isinstance(listed, dict) and listed.get("s"):
            listed["s"] = [base64.b64encode(bytes(s)).decode() for s in listed["s"]]


def graph_def_from_tfjs(model_json: Path) -> tf.compat.v1.GraphDef:
    spec = json.loads(model_json.read_text())
    topology = spec["modelTopology"]
    weights = load_weights(model_json.parent, spec["weightsManifest"])
    for node in topology["node"]:
        attr = node.get("attr", {})
        _encode_strings(attr)
        if node["op"] == "Const":
            attr.pop("value", None)
    graph = json_format.ParseDict(topology, tf.compat.v1.GraphDef())
    consts = [n for n in graph.node if n.op == "Const"]
    missing = [n.name for n in consts if n.name not in weights]
    if missing:
        raise SystemExit(f"no weights for Const nodes: {missing[:5]}")
    for node in consts:
        node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
    return graph


def cut_detector(graph: tf.compat.v1.GraphDef) -> tf.compat.v1.GraphDef:
    """Normalised image in, decoded boxes and sigmoid scores out, every op int8-capable."""
    placeholder = graph.node.add(name=INPUT_NODE, op="Placeholder")
    placeholder.attr["dtype"].type = tf.float32.as_datatype_enum
    placeholder.attr["shape"].shape.CopyFrom(
        tf.TensorShape([1, SIDE, SIDE, 3]).as_proto()
    )
    for node in graph.node:
        node.input[:] = [INPUT_NODE if i == CUT_AT else i for i in node.input]
        # The export folded residual adds into AddN, which TFLite has no int8 kernel for:
        # the int8 model would drop to float around each one. A two-input AddN is an Add.
        if node.op == "AddN" and len(node.input) == 2:
            node.op = "AddV2"
            del node.attr["N"]
    for name, source in ((BOXES_OUT, BOXES_FROM), (SCORES_OUT, SCORES_FROM)):
        out = graph.node.add(name=name, op="Identity", input=[source])
        out.attr["T"].type = tf.float32.as_datatype_enum
    return tf.compat.v1.graph_util.extract_sub_graph(graph, [BOXES_OUT, SCORES_OUT])


def converter_for(frozen: Path) -> tf.lite.TFLiteConverter:
    return tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(frozen), [INPUT_NODE], [BOXES_OUT, SCORES_OUT],
        input_shapes={INPUT_NODE: [1, SIDE, SIDE, 3]},
    )


def check_against_graph(frozen: Path, tflite: bytes, sample: np.ndarray) -> float:
    """Largest score difference between TensorFlow on the cut graph and the fp32 TFLite."""
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(frozen.read_bytes())
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g) as session:
            expected = session.run(f"{SCORES_OUT}:0", {f"{INPUT_NODE}:0": sample})
    interpreter = tf.lite.Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    scores = next(
        d for d in interpreter.get_output_details() if d["shape"][-1] == expected.shape[-1]
    )
    return float(np.abs(interpreter.get_tensor(scores["index"]) - expected).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-json", type=Path, required=True)
    parser.add_argument("--calibration", type=Path, required=True,
                        help=".npy of preprocessed frames, N x 300 x 300 x 3 float32")
    parser.add_argument("--fp32-out", type=Path, required=True)
    parser.add_argument("--int8-out", type=Path, required=True)
    parser.add_argument("--int8-io", choices=["float32", "int8"], default="float32",
                        help="tensor type at the int8 model's input and outputs")
    args = parser.parse_args(argv)

    calibration = np.load(args.calibration)
    if calibration.dtype != np.float32 or calibration.shape[1:] != (SIDE, SIDE, 3):
        raise SystemExit(f"calibration must be N x {SIDE} x {SIDE} x 3 float32, "
                         f"got {calibration.shape} {calibration.dtype}")
    tf.random.set_seed(0)
    with tempfile.TemporaryDirectory(prefix="coco-ssd-") as tmp:
        frozen = Path(tmp) / "detector.pb"
        frozen.write_bytes(cut_detector(graph_def_from_tfjs(args.model_json))
                           .SerializeToString())

        fp32 = converter_for(frozen).convert()
        drift = check_against_graph(frozen, fp32, calibration[:1])
        print(f"fp32 TFLite vs TensorFlow graph: max score difference {drift:.2e}")
        if drift > 1e-3:
            raise SystemExit("the fp32 TFLite model does not reproduce the graph's scores")

        def frames() -> Iterator[list[np.ndarray]]:
            for frame in calibration:
                yield [frame[np.newaxis]]

        converter = converter_for(frozen)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = frames
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.int8 if args.int8_io == "int8" else tf.float32
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
        int8 = converter.convert()

    args.fp32_out.write_bytes(fp32)
    args.int8_out.write_bytes(int8)
    print(f"wrote {args.fp32_out.name} ({len(fp32)} bytes), "
          f"{args.int8_out.name} ({len(int8)} bytes, {args.int8_io} in/out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
