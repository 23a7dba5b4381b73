"""Config sections for cameras, their zones and masks, and the object detector.

Polygons (zones, privacy and motion masks) are lists of [x, y] points in fractions of
the frame's width and height (0..1, origin top left), so they stay right when a camera's
resolution changes or detection runs on a smaller stream.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from edge.config.base import Section

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Fraction = Annotated[float, Field(ge=0, le=1)]
Point = tuple[Fraction, Fraction]
Polygon = Annotated[list[Point], Field(min_length=3, max_length=64)]

DEFAULT_LABELS = ["person", "bicycle", "car", "motorcycle", "bus", "truck"]


class ZoneSection(Section):
    name: Name = Field(description="What dispatch calls the place: school_gate, bridge, ...")
    polygon: Polygon = Field(description="Corners as [x, y] fractions of the frame (0..1)")
    loiter_s: Annotated[float, Field(gt=0, le=86400)] | None = Field(
        default=None, description="An object staying this long in the zone is loitering"
    )


class CameraSection(Section):
    name: Name = Field(description="Short name of the camera on this pole: street, gate, ...")
    url: str = Field(
        min_length=1,
        description="Video source: a file path, rtsp:// or http(s):// URL, /dev/videoN, "
        "or picamera2:N for the Pi camera N",
    )
    realtime: bool = Field(
        default=True, description="Files: deliver frames at the file's frame rate, as a camera"
    )
    loop: bool = Field(default=False, description="Files: start again at the end (demo)")
    detect_width: Annotated[int, Field(ge=160, le=1920)] | None = Field(
        default=None, description="Scale frames to this width for detection; null: as they come"
    )
    labels: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LABELS),
        description="COCO labels that become tracked objects and events",
    )
    min_score: Annotated[float, Field(gt=0, lt=1)] = 0.5
    zones: list[ZoneSection] = Field(default_factory=list)
    privacy_masks: list[Polygon] = Field(
        default_factory=list,
        description="Areas blanked before detection and in every snapshot (windows, yards)",
    )
    motion_masks: list[Polygon] = Field(
        default_factory=list, description="Areas whose motion is ignored (trees, clocks, road)"
    )
    detect: bool = Field(
        default=True, description="Run detection on this camera; false: record it only"
    )
    every_frame: bool = Field(
        default=False, description="Run the detector on every whole frame (no motion gating)"
    )

    @field_validator("labels")
    @classmethod
    def _coco(cls, value: list[str]) -> list[str]:
        from edge.detectors.tflite_cpu import load_labels

        known = set(load_labels().values()) - {"(unused)"}
        unknown = [label for label in value if label not in known]
        if unknown:
            raise ValueError(
                f"not COCO labels: {', '.join(unknown)} (e.g. person, car, bus, truck, bicycle)"
            )
        if not value:
            raise ValueError("list at least one label (person, car, ...)")
        return value

    @model_validator(mode="after")
    def _zones_unique(self) -> CameraSection:
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError(f"zone names must be unique, got {names}")
        return self


class DetectorSection(Section):
    type: str = Field(default="tflite", description="Detector implementation: tflite")
    model: str = Field(
        default="int8", description="int8 or fp32 (the shipped COCO models) or a .tflite path"
    )
    threads: Annotated[int, Field(ge=1, le=8)] = 1

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        from edge.detectors import known_types

        if value not in known_types():
            raise ValueError(f"unknown detector type {value!r}; known: {', '.join(known_types())}")
        return value


class VisionSection(Section):
    worker_nice: Annotated[int, Field(ge=0, le=19)] = Field(
        default=10, description="Camera and detection workers run this much nicer than the node"
    )
    hang_timeout_s: Annotated[float, Field(ge=2, le=60)] = Field(
        default=5.0, description="A worker silent this long is killed and restarted"
    )
    snapshots: bool = Field(default=True, description="Keep a JPEG per event on the data disk")
