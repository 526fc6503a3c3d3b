"""FROC / CPM and AUC on toy inputs computed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.froc import Annotation, Candidate, froc, read_annotations
from inference.roc import roc_auc


def test_froc_hand_computed() -> None:
    # Two scans. Scan A: nodules N1 (10 mm at origin) and N2 (6 mm at x=50).
    # Scan B: no nodule. Candidates (probability):
    #   A: 0.9 hits N1; 0.8 hits N1 again (ignored); 0.7 false positive; 0.6 hits N2
    #   B: 0.95 false positive; 0.5 false positive
    ann = [Annotation("A", (0, 0, 0), 10.0), Annotation("A", (50, 0, 0), 6.0)]
    cands = [
        Candidate("A", (1, 1, 1), 0.9),
        Candidate("A", (-2, 0, 0), 0.8),
        Candidate("A", (100, 0, 0), 0.7),
        Candidate("A", (50, 2.9, 0), 0.6),
        Candidate("B", (0, 0, 0), 0.95),
        Candidate("B", (5, 5, 5), 0.5),
    ]
    r = froc(cands, ann, ["A", "B"])
    # Sweep: 0.95 FP (fp/scan 0.5, sens 0); 0.9 TP (0.5, 0.5); 0.7 FP (1.0, 0.5);
    # 0.6 TP (1.0, 1.0); 0.5 FP (1.5, 1.0).
    assert r.curve == ((0.5, 0.0), (0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (1.5, 1.0))
    assert r.sensitivities == {
        0.125: 0.0,
        0.25: 0.0,
        0.5: 0.5,
        1.0: 1.0,
        2.0: 1.0,
        4.0: 1.0,
        8.0: 1.0,
    }
    assert r.cpm == pytest.approx((0 + 0 + 0.5 + 1 + 1 + 1 + 1) / 7)
    assert r.nodules == 2 and r.scans == 2


def test_froc_small_nodules_are_ignored_regions() -> None:
    ann = [Annotation("A", (0, 0, 0), 3.0), Annotation("A", (40, 0, 0), 8.0)]
    cands = [Candidate("A", (0.5, 0, 0), 0.99), Candidate("A", (40, 0, 3.9), 0.4)]
    r = froc(cands, ann, ["A"], min_diameter_mm=4.0)
    # The 3 mm nodule is not counted and its hit is neither TP nor FP.
    assert r.nodules == 1
    assert r.curve == ((0.0, 1.0),)
    assert r.cpm == 1.0
    # A hit just outside the radius is a false positive.
    r2 = froc([Candidate("A", (40, 0, 4.1), 0.4)], ann, ["A"], min_diameter_mm=4.0)
    assert r2.curve == ((1.0, 0.0),)


def test_read_annotations(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-10.5,20,-300.25,7.5\n")
    assert read_annotations(p) == [Annotation("1.2.3", (-10.5, 20.0, -300.25), 7.5)]
    p.write_text("seriesuid,coordX,coordY\n1,2,3\n")
    with pytest.raises(ValueError, match="missing column"):
        read_annotations(p)


def test_roc_auc_hand_computed() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.1, 0.4 -> pairs won: 0.9 beats 3; 0.4 beats 0.1,
    # ties 0.4 (half) -> (3 + 1 + 0.5) / 6
    assert roc_auc([0.9, 0.4, 0.5, 0.1, 0.4], [True, True, False, False, False]) == pytest.approx(
        4.5 / 6
    )
    with pytest.raises(ValueError):
        roc_auc([0.1, 0.2], [True, True])
