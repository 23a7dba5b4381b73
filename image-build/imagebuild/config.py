"""image.yaml: what goes into the image, validated once with errors that name the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

BOARD_DEVICE_TREES = {
    # Debian's kernel names the Raspberry Pi device trees after the SoC.
    "pi3": ["bcm2837-rpi-3-a-plus.dtb", "bcm2837-rpi-3-b.dtb", "bcm2837-rpi-3-b-plus.dtb",
            "bcm2837-rpi-cm3-io3.dtb"],
    "pi4": ["bcm2711-rpi-4-b.dtb", "bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4-io.dtb"],
    "qemu": [],  # QEMU hands U-Boot and the kernel its own device tree
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DebianSection(Section):
    suite: Literal["bookworm", "trixie"]
    mirror: str
    components: list[str] = Field(min_length=1)
    packages: list[str] = Field(min_length=1)
    initramfs_modules: list[str] = Field(min_length=1)

    @field_validator("packages", "initramfs_modules")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not re.fullmatch(r"[a-z0-9][a-z0-9.+_-]*", v)]
        if bad:
            raise ValueError(f"not a Debian package or module name: {', '.join(bad)}")
        return value


class PythonSection(Section):
    version: Annotated[str, Field(pattern=r"^3\.\d+$")]
    glibc: Annotated[str, Field(pattern=r"^2\.\d+$")]
    venv: Path
    extra_pins: list[str] = Field(default_factory=list)

    @property
    def platform_tags(self) -> list[str]:
        """Every manylinux tag the image's libc accepts, newest first, for pip download."""
        newest = int(self.glibc.split(".")[1])
        tags = [f"manylinux_2_{minor}_aarch64" for minor in range(newest, 16, -1)]
        return [*tags, "manylinux2014_aarch64", "linux_aarch64"]


class PartitionSection(Section):
    first_offset_mib: Annotated[int, Field(ge=1, le=64)] = 4
    boot_mib: Annotated[int, Field(ge=64, le=2048)] = 256
    root_mib: Annotated[int, Field(ge=512, le=16384)] = 1280
    data_mib: Annotated[int, Field(ge=64, le=65536)] = 256


class IdSection(Section):
    disk_id: Annotated[str, Field(pattern=r"^0x[0-9a-f]{8}$")]
    boot_volume_id: Annotated[str, Field(pattern=r"^[0-9A-F]{8}$")]
    root_uuid: Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$")]
    data_uuid: Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$")]
    hash_seed: Annotated[str, Field(pattern=r"^[0-9a-f-]{36}$")]

    def partuuid(self, number: int) -> str:
        """An MBR partition's PARTUUID as the kernel and udev spell it: <disk id>-<NN>."""
        return f"{self.disk_id[2:]}-{number:02d}"


class PublishSection(Section):
    url: str
    devices: list[str] = Field(min_length=1)


class ImageConfig(Section):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    description: str
    boards: list[Literal["pi3", "pi4", "qemu"]] = Field(min_length=1)
    debian: DebianSection
    python: PythonSection
    partitions: PartitionSection = Field(default_factory=PartitionSection)
    ids: IdSection
    publish: PublishSection

    @property
    def device_trees(self) -> list[str]:
        return sorted({dtb for board in self.boards for dtb in BOARD_DEVICE_TREES[board]})


class ImageConfigError(Exception):
    """image.yaml is missing, not YAML, or says something the pipeline cannot build."""


def load(path: Path) -> ImageConfig:
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ImageConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ImageConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return ImageConfig.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: {len(exc.errors())} problem(s):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ImageConfigError("\n".join(lines)) from exc
