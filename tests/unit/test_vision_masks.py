"""Privacy masks blank exactly the configured area, whatever the frame size."""

from __future__ import annotations

import numpy as np
import pytest

from edge.vision.masks import PrivacyMask
from tests.support.vision_scenes import background

WINDOW = [(0.5, 0.0), (1.0, 0.0), (1.0, 0.5), (0.5, 0.5)]  # top-right quarter


def test_pixels_inside_a_polygon_are_black_and_the_rest_untouched() -> None:
    image = background((640, 480))
    before = image.copy()
    out = PrivacyMask([WINDOW], (640, 480)).apply(image)
    assert out is image  # in place: the frame handed on is the masked one
    assert not image[0:240, 320:640].any()
    assert np.array_equal(image[:, :318], before[:, :318])
    assert np.array_equal(image[242:], before[242:])


def test_normalised_polygons_cover_the_same_part_of_any_resolution() -> None:
    for size in [(640, 480), (1920, 1080), (320, 180)]:
        mask = PrivacyMask([WINDOW], size)
        assert mask.covered_fraction == pytest.approx(0.25, abs=0.01)


def test_several_polygons_and_a_triangle() -> None:
    triangle = [(0.0, 1.0), (0.2, 1.0), (0.0, 0.8)]
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    PrivacyMask([WINDOW, triangle], (100, 100)).apply(image)
    assert not image[98, 1].any()  # inside the triangle, bottom left
    assert image[80, 18].all()  # outside it
    assert not image[10, 90].any()


def test_no_polygons_leave_the_frame_as_it_is() -> None:
    image = background((64, 48))
    before = image.copy()
    PrivacyMask([], (64, 48)).apply(image)
    assert np.array_equal(image, before)


def test_a_frame_of_another_size_is_refused_rather_than_half_masked() -> None:
    with pytest.raises(ValueError, match="640x480"):
        PrivacyMask([WINDOW], (640, 480)).apply(background((320, 240)))


def test_a_polygon_in_pixels_instead_of_fractions_is_refused() -> None:
    with pytest.raises(ValueError, match="normalised"):
        PrivacyMask([[(10, 10), (200, 10), (200, 100)]], (640, 480))
