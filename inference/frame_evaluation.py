"""Frame-level evaluation of an endoscopy result against a site's labels, and operating points
measured from labelled frames (how a site sets its own). Qt-free: `loupe evaluate`, training
and tests call the same functions.

Every frame counts: the AUC is over all labelled frames with the lesion probability of each,
frames stage 1 calls uninformative included (the classifier scores every frame; stage 1 only
keeps uninformative frames out of the findings, see inference.endoscopy_classifier).

Label files are CSV with a header `sop_instance_uid,frame,lesion`; `frame` is the 1-based
frame number (1 for single-frame instances); `lesion` is 1/0, yes/no or true/false.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.endoscopy_classifier import EndoscopyResult
from inference.manifest import OperatingPoint
from inference.roc import roc_auc

__all__ = [
    "FrameLabels",
    "LabelFileError",
    "evaluate_frames",
    "frame_operating_points",
    "operating_points_from_scores",
    "rates_at",
    "read_frame_labels",
]

FrameLabels = dict[tuple[str, int], bool]  # (SOP Instance UID, 1-based frame) -> lesion

_TRUE = {"1", "yes", "y", "true"}
_FALSE = {"0", "no", "n", "false"}
_COLUMNS = ("sop_instance_uid", "frame", "lesion")


class LabelFileError(ValueError):
    """A label file cannot be used; the message names the file and the line."""


def read_frame_labels(path: Path | str) -> FrameLabels:
    """Read `sop_instance_uid,frame,lesion` rows. Raises LabelFileError naming the file and
    line of the first problem (missing columns, bad frame number or lesion value, a frame
    labelled twice)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
    except OSError as exc:
        raise LabelFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        raise LabelFileError(f"{path}: empty; expected a header {','.join(_COLUMNS)}")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in _COLUMNS if c not in header]
    if missing:
        raise LabelFileError(
            f"{path} line 1: header must name {', '.join(_COLUMNS)}; "
            f"missing {', '.join(missing)} (found {', '.join(header) or 'nothing'})"
        )
    col = {c: header.index(c) for c in _COLUMNS}
    labels: FrameLabels = {}
    first_line: dict[tuple[str, int], int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed
        if len(row) < len(header):
            raise LabelFileError(
                f"{path} line {line}: {len(row)} value(s), the header has {len(header)}"
            )
        uid = row[col["sop_instance_uid"]].strip()
        if not uid:
            raise LabelFileError(f"{path} line {line}: sop_instance_uid is empty")
        raw_frame = row[col["frame"]].strip()
        try:
            frame = int(raw_frame)
        except ValueError:
            frame = 0
        if frame < 1:
            raise LabelFileError(
                f"{path} line {line}: frame must be a 1-based frame number, not {raw_frame!r}"
            )
        raw = row[col["lesion"]].strip().lower()
        if raw in _TRUE:
            lesion = True
        elif raw in _FALSE:
            lesion = False
        else:
            raise LabelFileError(
                f"{path} line {line}: lesion must be 1, 0, yes, no, true or false, "
                f"not {row[col['lesion']].strip()!r}"
            )
        key = (uid, frame)
        if key in labels:
            raise LabelFileError(
                f"{path} line {line}: frame {frame} of {uid} is already labelled on line "
                f"{first_line[key]}"
            )
        labels[key] = lesion
        first_line[key] = line
    if not labels:
        raise LabelFileError(f"{path}: no labelled frames after the header")
    return labels


def rates_at(
    scores: Sequence[float] | npt.NDArray[np.floating[Any]],
    labels: Sequence[bool] | npt.NDArray[np.bool_],
    threshold: float,
) -> tuple[float, float]:
    """(sensitivity, specificity) calling frames with score >= threshold positive; NaN for a
    class with no frames."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    sens = float((s[y] >= threshold).sum() / pos) if pos else math.nan
    spec = float((s[~y] < threshold).sum() / neg) if neg else math.nan
    return sens, spec


def evaluate_frames(
    labels: Mapping[tuple[str, int], bool],
    result: EndoscopyResult,
    operating_point: OperatingPoint | float,
) -> dict[str, Any]:
    """AUC over every labelled frame, and sensitivity/specificity at the operating point
    (an OperatingPoint, e.g. the manifest's default, or a bare threshold).

    Frames the result has but the labels lack are counted (`frames_unlabelled`), not scored;
    labelled frames missing from the result are listed (`labelled_frames_missing`).
    """
    if isinstance(operating_point, OperatingPoint):
        name, threshold = operating_point.name, float(operating_point.threshold)
    else:
        name, threshold = "threshold", float(operating_point)
    scores: list[float] = []
    truth: list[bool] = []
    seen: set[tuple[str, int]] = set()
    unlabelled = 0
    lesion_uninformative = 0
    for a in result.frames:
        key = (a.sop_instance_uid, a.frame)
        if key not in labels:
            unlabelled += 1
            continue
        seen.add(key)
        scores.append(a.lesion_probability)
        truth.append(bool(labels[key]))
        if labels[key] and not a.informative:
            lesion_uninformative += 1
    pos = sum(truth)
    neg = len(truth) - pos
    auc = roc_auc(scores, truth) if pos and neg else None
    sens, spec = rates_at(scores, truth, threshold)
    s, y = np.asarray(scores), np.asarray(truth, dtype=bool)
    called = s >= threshold if len(s) else np.zeros(0, dtype=bool)
    return {
        "frames_scored": len(scores),
        "frames_unlabelled": unlabelled,
        "labelled_frames_missing": sorted(set(labels) - seen),
        "positives": pos,
        "negatives": neg,
        "auc": auc,
        "operating_point": name,
        "threshold": threshold,
        "sensitivity": None if math.isnan(sens) else sens,
        "specificity": None if math.isnan(spec) else spec,
        "true_positives": int((called & y).sum()),
        "false_positives": int((called & ~y).sum()),
        "true_negatives": int((~called & ~y).sum()),
        "false_negatives": int((~called & y).sum()),
        "lesion_frames_called_uninformative": lesion_uninformative,
    }


def _cut_points(s: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Thresholds half-way between consecutive distinct scores (and beyond both ends), so a
    threshold rounded for a manifest still falls between the same two frames."""
    u = np.unique(s)
    mids = (u[:-1] + u[1:]) / 2.0
    return np.concatenate([[max(0.0, u[0] / 2.0)], mids, [min(1.0, (u[-1] + 1.0) / 2.0)]])


def operating_points_from_scores(
    scores: Sequence[float] | npt.NDArray[np.floating[Any]],
    labels: Sequence[bool] | npt.NDArray[np.bool_],
    *,
    data: str,
    target_sensitivity: float = 0.95,
    target_specificity: float = 0.95,
) -> tuple[OperatingPoint, ...]:
    """Three points measured on labelled frames: 'sensitive' (highest threshold reaching the
    target sensitivity), 'balanced' (maximum sensitivity + specificity, the default) and
    'specific' (lowest threshold reaching the target specificity). Thresholds are rounded to
    4 decimals and the rates measured at the rounded value, as the manifest stores it."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if not y.any() or y.all():
        raise ValueError("operating points need lesion and lesion-free frames")
    cuts = np.unique(np.clip(np.round(_cut_points(s), 4), 0.0, 1.0))
    rates = np.array([rates_at(s, y, float(t)) for t in cuts])  # (n, 2) sens, spec
    ok_sens = np.flatnonzero(rates[:, 0] >= target_sensitivity)
    ok_spec = np.flatnonzero(rates[:, 1] >= target_specificity)
    sensitive = int(ok_sens.max()) if ok_sens.size else 0  # cuts ascend: highest that reaches
    specific = int(ok_spec.min()) if ok_spec.size else len(cuts) - 1
    balanced = int(np.argmax(rates[:, 0] + rates[:, 1]))
    out = []
    for name, i, default in (
        ("sensitive", sensitive, False),
        ("balanced", balanced, True),
        ("specific", specific, False),
    ):
        out.append(
            OperatingPoint(
                name=name,
                threshold=float(cuts[i]),
                sensitivity=float(rates[i, 0]),
                specificity=float(rates[i, 1]),
                data=data,
                default=default,
            )
        )
    return tuple(out)


def frame_operating_points(
    labels: Mapping[tuple[str, int], bool],
    result: EndoscopyResult,
    *,
    data: str,
    target_sensitivity: float = 0.95,
    target_specificity: float = 0.95,
) -> tuple[OperatingPoint, ...]:
    """Operating points from a site's labelled frames and the model's result on them (see
    operating_points_from_scores); unlabelled frames are left out."""
    pairs = [
        (a.lesion_probability, bool(labels[(a.sop_instance_uid, a.frame)]))
        for a in result.frames
        if (a.sop_instance_uid, a.frame) in labels
    ]
    if not pairs:
        raise ValueError("no labelled frame is in the result")
    return operating_points_from_scores(
        [p for p, _ in pairs],
        [t for _, t in pairs],
        data=data,
        target_sensitivity=target_sensitivity,
        target_specificity=target_specificity,
    )
