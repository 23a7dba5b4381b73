"""The image, built once per test run from image.yaml and shared by the image's system tests
(its layout and boot, the update sequence), and its second build for the reproducibility
check.

Both builds run in the background from the moment the suite is collected, one after the
other, while the rest of the suite runs (most of a build is one emulated dpkg at a time: the
other core has room); the image tests run last and wait for them. EDGE_TEST_IMAGE=<a built
.img> lets the image tests run against an image built before (e.g. by `make image`), to work
on them without building again (the reproducibility test is then skipped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from imagebuild import build, tools

from tests.support.image_builds import Builds, Rebuild


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long the background builds took (they are in no test's duration)."""
    if _builds is not None and _builds.took:
        terminalreporter.write_line("image builds in the background: " + ", ".join(
            f"{n} {s:.0f} s" for n, s in zip(("first", "second"), _builds.took, strict=False)))


_builds: Builds | None = None


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected what does not run
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """The image tests last, and their builds started now."""
    global _builds
    image = [item for item in items if item.get_closest_marker("image")]
    if not image:
        return
    items[:] = [item for item in items if not item.get_closest_marker("image")] + image
    if os.environ.get("EDGE_TEST_IMAGE") or config.option.collectonly or _builds is not None:
        return
    factory: pytest.TempPathFactory = config._tmp_path_factory  # type: ignore[attr-defined]
    _builds = Builds(factory.mktemp("image-builds"))
    _builds.start()


@pytest.fixture(scope="session")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> build.Built:
    given = os.environ.get("EDGE_TEST_IMAGE")
    if given:  # the outputs of an earlier build, as they lie beside its .img
        img = Path(given)
        stem = img.name.removesuffix(".img")
        files = [p for p in sorted(img.parent.iterdir())
                 if p.name.startswith(stem) or p.name == "SHA256SUMS"]
        return build.Built(img=img, files=files, version=stem, kernel="")
    assert _builds is not None, "the image builds start when the suite is collected"
    _builds.first_done.wait()
    if isinstance(_builds.first_error, tools.HostNotReady):
        pytest.fail(str(_builds.first_error))
    if _builds.first_error is not None:
        raise _builds.first_error
    assert _builds.first is not None
    return _builds.first


@pytest.fixture(scope="session")
def rebuild(built_image: build.Built) -> Rebuild:
    return Rebuild(_builds)


@pytest.fixture(scope="session")
def card_image(request: pytest.FixtureRequest) -> Path:
    """The card the update sequence runs on."""
    built: build.Built = request.getfixturevalue("built_image")
    return built.img
