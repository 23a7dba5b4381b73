"""The image, built once per test run from image.yaml and shared by the image's system tests
(its layout and boot, the update sequence), and its second build for the reproducibility
check, run in the background from the first image test on. EDGE_TEST_IMAGE=<a built .img> lets the
image tests run against an image built before (e.g. by `make image`), to work on them
without building again (the reproducibility test is then skipped)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from imagebuild import build, tools

from tests.image.paths import CONFIG


@pytest.fixture(scope="session")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> build.Built:
    given = os.environ.get("EDGE_TEST_IMAGE")
    if given:  # the outputs of an earlier build, as they lie beside its .img
        img = Path(given)
        stem = img.name.removesuffix(".img")
        files = [p for p in sorted(img.parent.iterdir())
                 if p.name.startswith(stem) or p.name == "SHA256SUMS"]
        return build.Built(img=img, files=files, version=stem, kernel="")
    try:
        tools.check_host(boot_test=True)
    except tools.HostNotReady as exc:
        pytest.fail(str(exc))
    return build.build(CONFIG, tmp_path_factory.mktemp("image-1"), build.default_cache())


class Rebuild(threading.Thread):
    """The second build of the same inputs, run while the first one is checked and booted
    (most of a build is one emulated dpkg at a time: the other core has room)."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True)
        self.out = out
        self.built: build.Built | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.built = build.build(CONFIG, self.out, build.default_cache())
        except BaseException as exc:
            self.error = exc


@pytest.fixture(scope="session")
def rebuild(built_image: build.Built, tmp_path_factory: pytest.TempPathFactory) -> Rebuild:
    job = Rebuild(tmp_path_factory.mktemp("image-2"))
    if not os.environ.get("EDGE_TEST_IMAGE"):
        job.start()
    return job


@pytest.fixture(scope="session")
def card_image(request: pytest.FixtureRequest) -> Path:
    """The card the update sequence runs on."""
    built: build.Built = request.getfixturevalue("built_image")
    return built.img
