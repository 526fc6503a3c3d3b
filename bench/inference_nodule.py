"""End-to-end nodule analysis of a 300-slice 512x512 chest CT on the CPU (goal <= 10 s).

    .venv/bin/python bench/inference_nodule.py [--runs 3] [--slices 300]

The phantom is generated once per run (not timed). Timed: the engine's work on a Volume in
memory (resample to 2 mm, lung mask, windowing, sliding-window ONNX inference, decoding),
with a warm session (the session is created and warmed before the first run, as the
workstation does at start-up). Loading the DICOM series is not included (see
bench/load_volume.py). Prints per-stage medians, peak RSS and the device used.
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

from core.synthetic.chest_ct import make_chest_ct  # noqa: E402
from inference.manifest import load_manifest  # noqa: E402
from inference.nodule_detector import NoduleDetector  # noqa: E402
from inference.registry import models_dir  # noqa: E402
from inference.series_input import volume_from_phantom  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--model", default="lung-nodule-ref")
    args = ap.parse_args()
    t = time.perf_counter()
    ph = make_chest_ct(
        seed=4242,
        slices=args.slices,
        rows=512,
        cols=512,
        pixel_spacing_mm=0.7,
        slice_spacing_mm=1.0,
        nodule_count=6,
    )
    print(f"phantom {ph.hu.shape} generated in {time.perf_counter() - t:.1f} s (not timed)")
    vol = volume_from_phantom(ph.hu, ph.spacing_mm, ph.origin_mm, "bench")
    t = time.perf_counter()
    det = NoduleDetector(load_manifest(models_dir() / args.model))
    print(
        f"session created and warmed in {time.perf_counter() - t:.2f} s on "
        f"{det.session.info.describe()}"
    )
    totals, stages = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        res = det.detect(vol)
        totals.append(time.perf_counter() - t)
        stages.append(res.timings_s)
    print(f"findings: {len(res.findings)} (truth: {len(ph.nodules)} nodules)")
    for key in stages[0]:
        print(f"  {key:<11} median {statistics.median(s[key] for s in stages):.2f} s")
    med = statistics.median(totals)
    print(
        f"end to end  median {med:.2f} s over {args.runs} runs "
        f"(goal <= 10 s: {'met' if med <= 10 else 'missed'})"
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB (volume {vol.nbytes / 1e6:.0f} MB int16)")


if __name__ == "__main__":
    main()
