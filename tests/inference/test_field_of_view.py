"""The endoscope's field of view: found from the frame's black mask, text on the mask left out,
a dark lumen inside kept; the model input is the field's crop with the outside blanked."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from inference.field_of_view import detect_field_of_view
from inference.frame_preprocess import to_model_input

ROWS, COLS = 576, 768
CY, CX, R = 288, 400, 270


def _scope_frame(jpeg: bool = False) -> np.ndarray:
    """576x768 frame: round field (radius 270 px) of mucosa with a black lumen at its centre,
    white burned-in text on the black mask at the top left."""
    y, x = np.mgrid[0:ROWS, 0:COLS]
    d = np.hypot(y - CY, x - CX)
    img = np.zeros((ROWS, COLS, 3), np.uint8)
    img[d < R] = (190, 95, 80)
    img[d < 45] = (3, 1, 1)  # the lumen: as dark as the mask
    img[20:36, 10:110:4] = 255  # text columns, separated from the field by black
    if jpeg:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=60)
        img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).copy()
    return img


@pytest.mark.parametrize("jpeg", [False, True])
def test_round_field_on_a_wide_frame_with_text(jpeg: bool) -> None:
    fov = detect_field_of_view(_scope_frame(jpeg))
    step = fov.step
    assert step == 8  # 768 / 96
    r0, c0, r1, c1 = fov.box
    # The circle's bounding box (18, 130, 558, 670), to within a cell and the one-cell rim.
    for got, want in zip((r0, c0, r1, c1), (CY - R, CX - R, CY + R, CX + R), strict=True):
        assert abs(got - want) <= 2 * step, (jpeg, fov.box)
    assert not fov.full_frame

    def inside(r: int, c: int) -> bool:
        return bool(fov.mask[r // step, c // step])

    assert inside(CY, CX)  # the dark lumen is inside the field
    assert inside(CY, CX + R - 12) and inside(CY - R + 12, CX)  # near the edge
    assert not inside(28, 50)  # the text
    assert not inside(ROWS - 5, 5) and not inside(5, COLS - 5)  # corners


def test_full_frame_and_dark_frame_are_all_field() -> None:
    lit = np.full((480, 640, 3), (170, 90, 70), np.uint8)
    lit[200:260, 300:360] = 0  # a dark lumen somewhere
    assert detect_field_of_view(lit).full_frame
    dark = (_scope_frame() // 20).astype(np.uint8)  # nothing lit: no mask to find
    assert detect_field_of_view(dark).full_frame


def test_model_input_is_the_field_with_the_outside_blanked() -> None:
    img = _scope_frame()
    fov = detect_field_of_view(img)
    x = to_model_input(img, 128, 0.5, 0.25, fov)
    black = (0.0 - 0.5) / 0.25
    assert x.shape == (3, 128, 128)
    # The field fills the input: mucosa at the middle of each side, black in the corners.
    red = (190 / 255 - 0.5) / 0.25
    for r, c in ((64, 6), (64, 121), (6, 64), (121, 64)):
        assert abs(float(x[0, r, c]) - red) < 0.05, (r, c)
    assert np.allclose(x[:, 0, 0], black) and np.allclose(x[:, 127, 127], black)
    # Without the field of view the text and the side bands reach the model.
    plain = to_model_input(img, 128, 0.5, 0.25)
    assert float(plain[0, :, :20].mean()) < black + 0.2
