"""Operating points: manifest validation, points from a FROC curve, and what an analysis shows
and says at a point."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import MODELS, NODULE_ID

from core.findings import Finding
from inference.engine import Analysis
from inference.errors import ManifestError
from inference.froc import Annotation, Candidate, at_threshold, froc
from inference.manifest import Task, _operating_points, load_manifest
from inference.operating_points import nodule_operating_points


def _finding(n: int, p: float) -> Finding:
    return Finding(
        finding_id=f"m-{n}",
        model_id="m",
        model_version="1",
        series_instance_uid="s",
        probability=p,
        center_mm=(float(n), 0.0, 0.0),
    )


def test_manifest_points_are_checked() -> None:
    ok = [
        {"name": "a", "threshold": 0.5, "sensitivity": 0.8, "false_positives_per_scan": 1.0},
        {"name": "b", "threshold": 0.3, "sensitivity": 0.9, "false_positives_per_scan": 3.0,
         "default": True},
    ]  # fmt: skip
    points = _operating_points(ok, Task.DETECTION_3D_HEATMAP)
    assert [p.default for p in points] == [False, True]
    with pytest.raises(ManifestError, match="exactly one"):
        _operating_points([dict(ok[0])], Task.DETECTION_3D_HEATMAP)
    with pytest.raises(ManifestError, match=r"operating_points\[0\].threshold"):
        _operating_points([{**ok[1], "threshold": 1.5}], Task.DETECTION_3D_HEATMAP)
    with pytest.raises(ManifestError, match="false_positives_per_scan is missing"):
        _operating_points([{"name": "x", "threshold": 0.5, "sensitivity": 0.8, "default": True}],
                          Task.DETECTION_3D_HEATMAP)  # fmt: skip
    with pytest.raises(ManifestError, match="specificity is missing"):
        _operating_points(ok, Task.FRAME_CLASSIFICATION_CAM)


def test_points_from_a_froc_curve() -> None:
    """Two scans, four nodules: the points stay within their FP budgets, and the figures
    are what the FROC gives at their thresholds."""
    ann = [Annotation(s, (x, 0.0, 0.0), 10.0) for s in ("s1", "s2") for x in (0.0, 100.0)]
    cands = [
        Candidate("s1", (0.0, 0.0, 0.0), 0.95),
        Candidate("s2", (0.0, 0.0, 0.0), 0.90),
        Candidate("s1", (50.0, 0.0, 0.0), 0.80),  # false
        Candidate("s2", (100.0, 0.0, 0.0), 0.60),
        Candidate("s1", (60.0, 0.0, 0.0), 0.40),  # false
        Candidate("s2", (60.0, 0.0, 0.0), 0.30),  # false
        Candidate("s1", (100.0, 0.0, 0.0), 0.20),
    ]
    r = froc(cands, ann, ["s1", "s2"])
    points = {p.name: p for p in nodule_operating_points(r, "test")}
    assert points["specific"].threshold == pytest.approx(0.90)  # 0 FPs, 2 of 4 found
    assert points["specific"].sensitivity == 0.5
    assert points["balanced"].threshold == pytest.approx(0.40)  # 1 FP/scan, 3 of 4
    assert (points["balanced"].sensitivity, points["balanced"].false_positives_per_scan) == (
        0.75,
        1.0,
    )
    assert points["balanced"].default and not points["sensitive"].default
    assert points["sensitive"].threshold == pytest.approx(0.20)
    assert at_threshold(r, points["sensitive"].threshold) == (1.0, 1.5)


def test_analysis_shows_findings_at_its_point_and_says_so() -> None:
    model = load_manifest(MODELS / NODULE_ID)
    point = model.default_operating_point
    assert point.name == "balanced" and point.default
    cands = [_finding(n, p) for n, p in enumerate((0.97, point.threshold, 0.2, 0.01))]
    a = Analysis("s", model, None, cands)  # type: ignore[arg-type]
    assert [f.probability for f in a.findings] == [0.97, point.threshold]
    text = a.summary()
    assert text.startswith(f"AI: 2 findings at 'balanced' (p >= {point.threshold:.2f}; ")
    assert "on validation" in text and "2 lower candidate(s) hidden" in text
    assert "limit" not in text
    every = a.at(None)
    assert len(every.findings) == 4 and "every candidate" in every.summary()
    specific = a.at(model.operating_point("specific"))
    assert all(f.probability >= specific.point.threshold for f in specific.findings)
    with pytest.raises(ManifestError, match="no operating point 'nope'"):
        model.operating_point("nope")
    # The cap is stated when it cut candidates that this point would show.
    high = [_finding(n, 0.99) for n in range(3)]
    capped = dataclasses.replace(a, candidates=high, capped=True)
    assert capped.cap_hides_findings and "limit of 3 candidates was reached" in capped.summary()
    assert not dataclasses.replace(a, capped=True).cap_hides_findings
