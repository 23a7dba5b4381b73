"""Object detectors behind one interface, selected by ``detector.type`` in config.

Importing this package registers every implementation, so config validation and
:func:`create` know all types; the implementations load their runtimes only when created.
"""

from edge.detectors import tflite_cpu as _tflite_cpu  # noqa: F401  (registers "tflite")
from edge.detectors.base import Box, Detection, Detector, create, known_types, register

__all__ = ["Box", "Detection", "Detector", "create", "known_types", "register"]
