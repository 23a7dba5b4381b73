"""The node's Python packages for the image: aarch64 wheels fetched once into a cache with pip's
platform options (nothing compiled under emulation), and the project's own wheel built from the
checkout. pip inside the image installs from this folder only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from imagebuild.config import ImageConfig

REPO = Path(__file__).resolve().parents[2]


class WheelError(Exception):
    """A wheel could not be fetched or built; the message carries pip's own words."""


def constraints(config: ImageConfig) -> str:
    """requirements.lock plus the image's own pins, as one pip constraints file."""
    lock = (REPO / "requirements.lock").read_text()
    pins = "\n".join(config.python.extra_pins)
    return f"{lock.rstrip()}\n# image-build/image.yaml python.extra_pins\n{pins}\n"


def project_version() -> str:
    for line in (REPO / "pyproject.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise WheelError("pyproject.toml has no version line")


def fetch(config: ImageConfig, dest: Path, own_wheel: Path) -> None:
    """Every aarch64 wheel the project needs into dest (a cache: kept between builds). With a
    complete cache this runs offline; otherwise pip downloads what is missing."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "constraints.txt").write_text(constraints(config))
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(dest),
            "--only-binary=:all:", "--implementation", "cp",
            "--python-version", config.python.version,
            "--constraint", str(dest / "constraints.txt")]
    for tag in config.python.platform_tags:
        base += ["--platform", tag]
    # systemd-python comes from Debian (python3-systemd): it has no wheels.
    deps = [r for r in requirements(own_wheel) if not r.lower().startswith("systemd-python")]
    deps.append("pip")  # run from its wheel inside the image to fill the venv
    offline = subprocess.run([*base, "--no-index", "--find-links", str(dest), *deps],
                             capture_output=True, text=True, check=False)
    if offline.returncode != 0:
        online = subprocess.run([*base, *deps], capture_output=True, text=True, check=False,
                                env={**os.environ, "PIP_FIND_LINKS": ""})
        if online.returncode != 0:
            raise WheelError(f"pip could not fetch the aarch64 wheels:\n{online.stderr.strip()}")
    shutil.copy2(own_wheel, dest / own_wheel.name)


def requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel (markers kept), the project's runtime dependencies."""
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    reqs = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            if "extra ==" not in req:
                reqs.append(req)
    return reqs


def build_own(dest: Path, source_date_epoch: int) -> Path:
    """The project's wheel, built from the files git tracks (as they are in the work tree), so
    a stray file or an old egg-info in the checkout never reaches the image."""
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True,
                            check=True).stdout.decode().split("\0")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edge-src-") as tmp:
        src = Path(tmp) / "src"
        for name in filter(None, listed):
            # Only the pole's packages: the hub, provisioning and the dev-kit never ship.
            if name.startswith(("tests/", "bench/", "image-build/", "docs/", "hub/",
                                "provisioning/", "devkit/")):
                continue
            target = src / name
            if (REPO / name).is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, target)
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(source_date_epoch)}
        run = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                              "--no-build-isolation", "--wheel-dir", str(dest), str(src)],
                             capture_output=True, text=True, check=False, env=env)
        if run.returncode != 0:
            raise WheelError(f"building the project's wheel failed:\n{run.stderr.strip()}")
    wheels = sorted(dest.glob("safecity_edge-*.whl"))
    if not wheels:
        raise WheelError(f"pip wheel made no safecity_edge wheel in {dest}")
    return wheels[-1]
