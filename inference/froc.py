"""LUNA16-style FROC and CPM for nodule detection.

A candidate hits a nodule when it lies within the nodule's radius (diameter / 2) of its
centre. Per nodule, the highest-probability hitting candidate is a true positive; other
candidates hitting the same nodule are ignored; candidates hitting only nodules excluded from
the evaluation (smaller than `min_diameter_mm`) are ignored too; every other candidate is a
false positive. Sensitivity at r FPs/scan is the best sensitivity whose FP count per scan does
not exceed r; CPM is the mean over r in 1/8, 1/4, 1/2, 1, 2, 4, 8.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.findings import Finding

FP_RATES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Annotation:
    series_uid: str
    center_mm: tuple[float, float, float]  # LPS x, y, z (LUNA16's coordX/Y/Z)
    diameter_mm: float


@dataclass(frozen=True)
class Candidate:
    series_uid: str
    center_mm: tuple[float, float, float]
    probability: float


@dataclass(frozen=True)
class FrocResult:
    sensitivities: dict[float, float]  # FP rate per scan -> sensitivity
    cpm: float
    nodules: int  # counted nodules
    scans: int
    curve: tuple[tuple[float, float], ...]  # (FPs per scan, sensitivity) at each threshold
    thresholds: tuple[float, ...] = ()  # the probability at each point of `curve`

    def as_json(self) -> dict[str, object]:
        return {
            "cpm": round(self.cpm, 4),
            "sensitivity": {str(k): round(v, 4) for k, v in self.sensitivities.items()},
            "nodules": self.nodules,
            "scans": self.scans,
        }


def read_annotations(path: Path) -> list[Annotation]:
    """CSV with header `seriesuid,coordX,coordY,coordZ,diameter_mm` (mm, LPS)."""
    out: list[Annotation] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        need = {"seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for n, row in enumerate(reader, start=2):
            try:
                out.append(
                    Annotation(
                        row["seriesuid"].strip(),
                        (float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])),
                        float(row["diameter_mm"]),
                    )
                )
            except ValueError:
                raise ValueError(
                    f"{path}: line {n}: coordinates and diameter must be numbers"
                ) from None
    return out


def froc(
    candidates: Sequence[Candidate],
    annotations: Sequence[Annotation],
    scans: Sequence[str],
    *,
    min_diameter_mm: float = 0.0,
    fp_rates: Sequence[float] = FP_RATES,
) -> FrocResult:
    """FROC over `scans` (series UIDs evaluated, including scans without nodules)."""
    if not scans:
        raise ValueError("no scans to evaluate")
    scan_set = set(scans)
    by_scan: dict[str, list[Annotation]] = {s: [] for s in scan_set}
    for a in annotations:
        if a.series_uid in by_scan:
            by_scan[a.series_uid].append(a)
    cands: dict[str, list[Candidate]] = {s: [] for s in scan_set}
    for c in candidates:
        if c.series_uid in cands:
            cands[c.series_uid].append(c)
    events: list[tuple[float, bool]] = []  # (probability, true positive?)
    total = 0
    for s in scan_set:
        ann = by_scan[s]
        counted = [a.diameter_mm >= min_diameter_mm for a in ann]
        total += sum(counted)
        best: dict[int, float] = {}
        if not ann:
            events.extend((c.probability, False) for c in cands[s])
            continue
        centres = np.array([a.center_mm for a in ann], dtype=np.float64)
        radii = np.array([a.diameter_mm / 2.0 for a in ann], dtype=np.float64)
        for c in cands[s]:
            d = np.linalg.norm(centres - np.array(c.center_mm), axis=1)
            hits = np.nonzero(d <= radii)[0]
            hit_counted = [int(h) for h in hits if counted[h]]
            if hit_counted:
                for h in hit_counted:
                    best[h] = max(best.get(h, -1.0), c.probability)
            elif len(hits) == 0:
                events.append((c.probability, False))
            # else: hits only excluded nodules -> ignored
        events.extend((p, True) for p in best.values())
    events.sort(key=lambda e: -e[0])
    n_scans = len(scan_set)
    curve: list[tuple[float, float]] = []
    thresholds: list[float] = []
    tp = fp = 0
    i = 0
    while i < len(events):
        p = events[i][0]
        while i < len(events) and events[i][0] == p:  # ties enter together
            tp += events[i][1]
            fp += not events[i][1]
            i += 1
        curve.append((fp / n_scans, tp / total if total else 0.0))
        thresholds.append(float(p))
    sens = {}
    for r in fp_rates:
        ok = [s for f, s in curve if f <= r]
        sens[float(r)] = max(ok) if ok else 0.0
    cpm = float(np.mean(list(sens.values())))
    return FrocResult(sens, cpm, total, n_scans, tuple(curve), tuple(thresholds))


def at_threshold(result: FrocResult, threshold: float) -> tuple[float, float]:
    """(sensitivity, FPs per scan) when only candidates with p >= threshold are shown."""
    best = (0.0, 0.0)
    for (fps, sens), p in zip(result.curve, result.thresholds, strict=True):
        if p >= threshold:
            best = (sens, fps)
    return best


def candidates_from_findings(findings: Sequence[Finding]) -> list[Candidate]:
    """Candidates from CT findings (frame findings have no centre and are skipped)."""
    return [
        Candidate(f.series_instance_uid, f.center_mm, f.probability)
        for f in findings
        if f.center_mm is not None
    ]
