"""Operating points of CT detection models: thresholds on the probability chosen on annotated
scans, with the sensitivity and false positives per scan they achieved there (frames:
inference.frame_evaluation).

Commercial CAD shows findings at a validated operating point, not every candidate. A point is
chosen per target false-positive rate (FPs per scan on the FROC curve), as the lowest
threshold that stays within the target; the figures are those measured at that threshold.
A site computes its own with `loupe evaluate --operating-points OUT.json` and copies them
into a manifest's `operating_points`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from inference.froc import FrocResult
from inference.manifest import OperatingPoint

# Named CT points: the FPs per scan each may reach, and which one is the default.
NODULE_TARGETS: Mapping[str, float] = {"specific": 0.25, "balanced": 1.0, "sensitive": 4.0}
DEFAULT_POINT = "balanced"


def nodule_operating_points(
    result: FrocResult,
    data: str,
    targets: Mapping[str, float] = NODULE_TARGETS,
    default: str = DEFAULT_POINT,
) -> list[OperatingPoint]:
    """One point per target FPs/scan: the lowest threshold on the FROC curve whose false
    positives per scan stay within the target."""
    if not result.thresholds:
        raise ValueError("no candidates: operating points need a FROC curve with thresholds")
    out = []
    for name, max_fps in targets.items():
        best: tuple[float, float, float] | None = None  # (threshold, sensitivity, fps)
        for (fps, sens), p in zip(result.curve, result.thresholds, strict=True):
            if fps <= max_fps:
                best = (p, sens, fps)
        if best is None:  # even the top candidate exceeds the target: show nothing
            best = (1.0, 0.0, 0.0)
        out.append(
            OperatingPoint(
                name=name,
                threshold=math.floor(best[0] * 1e4) / 1e4,
                sensitivity=round(best[1], 4),
                false_positives_per_scan=round(best[2], 4),
                data=data,
                default=name == default,
            )
        )
    return out
