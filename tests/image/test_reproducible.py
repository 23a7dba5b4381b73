"""The same inputs give the same bytes: the second build (started in the background by the
first image test, from the package cache) against the first. This file sorts after the
other image tests on purpose: the second build runs while they check, boot and update the
first image, and is only waited for here."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from imagebuild import build

from tests.support.image_builds import Rebuild

pytestmark = [pytest.mark.slow, pytest.mark.image, pytest.mark.timeout(1800)]


def test_a_second_build_from_the_same_inputs_gives_the_same_bytes(
        built_image: build.Built, rebuild: Rebuild) -> None:
    if os.environ.get("EDGE_TEST_IMAGE"):
        pytest.skip("EDGE_TEST_IMAGE is set: there is no second build to compare with")
    first = built_image
    rebuild.join()
    if rebuild.error is not None:
        raise rebuild.error
    second = rebuild.built
    assert second is not None
    out = second.img.parent
    # SHA256SUMS holds every output's hash (checked against the files in the test above).
    sums_1 = (first.img.parent / "SHA256SUMS").read_text().splitlines()
    sums_2 = (out / "SHA256SUMS").read_text().splitlines()
    check = subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=out,
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    differing = [a.split()[1] for a, b in zip(sums_1, sums_2, strict=True) if a != b]
    if differing:
        pytest.fail(f"not reproducible: {differing} differ\n" + diffoscope(first, second))


def diffoscope(first: build.Built, second: build.Built) -> str:
    """What differs, for the failure message: diffoscope on the image (it opens partitions
    and filesystems), cut to a readable length."""
    if shutil.which("diffoscope") is None:
        return "(install diffoscope-minimal to see what differs)"
    run = subprocess.run(["diffoscope", "--no-progress", "--max-report-size", "200000",
                          "--text", "-", str(first.img), str(second.img)],
                         capture_output=True, text=True, check=False, timeout=900)
    return run.stdout[:20000] or run.stderr[-5000:]
