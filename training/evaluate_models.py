"""Evaluate the exported reference models through Loupe's own inference code on synthetic data
from seeds never used in training (>= 900000), and write the figures into the manifests.

    .venv/bin/python training/evaluate_models.py --nodule-scans 16

Nodules: LUNA16 FROC/CPM counting nodules >= 4 mm (smaller ones are ignored regions).
Endoscopy frames: training/evaluate_endoscopy.py (style A and B splits, operating points).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from manifests import ENDOSCOPY, NODULE, write_manifest  # noqa: E402

from core.synthetic.chest_ct import make_chest_ct  # noqa: E402
from inference.errors import ModelError  # noqa: E402
from inference.froc import Annotation, candidates_from_findings, froc  # noqa: E402
from inference.manifest import load_manifest, verify_model_file  # noqa: E402
from inference.nodule_detector import NoduleDetector  # noqa: E402
from inference.series_input import volume_from_phantom  # noqa: E402

MODELS = ROOT / "resources" / "models"


def eval_nodules(n: int, seed0: int = 900000) -> dict[str, object]:
    det = NoduleDetector(load_manifest(MODELS / NODULE["id"]))
    annotations: list[Annotation] = []
    findings = []
    scans = []
    times = []
    rng = np.random.default_rng(seed0)
    for s in range(n):
        size = int(rng.choice([256, 320]))
        fov = float(rng.uniform(330.0, 390.0))
        dz = float(rng.choice([1.25, 2.0, 2.5]))
        ph = make_chest_ct(
            seed=seed0 + s,
            slices=round(300.0 / dz),
            rows=size,
            cols=size,
            pixel_spacing_mm=fov / size,
            slice_spacing_mm=dz,
            nodule_count=6,
            min_nodule_mm=4.0,
            max_nodule_mm=20.0,
        )
        uid = f"eval-{seed0 + s}"
        vol = volume_from_phantom(ph.hu, ph.spacing_mm, ph.origin_mm, uid)
        t = time.perf_counter()
        res = det.detect(vol)
        times.append(time.perf_counter() - t)
        findings.extend(res.findings)
        scans.append(uid)
        annotations.extend(Annotation(uid, nd.center_mm, nd.diameter_mm) for nd in ph.nodules)
    r = froc(candidates_from_findings(findings), annotations, scans, min_diameter_mm=4.0)
    return {
        "cpm": r.cpm,
        "sensitivity": r.sensitivities,
        "nodules": r.nodules,
        "scans": r.scans,
        "median_seconds": float(np.median(times)),
        "device": det.session.info.describe(),
    }


def _ensure_manifest(template: dict[str, object]) -> None:
    """A freshly exported model gets a manifest (without figures) so it can be loaded."""
    d = MODELS / str(template["id"])
    try:
        verify_model_file(load_manifest(d))
    except ModelError:
        write_manifest(d, template, [])


def main() -> None:
    _ensure_manifest(NODULE)
    _ensure_manifest(ENDOSCOPY)
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodule-scans", type=int, default=16)
    ap.add_argument("--write", action="store_true", help="write the metrics into the manifests")
    args = ap.parse_args()
    out: dict[str, object] = {}
    if args.nodule_scans:
        nod = eval_nodules(args.nodule_scans)
        out["nodule"] = nod
        print(json.dumps(nod, indent=2), flush=True)
        if args.write:
            data = (
                f"{nod['scans']} synthetic chest CT phantoms, seeds 900000+, 256-320 px, "
                f"1.25-2.5 mm slices, {nod['nodules']} nodules 4-20 mm"
            )
            sens = nod["sensitivity"]
            assert isinstance(sens, dict)
            write_manifest(
                MODELS / NODULE["id"],
                NODULE,
                [
                    {
                        "metric": "CPM (LUNA16, nodules >= 4 mm)",
                        "value": round(float(nod["cpm"]), 4),
                        "data": data,
                    },  # type: ignore[arg-type]
                    {
                        "metric": "sensitivity at 1 FP/scan",
                        "value": round(float(sens[1.0]), 4),
                        "data": data,
                    },
                ],
            )
    (ROOT / "training" / "last_evaluation.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
