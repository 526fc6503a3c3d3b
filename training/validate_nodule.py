"""Validate the nodule model on two phantom styles, calibrate it and set its operating points.

    .venv/bin/python training/validate_nodule.py --model resources/models/lung-nodule-ref \
        --scans 8 --write

Runs Loupe's own detector (every candidate, down to a low threshold) on
- style A, core.synthetic.chest_ct (the training generator): validation seeds 700000+ and
  test seeds 900000+, never used for training;
- style B, core.synthetic.validation_ct (written separately, other anatomy and noise model,
  never used for training): validation seeds 710000+ and test seeds 910000+.
Both styles at clinical thin-slice geometry (512 x 512, 0.65-0.9 mm pixels, 0.625-2.5 mm
slices, standard and sharp kernels).

Calibration: Platt scaling (p' = sigmoid(a logit(p) + b)) fitted on the validation
candidates of both styles, a candidate labelled true when it hits a nodule (LUNA16 rule). It
is monotonic: CPM and FROC do not change, only what p means. Operating points are chosen on
the calibrated validation FROC of both styles; the test figures are measured on the test
seeds at those thresholds. `--write` puts calibration, operating points and the figures
into the manifest (training/manifests.py) next to model.onnx.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from manifests import NODULE, write_manifest  # noqa: E402

from core.findings import Finding  # noqa: E402
from core.synthetic.chest_ct import make_chest_ct  # noqa: E402
from core.synthetic.validation_ct import make_validation_ct  # noqa: E402
from inference.froc import (  # noqa: E402
    Annotation,
    Candidate,
    at_threshold,
    candidates_from_findings,
    froc,
)
from inference.manifest import load_manifest  # noqa: E402
from inference.nodule_detector import NoduleDetector, calibrate  # noqa: E402
from inference.operating_points import nodule_operating_points  # noqa: E402
from inference.series_input import volume_from_phantom  # noqa: E402

MIN_DIAMETER_MM = 4.0  # LUNA16: smaller nodules are neither hits nor false positives


def scan(style: str, seed: int) -> Any:
    """A clinical-geometry phantom of `style` ("A" or "B") for `seed`."""
    rng = np.random.default_rng(seed + 5)
    dz = float(rng.choice([0.625, 1.0, 1.25, 2.0, 2.5]))
    pixel = float(rng.uniform(0.65, 0.9))
    slices = round(float(rng.uniform(270.0, 310.0)) / dz)
    if style == "A":
        return make_chest_ct(
            seed=seed,
            slices=slices,
            rows=512,
            cols=512,
            pixel_spacing_mm=pixel,
            slice_spacing_mm=dz,
            nodule_count=6,
            min_nodule_mm=4.0,
            max_nodule_mm=25.0,
        )
    return make_validation_ct(
        seed=seed,
        slices=slices,
        pixel_spacing_mm=pixel,
        slice_spacing_mm=dz,
        kernel=str(rng.choice(["standard", "lung"])),
        contrast=bool(rng.random() < 0.3),
        nodule_count=6,
        min_nodule_mm=4.0,
        max_nodule_mm=25.0,
    )


@dataclasses.dataclass
class StyleRun:
    candidates: list[Finding]
    annotations: list[Annotation]
    scans: list[str]
    seconds: list[float]


def run_style(det: NoduleDetector, style: str, seed0: int, n: int) -> StyleRun:
    out = StyleRun([], [], [], [])
    for s in range(n):
        ph = scan(style, seed0 + s)
        uid = f"{style}-{seed0 + s}"
        vol = volume_from_phantom(ph.hu, ph.spacing_mm, ph.origin_mm, uid)
        t = time.perf_counter()
        res = det.detect(vol)
        out.seconds.append(time.perf_counter() - t)
        out.candidates.extend(res.findings)
        out.scans.append(uid)
        out.annotations.extend(Annotation(uid, nd.center_mm, nd.diameter_mm) for nd in ph.nodules)
        print(
            f"  {uid}: {len(res.findings)} candidates, {len(ph.nodules)} nodules, "
            f"{out.seconds[-1]:.1f} s",
            flush=True,
        )
    return out


def hit_labels(run: StyleRun) -> tuple[np.ndarray, np.ndarray]:
    """(probability, hits a nodule >= MIN_DIAMETER_MM) of each candidate; candidates that
    hit only smaller nodules are left out (LUNA16 ignores them)."""
    by_scan: dict[str, list[Annotation]] = {}
    for a in run.annotations:
        by_scan.setdefault(a.series_uid, []).append(a)
    ps, ys = [], []
    for f in run.candidates:
        assert f.center_mm is not None
        hit_counted = hit_small = False
        for a in by_scan.get(f.series_instance_uid, []):
            if np.linalg.norm(np.subtract(f.center_mm, a.center_mm)) <= a.diameter_mm / 2:
                if a.diameter_mm >= MIN_DIAMETER_MM:
                    hit_counted = True
                else:
                    hit_small = True
        if hit_small and not hit_counted:
            continue
        ps.append(f.probability)
        ys.append(hit_counted)
    return np.array(ps, dtype=np.float64), np.array(ys, dtype=bool)


def fit_platt(p: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """a, b minimising the log loss of sigmoid(a logit(p) + b) (Newton's method)."""
    z = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
    a, b = 1.0, 0.0
    for _ in range(100):
        q = 1 / (1 + np.exp(-(a * z + b)))
        g = np.array([np.sum((q - y) * z), np.sum(q - y)])
        w = q * (1 - q) + 1e-9
        h = np.array([[np.sum(w * z * z), np.sum(w * z)], [np.sum(w * z), np.sum(w)]])
        step = np.linalg.solve(h + 1e-6 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)


def reliability(p: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    """Observed fraction of true candidates per probability bin (calibration check)."""
    out = []
    for lo, hi in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.01)):
        m = (p >= lo) & (p < hi)
        if m.any():
            out.append(
                {
                    "bin": f"{lo:.1f}-{min(hi, 1.0):.1f}",
                    "candidates": int(m.sum()),
                    "mean_p": round(float(p[m].mean()), 3),
                    "true_fraction": round(float(y[m].mean()), 3),
                }
            )
    return out


