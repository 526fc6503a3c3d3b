"""Slice render time with finding overlay and heatmap blended (goal <= 16 ms, 60 fps), and
MPR reslice time, on a 300-slice 512x512 phantom. Run: .venv/bin/python bench/render_slice.py

Each figure is the median of many repaints of the real SliceView (Qt offscreen, QImage
target): window/level, colour-mapped heatmap blended over the slice, markers, text.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from core.display import AiVisibility, HeatmapLayer, WindowLevel
from core.findings import Finding, FindingSet
from core.mpr import Plane, plane_image
from core.navigation import Cursor
from core.synthetic.chest_ct import make_chest_ct, phantom_volume
from viewers.slice_view import SliceView


def median_ms(fn, n: int = 40) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    app = QApplication.instance() or QApplication([])
    phantom = make_chest_ct(seed=11, slices=300, rows=512, cols=512, nodule_count=6)
    volume = phantom_volume(phantom)
    heat = np.zeros(volume.shape, dtype=np.uint8)
    findings = []
    for n, nod in enumerate(phantom.nodules):
        k, j, i = (round(v) for v in volume.world_to_index(nod.center_mm))
        heat[max(0, k - 3) : k + 4, max(0, j - 12) : j + 12, max(0, i - 12) : i + 12] = 220
        findings.append(
            Finding(
                f"F{n}", "bench", "1", "", 0.8, center_mm=nod.center_mm, diameter_mm=nod.diameter_mm
            )
        )
    results = {}
    for name, heatmap_pane in (("slice only", False), ("slice + markers + heatmap", True)):
        view = SliceView(
            Plane.AXIAL, WindowLevel(), Cursor(), AiVisibility(), heatmap_pane=heatmap_pane
        )
        view.set_volume(volume)
        view.set_findings(FindingSet(findings))
        view.set_heatmap(heat, HeatmapLayer(opacity=0.6))
        view.resize(900, 900)
        target = QImage(900, 900, QImage.Format.Format_RGB32)
        k0 = round(volume.world_to_index(phantom.nodules[0].center_mm)[0])
        state = {"k": k0}

        def step(
            view: SliceView = view, target: QImage = target, state: dict = state, k0: int = k0
        ) -> None:
            # A new slice each time (scrolling): nothing cached from the previous paint.
            state["k"] = k0 + (1 if state["k"] == k0 else 0)
            view.set_index(state["k"])
            view.render(target)

        results[name] = median_ms(step)
    wl = WindowLevel()
    for plane in (Plane.CORONAL, Plane.SAGITTAL):
        results[f"MPR {plane.value} reslice + W/L"] = median_ms(
            lambda plane=plane: wl.apply(plane_image(volume.voxels, volume, plane, 256))
        )
    for name, ms in results.items():
        print(f"{name:34s} {ms:7.2f} ms (median of 40)")
    del app


if __name__ == "__main__":
    main()
