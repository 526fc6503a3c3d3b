"""AI findings and the reader's review state: the Qt-free model behind overlays and reports."""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from core.events import Signal


class ReviewStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    MODIFIED = "modified"  # accepted with centre or size edited by the reader
    ADDED = "added"  # a finding the reader added (the AI missed it)


@dataclass(frozen=True)
class Finding:
    """One finding in patient coordinates (CT) or on one frame (endoscopy)."""

    finding_id: str
    model_id: str
    model_version: str
    series_instance_uid: str
    probability: float
    label: str = "nodule"
    center_mm: tuple[float, float, float] | None = None  # LPS, CT
    diameter_mm: float | None = None
    slice_index: int | None = None
    sop_instance_uid: str | None = None  # frame findings
    frame: int | None = None  # 1-based frame number within the instance
    region: tuple[int, int, int, int] | None = None  # (row0, col0, row1, col1) on the frame
    attributes: dict[str, Any] = field(default_factory=dict)  # e.g. {"type": "part-solid"}
    tracking_uid: str = field(default_factory=lambda: f"2.25.{uuid.uuid4().int}")
    status: ReviewStatus = ReviewStatus.PENDING
    comment: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        if self.center_mm is None and self.sop_instance_uid is None:
            raise ValueError("a finding needs center_mm (CT) or sop_instance_uid (frames)")

    def as_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "finding_id": self.finding_id,
            "model": self.model_id,
            "model_version": self.model_version,
            "series_uid": self.series_instance_uid,
            "probability": round(self.probability, 4),
            "label": self.label,
            "status": self.status.value,
            "tracking_uid": self.tracking_uid,
        }
        if self.center_mm is not None:
            x, y, z = self.center_mm
            d.update(x=round(x, 2), y=round(y, 2), z=round(z, 2))
            d["diameter_mm"] = None if self.diameter_mm is None else round(self.diameter_mm, 2)
            d["slice_index"] = self.slice_index
        if self.sop_instance_uid is not None:
            d.update(sop_instance_uid=self.sop_instance_uid, frame=self.frame)
            if self.region is not None:
                d["region"] = list(self.region)
        if self.attributes:
            d["attributes"] = dict(self.attributes)
        return d


_RANK = re.compile(r"-(\d+)$")


def finding_number(f: Finding) -> int | None:
    """The number the reader sees for a finding, the same in the list, on the marker, in
    dialogs, in `loupe review` and in reports, and never changed by another finding: an AI
    finding's rank in its model's output (the n of "model-n"); a reader-added finding's number
    given when it was added (`attributes["number"]`), after every AI candidate's."""
    given = f.attributes.get("number")
    if isinstance(given, int):
        return given
    m = _RANK.search(f.finding_id)
    return int(m.group(1)) if m is not None and f.status is not ReviewStatus.ADDED else None


def numbers(findings: list[Finding]) -> dict[str, int]:
    """finding_id -> number for each finding; findings with none (another producer's ids)
    get numbers after the largest one, in list order."""
    out = {f.finding_id: n for f in findings if (n := finding_number(f)) is not None}
    top = max(out.values(), default=0)
    for f in findings:
        if f.finding_id not in out:
            top += 1
            out[f.finding_id] = top
    return out


class FindingSet:
    """The findings of one series; emits `changed` with the finding that changed."""

    def __init__(self, findings: list[Finding] | None = None):
        self._by_id: dict[str, Finding] = {f.finding_id: f for f in findings or []}
        self.changed: Signal[Finding] = Signal()
        self.reset: Signal[FindingSet] = Signal()

    def __iter__(self) -> Iterator[Finding]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, finding_id: str) -> Finding:
        return self._by_id[finding_id]

    def replace_all(self, findings: list[Finding]) -> None:
        self._by_id = {f.finding_id: f for f in findings}
        self.reset.emit(self)

    def update(self, finding_id: str, **changes: Any) -> Finding:
        new = replace(self._by_id[finding_id], **changes)
        self._by_id[finding_id] = new
        self.changed.emit(new)
        return new

    def put(self, finding: Finding) -> Finding:
        """Set a finding as a whole (undo/redo), adding it when it is not there."""
        self._by_id[finding.finding_id] = finding
        self.changed.emit(finding)
        return finding

    def remove(self, finding_id: str) -> None:
        """Take a finding out (undoing a reader-added one)."""
        del self._by_id[finding_id]
        self.reset.emit(self)

    def add(self, finding: Finding) -> Finding:
        if finding.finding_id in self._by_id:
            raise ValueError(f"finding {finding.finding_id} already exists")
        self._by_id[finding.finding_id] = finding
        self.changed.emit(finding)
        return finding
