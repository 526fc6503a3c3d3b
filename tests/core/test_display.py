"""Display models without a screen: window/level, heatmap colouring, MPR mapping."""

from __future__ import annotations

import numpy as np
import pytest

from core.display import COLOR_MAPS, BlendMode, HeatmapLayer, WindowLevel
from core.mpr import Plane, index_to_pixel, pixel_to_index, plane_image
from core.volume import Volume, affine_from_dicom


def test_window_level_maps_hu_linearly_and_emits():
    wl = WindowLevel(40, 400)
    seen = []
    wl.changed.connect(seen.append)
    out = wl.apply(np.array([-160, 40, 240, -1000, 3000], dtype=np.int16))
    assert list(out) == [0, 127, 255, 0, 255]
    wl.apply_preset("lung")
    assert (wl.center, wl.width) == (-600, 1500) and seen == [wl]
    wl.set(-600, 1500)  # no change, no event
    assert len(seen) == 1


def test_heatmap_blend_alone_threshold_and_hidden():
    grey = np.full((4, 4), 100, dtype=np.uint8)
    prob = np.zeros((4, 4), dtype=np.uint8)
    prob[1, 1] = 255
    prob[2, 2] = 10  # below a 0.1 threshold (25.5)
    layer = HeatmapLayer(color_map="hot", opacity=0.5, threshold=0.1)
    out = layer.colorize(prob, grey)
    top = COLOR_MAPS["hot"][255].astype(int)
    assert tuple(out[1, 1]) == tuple((100 + (top - 100) * 0.5).astype(np.uint8))
    assert tuple(out[2, 2]) == (100, 100, 100) and tuple(out[0, 0]) == (100, 100, 100)
    layer.update(blend=BlendMode.ALONE)
    out = layer.colorize(prob, grey)
    assert tuple(out[1, 1]) == tuple(top) and tuple(out[0, 0]) == (0, 0, 0)
    layer.update(visible=False)
    assert not layer.colorize(prob, grey).any()
    with pytest.raises(ValueError, match="opacity"):
        layer.update(opacity=2.0)
    with pytest.raises(ValueError, match="colour map"):
        layer.update(color_map="rainbow")


def test_mpr_pixel_index_round_trip_and_superior_up():
    vol = Volume(
        voxels=np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6),
        affine=affine_from_dicom((0, 0, 0), (1, 0, 0), (0, 1, 0), (2.0, 1.0), (0, 0, 3.0)),
    )
    for plane in Plane:
        for kji in [(0.0, 0.0, 0.0), (3.0, 4.0, 5.0), (1.0, 2.0, 3.0)]:
            idx, row, col = index_to_pixel(vol, plane, kji)
            assert pixel_to_index(vol, plane, round(idx), row, col) == pytest.approx(kji)
    coronal = plane_image(vol.voxels, vol, Plane.CORONAL, 2)
    assert coronal.shape == (4, 6)
    assert coronal[0, 0] == vol.voxels[3, 2, 0]  # highest z (superior) on the top row
