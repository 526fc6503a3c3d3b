"""Evaluate the exported reference models through Loupe's own inference code on synthetic data
from seeds never used in training (>= 900000), and write the figures into the manifests.

    .venv/bin/python training/evaluate_models.py --nodule-scans 16 --frames 800

Nodules: LUNA16 FROC/CPM counting nodules >= 4 mm (smaller ones are ignored regions).
Frames: per-frame lesion AUC over the frames stage 1 keeps, and over all informative frames.
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
from core.synthetic.endoscopy import make_endoscopy_frame  # noqa: E402
from inference.endoscopy_classifier import EndoscopyClassifier, FrameRef  # noqa: E402
from inference.errors import ModelError  # noqa: E402
from inference.froc import Annotation, candidates_from_findings, froc  # noqa: E402
from inference.manifest import load_manifest, verify_model_file  # noqa: E402
from inference.nodule_detector import NoduleDetector  # noqa: E402
from inference.roc import roc_auc  # noqa: E402
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


def eval_frames(n: int, seed0: int = 900000) -> dict[str, object]:
    clf = EndoscopyClassifier(load_manifest(MODELS / ENDOSCOPY["id"]))
    rng = np.random.default_rng(seed0)
    frames = []
    truths = []
    for k in range(n):
        lesion = bool(rng.random() < 0.4)
        informative = bool(rng.random() > 0.25)
        img, t = make_endoscopy_frame(seed=seed0 + k, lesion=lesion, informative=informative)
        frames.append((img, FrameRef("eval-es", f"eval-{k}", 1, "ES")))
        truths.append(t)
    t0 = time.perf_counter()
    res = clf.assess(frames)
    secs = time.perf_counter() - t0
    kept = [(a, t) for a, t in zip(res.frames, truths, strict=True) if a.informative]
    auc_kept = roc_auc([a.lesion_probability or 0.0 for a, _ in kept], [t.lesion for _, t in kept])
    inf_auc = roc_auc(
        [a.informative_probability for a in res.frames], [t.informative for t in truths]
    )
    stage1_acc = float(
        np.mean([a.informative == t.informative for a, t in zip(res.frames, truths, strict=True)])
    )
    lesion_dropped = sum(
        1
        for a, t in zip(res.frames, truths, strict=True)
        if t.lesion and t.informative and not a.informative
    )
    # Region check: CAM box overlaps the true lesion box.
    hits = total = 0
    for a, t in kept:
        if t.lesion and t.informative and t.lesion_box and a.region:
            total += 1
            r0, c0, r1, c1 = a.region
            q0, d0, q1, d1 = t.lesion_box
            hits += int(r0 < q1 and q0 < r1 and c0 < d1 and d0 < c1)
    thr = float(clf.manifest.dec("lesion_threshold"))
    les_acc = float(np.mean([((a.lesion_probability or 0.0) >= thr) == t.lesion for a, t in kept]))
    return {
        "lesion_accuracy_at_threshold": les_acc,
        "lesion_auc": auc_kept,
        "informative_auc": inf_auc,
        "stage1_accuracy": stage1_acc,
        "informative_lesion_frames_dropped": lesion_dropped,
        "region_overlap_rate": hits / max(total, 1),
        "frames": n,
        "frames_per_second_480px": n / secs,
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
    ap.add_argument("--frames", type=int, default=800)
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
    if args.frames:
        es = eval_frames(args.frames)
        out["endoscopy"] = es
        print(json.dumps(es, indent=2), flush=True)
        if args.write:
            data = (
                f"{es['frames']} synthetic 480x480 frames, seeds 900000+, "
                "40% lesion, 25% uninformative"
            )
            write_manifest(
                MODELS / ENDOSCOPY["id"],
                ENDOSCOPY,
                [
                    {
                        "metric": "lesion AUC per frame (frames kept by stage 1)",
                        "value": round(float(es["lesion_auc"]), 4),
                        "data": data,
                    },  # type: ignore[arg-type]
                    {
                        "metric": "informative-frame AUC (stage 1)",
                        "value": round(float(es["informative_auc"]), 4),
                        "data": data,
                    },  # type: ignore[arg-type]
                ],
            )
    (ROOT / "training" / "last_evaluation.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
