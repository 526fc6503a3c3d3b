"""Endoscopy frames per second on the CPU, both stages and CAM included (goal >= 30 frames/s).

    .venv/bin/python bench/inference_endoscopy.py [--frames 240] [--runs 3] [--size 480]
        [--rows 576 --cols 768]

Frames are rendered once (not timed) at the synthetic study's 480x480 (or --rows x --cols,
e.g. a 576x768 processor frame with its round field of view); the timed part is the
classifier's work on decoded RGB frames: field of view, crop and resize to 128x128, ONNX
inference in fixed batches of 8, heatmap and region for every frame, ranking. Prints medians
and peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.synthetic.endoscopy import make_endoscopy_frame  # noqa: E402
from inference.endoscopy_classifier import EndoscopyClassifier, FrameRef  # noqa: E402
from inference.manifest import load_manifest  # noqa: E402
from inference.registry import models_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", type=int, default=480)
    ap.add_argument("--rows", type=int, default=None, help="frame rows (default --size)")
    ap.add_argument("--cols", type=int, default=None, help="frame columns (default --size)")
    ap.add_argument("--model", default="endoscopy-lesion-ref")
    args = ap.parse_args()
    rows, cols = args.rows or args.size, args.cols or args.size
    frames = []
    for k in range(args.frames):
        img, _ = make_endoscopy_frame(
            seed=10_000 + k,
            rows=rows,
            cols=cols,
            lesion=k % 3 == 0,
            informative=k % 5 != 4,
        )
        frames.append((img, FrameRef("bench", f"f{k}", 1, "ES")))
    clf = EndoscopyClassifier(load_manifest(models_dir() / args.model))
    print(f"device: {clf.session.info.describe()}")
    rates = []
    for _ in range(args.runs):
        t = time.perf_counter()
        clf.assess(frames)
        rates.append(args.frames / (time.perf_counter() - t))
    med = statistics.median(rates)
    print(
        f"{args.frames} frames of {rows}x{cols}: median {med:.1f} frames/s "
        f"(goal >= 30: {'met' if med >= 30 else 'missed'})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
