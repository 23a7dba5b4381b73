"""The image, built once per test run from image.yaml and shared by the image's system tests
(its layout and boot, and the update sequence)."""

from __future__ import annotations

import pytest
from imagebuild import build, tools

from tests.image.paths import CONFIG


@pytest.fixture(scope="session")
def built_image(tmp_path_factory: pytest.TempPathFactory) -> build.Built:
    try:
        tools.check_host(boot_test=True)
    except tools.HostNotReady as exc:
        pytest.fail(str(exc))
    return build.build(CONFIG, tmp_path_factory.mktemp("image-1"), build.default_cache())
