"""Lung-RADS v2022 category suggested from the reader's nodules (baseline screening only).

Simplifications, on purpose: baseline rules only (no prior, no growth, no new nodules, no
category 0, no 4X: additional suspicious features are the reader's call); sizes are the
finding's mean diameter in mm as given; a part-solid nodule's solid component is
`attributes["solid_component_mm"]` when present, otherwise its whole diameter (an upper
bound, so the suggestion never falls below the true category); a nodule without a known
type counts as solid. Only ACCEPTED, MODIFIED and ADDED CT findings count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core.findings import Finding, ReviewStatus, numbers

__all__ = ["CATEGORIES", "LungRadsSuggestion", "nodule_category", "suggest_lung_rads"]

CATEGORIES: tuple[str, ...] = ("0", "1", "2", "3", "4A", "4B", "4X")
_COUNTED = (ReviewStatus.ACCEPTED, ReviewStatus.MODIFIED, ReviewStatus.ADDED)


@dataclass(frozen=True)
class LungRadsSuggestion:
    category: str  # one of CATEGORIES
    reason: str


def _solid(d: float) -> tuple[str, str]:
    if d < 6:
        return "2", "solid < 6 mm"
    if d < 8:
        return "3", "solid 6 to < 8 mm"
    if d < 15:
        return "4A", "solid 8 to < 15 mm"
    return "4B", "solid >= 15 mm"


def _part_solid(d: float, solid: float | None) -> tuple[str, str]:
    if d < 6:
        return "2", "part-solid < 6 mm"
    s = d if solid is None else solid
    src = "solid component unknown, taken as the whole" if solid is None else "solid component"
    if s < 6:
        return "3", f"part-solid >= 6 mm, {src} {s:.1f} mm < 6 mm"
    if s < 8:
        return "4A", f"part-solid, {src} {s:.1f} mm (6 to < 8 mm)"
    return "4B", f"part-solid, {src} {s:.1f} mm (>= 8 mm)"


def _ground_glass(d: float) -> tuple[str, str]:
    if d < 30:
        return "2", "ground-glass < 30 mm"
    return "3", "ground-glass >= 30 mm"


def nodule_category(f: Finding) -> tuple[str, str]:
    """(category, rule) of one nodule at baseline."""
    if f.diameter_mm is None:
        raise ValueError(f"finding {f.finding_id} has no diameter_mm")
    d = float(f.diameter_mm)
    kind = f.attributes.get("type", "solid")
    if kind == "part-solid":
        solid = f.attributes.get("solid_component_mm")
        return _part_solid(d, None if solid is None else float(solid))
    if kind == "ground-glass":
        return _ground_glass(d)
    return _solid(d)


def suggest_lung_rads(findings: Sequence[Finding]) -> LungRadsSuggestion:
    """The highest category among the counted nodules; 1 when there is none."""
    counted = [
        f
        for f in findings
        if f.status in _COUNTED and f.center_mm is not None and f.diameter_mm is not None
    ]
    if not counted:
        return LungRadsSuggestion("1", "no accepted, modified or added nodule (baseline)")
    graded = [(f, *nodule_category(f)) for f in counted]
    worst = max(graded, key=lambda g: CATEGORIES.index(g[1]))
    f, category, rule = worst
    number = numbers(list(findings))[f.finding_id]  # as the reader sees it on screen
    return LungRadsSuggestion(
        category,
        f"#{number}: {f.diameter_mm:.1f} mm, {rule} -> {category} "
        f"(highest of {len(graded)} nodule{'s' if len(graded) != 1 else ''}, baseline)",
    )
