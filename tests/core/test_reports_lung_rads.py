"""Lung-RADS v2022 baseline category suggested from reviewed nodules."""

from __future__ import annotations

from typing import Any

import pytest

from core.findings import Finding, ReviewStatus
from core.reports.lung_rads import suggest_lung_rads


def nodule(
    d: float,
    kind: str | None = None,
    solid: float | None = None,
    status: ReviewStatus = ReviewStatus.ACCEPTED,
    fid: str = "n1",
) -> Finding:
    attrs: dict[str, Any] = {}
    if kind is not None:
        attrs["type"] = kind
    if solid is not None:
        attrs["solid_component_mm"] = solid
    return Finding(
        finding_id=fid,
        model_id="m",
        model_version="1",
        series_instance_uid="1.2",
        probability=0.9,
        center_mm=(0.0, 0.0, 0.0),
        diameter_mm=d,
        attributes=attrs,
        status=status,
    )


CASES = [
    # (diameter mm, type, solid component mm, category)
    (5.9, "solid", None, "2"),
    (6.0, "solid", None, "3"),
    (7.9, "solid", None, "3"),
    (8.0, "solid", None, "4A"),
    (14.9, "solid", None, "4A"),
    (15.0, "solid", None, "4B"),
    (30.0, "solid", None, "4B"),
    (7.0, None, None, "3"),  # unknown type counts as solid
    (5.9, "part-solid", None, "2"),
    (6.0, "part-solid", 5.9, "3"),
    (12.0, "part-solid", 4.0, "3"),
    (12.0, "part-solid", 6.0, "4A"),
    (12.0, "part-solid", 7.9, "4A"),
    (12.0, "part-solid", 8.0, "4B"),
    (7.0, "part-solid", None, "4A"),  # solid component unknown: whole diameter (7 mm)
    (9.0, "part-solid", None, "4B"),
    (29.9, "ground-glass", None, "2"),
    (30.0, "ground-glass", None, "3"),
    (45.0, "ground-glass", None, "3"),
]


@pytest.mark.parametrize(("d", "kind", "solid", "category"), CASES)
def test_single_nodule_category(
    d: float, kind: str | None, solid: float | None, category: str
) -> None:
    assert suggest_lung_rads([nodule(d, kind, solid)]).category == category


def test_no_nodule_is_category_1() -> None:
    s = suggest_lung_rads([])
    assert s.category == "1" and "no accepted" in s.reason


def test_only_reviewed_nodules_count_and_the_worst_wins() -> None:
    findings = [
        nodule(20.0, "solid", status=ReviewStatus.REJECTED, fid="rejected"),
        nodule(20.0, "solid", status=ReviewStatus.PENDING, fid="pending"),
        nodule(4.0, "solid", fid="small"),
        nodule(9.0, "solid", status=ReviewStatus.MODIFIED, fid="modified"),
        nodule(35.0, "ground-glass", status=ReviewStatus.ADDED, fid="added"),
    ]
    s = suggest_lung_rads(findings)
    assert s.category == "4A"
    assert s.reason.startswith("#4: 9.0 mm, solid 8 to < 15 mm -> 4A")  # numbered as shown
    assert "3 nodules" in s.reason
    assert suggest_lung_rads(findings[:2]).category == "1"
