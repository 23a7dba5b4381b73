"""Which heavy libraries a running process has loaded, read from its /proc/<pid>/maps: the
node's main process must keep numpy, OpenCV, PyAV and LiteRT in its workers (and
cryptography out once its key exists). Used by the footprint test and bench/node_start.py."""

from __future__ import annotations

from pathlib import Path

# A library counts as loaded when a file under one of its folders is mapped.
LIBRARIES = {
    "numpy": ("/numpy/", "/numpy.libs/"),
    "cv2": ("/cv2/", "/opencv_python_headless.libs/", "/opencv_python.libs/"),
    "av": ("/av/", "/av.libs/"),
    "litert": ("/ai_edge_litert/", "/tflite_runtime/"),
    "cryptography": ("/cryptography/",),
}


def loaded(pid: int) -> frozenset[str]:
    """The LIBRARIES process `pid` has mapped right now."""
    paths = {line.split(maxsplit=5)[-1] for line in Path(f"/proc/{pid}/maps").read_text()
             .splitlines() if "/" in line}
    return frozenset(name for name, folders in LIBRARIES.items()
                     if any(folder in path for path in paths for folder in folders))
