"""The two builds of the image that the image tests share, run one after the other on a
thread from the moment the suite is collected (tests/image/conftest.py starts it), and the
second build as the reproducibility test waits for it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from imagebuild import build, tools

from tests.support.paths import IMAGE_CONFIG


class Builds(threading.Thread):
    """The first build of image.yaml, then the second of the same inputs."""

    def __init__(self, out: Path) -> None:
        super().__init__(daemon=True, name="image-builds")
        self.out = out
        self.first: build.Built | None = None
        self.second: build.Built | None = None
        self.first_done = threading.Event()
        self.first_error: BaseException | None = None
        self.second_error: BaseException | None = None
        self.took: list[float] = []  # seconds of each build, for the summary

    def run(self) -> None:
        try:
            tools.check_host(boot_test=True)
            start = time.monotonic()
            self.first = build.build(IMAGE_CONFIG, self.out / "image-1", build.default_cache())
            self.took.append(time.monotonic() - start)
        except BaseException as exc:
            self.first_error = exc
            return
        finally:
            self.first_done.set()
        try:
            start = time.monotonic()
            self.second = build.build(IMAGE_CONFIG, self.out / "image-2", build.default_cache())
            self.took.append(time.monotonic() - start)
        except BaseException as exc:
            self.second_error = exc


class Rebuild:
    """The second build, waited for by the reproducibility test (`builds` is None when the
    tests run against an image built before: there is no second build)."""

    def __init__(self, builds: Builds | None) -> None:
        self._builds = builds

    def join(self) -> None:
        if self._builds is not None:
            self._builds.join()

    @property
    def built(self) -> build.Built | None:
        return self._builds.second if self._builds is not None else None

    @property
    def error(self) -> BaseException | None:
        return self._builds.second_error if self._builds is not None else None
