"""Tune the nodule model's decoding on validation phantoms (seeds 700000+: never used for
training, nor for the reported figures, which use 900000+).

    .venv/bin/python training/tune_nodule.py --model resources/models/lung-nodule-ref --scans 10

Runs the detector once per scan with a low threshold and no edge margin, then scores the
LUNA16 FROC/CPM for several edge margins and thresholds on the kept findings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.synthetic.chest_ct import make_chest_ct  # noqa: E402
from inference.froc import Annotation, candidates_from_findings, froc  # noqa: E402
from inference.manifest import load_manifest  # noqa: E402
from inference.nodule_detector import NoduleDetector  # noqa: E402
from inference.series_input import volume_from_phantom  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=ROOT / "resources/models/lung-nodule-ref")
    ap.add_argument("--scans", type=int, default=10)
    ap.add_argument("--seed0", type=int, default=700000)
    ap.add_argument("--nms", type=float, default=None)
    ap.add_argument("--decoding", type=str, default="{}", help="JSON decoding overrides")
    ap.add_argument("--flips", type=str, default="", help="test-time flips, e.g. x or xy")
    args = ap.parse_args()
    man = load_manifest(args.model)
    over = {"threshold": 0.02, "edge_margin_mm": 0.0, "max_findings": 30}
    over.update(json.loads(args.decoding))
    if args.nms is not None:
        over["nms_radius_mm"] = args.nms
    pre = dict(man.preprocessing, test_time_flips=list(args.flips))
    det = NoduleDetector(
        dataclasses.replace(man, decoding=dict(man.decoding, **over), preprocessing=pre)
    )
    rng = np.random.default_rng(args.seed0)  # same scan parameters as evaluate_models.py
    anns: list[Annotation] = []
    found = []  # (finding, distance in mm to the nearer z end of the volume)
    scans = []
    for s in range(args.scans):
        size = int(rng.choice([256, 320]))
        fov = float(rng.uniform(330.0, 390.0))
        dz = float(rng.choice([1.25, 2.0, 2.5]))
        n_sl = round(300.0 / dz)
        ph = make_chest_ct(
            seed=args.seed0 + s,
            slices=n_sl,
            rows=size,
            cols=size,
            pixel_spacing_mm=fov / size,
            slice_spacing_mm=dz,
            nodule_count=6,
            min_nodule_mm=4.0,
            max_nodule_mm=20.0,
        )
        uid = f"val-{args.seed0 + s}"
        res = det.detect(volume_from_phantom(ph.hu, ph.spacing_mm, ph.origin_mm, uid))
        z0 = ph.origin_mm[2]
        z1 = z0 + (n_sl - 1) * dz
        for f in res.findings:
            z = f.center_mm[2]
            found.append((f, min(z - z0, z1 - z)))
        scans.append(uid)
        anns.extend(Annotation(uid, nd.center_mm, nd.diameter_mm) for nd in ph.nodules)
    out = {}
    for margin in (0.0, 4.0, 8.0, 12.0):
        for thr in (0.02, 0.05, 0.1, 0.15):
            keep = [f for f, d in found if d >= margin and f.probability >= thr]
            r = froc(candidates_from_findings(keep), anns, scans, min_diameter_mm=4.0)
            key = f"margin {margin:g} thr {thr:g}"
            out[key] = r.cpm
            sens = " ".join(f"{v:.3f}" for v in r.sensitivities.values())
            print(f"{key}: CPM {r.cpm:.3f}  sens {sens}", flush=True)


if __name__ == "__main__":
    main()
