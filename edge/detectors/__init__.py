"""Object detectors behind one interface, selected by ``detector.type`` in config."""

from edge.detectors.base import Box, Detection, Detector, create, known_types, register

__all__ = ["Box", "Detection", "Detector", "create", "known_types", "register"]