def recalibrated(run: StyleRun, a: float, b: float) -> list[Candidate]:
    cal = {"a": a, "b": b}
    return [
        dataclasses.replace(c, probability=float(calibrate(np.array([c.probability]), cal)[0]))
        for c in candidates_from_findings(run.candidates)
    ]


def figures(run: StyleRun, cands: list[Candidate], points: list[Any]) -> dict[str, Any]:
    r = froc(cands, run.annotations, run.scans, min_diameter_mm=MIN_DIAMETER_MM)
    at = {}
    for p in points:
        sens, fps = at_threshold(r, p.threshold)
        at[p.name] = {"sensitivity": round(sens, 4), "false_positives_per_scan": round(fps, 4)}
    return {
        **r.as_json(),
        "at_operating_points": at,
        "median_seconds": round(float(np.median(run.seconds)), 2),
    }


def write_from_report(model_dir: Path, report: dict[str, Any]) -> None:
    """Manifest beside model.onnx with the report's calibration, operating points and test
    figures (both styles)."""
    template = json.loads(json.dumps(NODULE))
    template["decoding"]["calibration"] = report["calibration"]
    metrics = []
    for name in ("A test", "B test"):
        r = report[name]
        style = "chest_ct (training style)" if name.startswith("A") else "validation_ct"
        what = f"{r['scans']} synthetic test phantoms, style {style}, 512 x 512 clinical geometry"
        metrics.append({"metric": f"CPM, style {name[0]}", "value": r["cpm"], "data": what})
        metrics.append(
            {
                "metric": f"sensitivity at 1 FP/scan, style {name[0]}",
                "value": r["sensitivity"]["1.0"],
                "data": what,
            }
        )
    write_manifest(model_dir, template, metrics, report["operating_points"])
    print(f"wrote {model_dir / 'manifest.json'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=ROOT / "resources/models/lung-nodule-ref")
    ap.add_argument("--scans", type=int, default=8, help="per style and split")
    ap.add_argument("--write", action="store_true", help="write the manifest")
    ap.add_argument("--out", type=Path, default=ROOT / "training/last_nodule_validation.json")
    ap.add_argument(
        "--from-report", type=Path, help="write the manifest from this earlier report, no runs"
    )
    args = ap.parse_args()
    if args.from_report is not None:
        write_from_report(args.model, json.loads(args.from_report.read_text(encoding="utf-8")))
        return
    man = load_manifest(args.model)
    # Every candidate, uncalibrated: calibration is fitted here.
    dec = {k: v for k, v in man.decoding.items() if k != "calibration"}
    dec.update(threshold=0.02, max_findings=60)
    det = NoduleDetector(dataclasses.replace(man, decoding=dec))
    n = args.scans
    runs = {}
    for name, style, seed0 in (
        ("A validation", "A", 700000),
        ("B validation", "B", 710000),
        ("A test", "A", 900000),
        ("B test", "B", 910000),
    ):
        print(f"{name} (seeds {seed0}+)", flush=True)
        runs[name] = run_style(det, style, seed0, n)
    p_a, y_a = hit_labels(runs["A validation"])
    p_b, y_b = hit_labels(runs["B validation"])
    a, b = fit_platt(np.concatenate([p_a, p_b]), np.concatenate([y_a, y_b]))
    print(f"Platt calibration a={a:.3f} b={b:.3f}")
    val = StyleRun(
        runs["A validation"].candidates + runs["B validation"].candidates,
        runs["A validation"].annotations + runs["B validation"].annotations,
        runs["A validation"].scans + runs["B validation"].scans,
        [],
    )
    val_froc = froc(recalibrated(val, a, b), val.annotations, val.scans, min_diameter_mm=4.0)
    data = (
        f"{len(val.scans)} validation phantoms (styles A and B, seeds 700000+ and 710000+), "
        f"{val_froc.nodules} nodules >= 4 mm"
    )
    points = nodule_operating_points(val_froc, data)
    report: dict[str, Any] = {
        "model": f"{man.id} {man.version}",
        "calibration": {"method": "platt", "a": round(a, 4), "b": round(b, 4)},
        "operating_points": [p.as_json() for p in points],
    }
    for name, run in runs.items():
        report[name] = figures(run, recalibrated(run, a, b), points)
        p, y = hit_labels(run)
        p_cal = calibrate(p.astype(np.float32), {"a": a, "b": b}).astype(np.float64)
        report[name]["reliability"] = reliability(p_cal, y)
    report["gap_cpm_test"] = round(report["A test"]["cpm"] - report["B test"]["cpm"], 4)
    print(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.write:
        write_from_report(args.model, report)
    if not math.isfinite(a):
        raise SystemExit("calibration failed")


if __name__ == "__main__":
    main()
