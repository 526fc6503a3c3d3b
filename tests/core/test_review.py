"""Review decisions: applied to the findings, durable, restored, audited."""

from __future__ import annotations

import pytest

from core.findings import Finding, FindingSet, ReviewStatus
from core.review import ReviewSession, ReviewStore


def ai_findings() -> list[Finding]:
    return [
        Finding(
            f"F{n}",
            "lung-nodule-ref",
            "1.0.0",
            "1.2.3",
            0.9 - n / 10,
            center_mm=(10.0 * n, -20.0, -150.0),
            diameter_mm=6.0 + n,
            slice_index=40 + n,
        )
        for n in range(4)
    ]


def test_decisions_apply_and_survive_a_new_store(tmp_path):
    store = ReviewStore(tmp_path / "review.sqlite")
    fs = FindingSet()
    session = ReviewSession(store, fs, "1.2.3", "dr.a")
    session.start(ai_findings())
    session.accept("F0")
    session.reject("F1")
    session.edit("F2", center_mm=(21.0, -19.0, -151.0), diameter_mm=11.5)
    session.comment("F2", "  lobulated margin ")
    added = session.add((55.0, 0.0, -140.0), 7.0, slice_index=50)
    assert fs.get("F0").status is ReviewStatus.ACCEPTED
    assert fs.get("F2").status is ReviewStatus.MODIFIED and fs.get("F2").diameter_mm == 11.5
    assert [f.finding_id for f in session.pending()] == ["F3"]

    # Another process, later: the same review comes back.
    fs2 = FindingSet()
    ReviewSession(ReviewStore(tmp_path / "review.sqlite"), fs2, "1.2.3", "dr.b").start(
        ai_findings()
    )
    got = {f.finding_id: f for f in fs2}
    assert got["F0"].status is ReviewStatus.ACCEPTED
    assert got["F1"].status is ReviewStatus.REJECTED
    assert got["F2"].center_mm == (21.0, -19.0, -151.0) and got["F2"].comment == "lobulated margin"
    assert got["F3"].status is ReviewStatus.PENDING
    assert got[added.finding_id].status is ReviewStatus.ADDED
    assert got[added.finding_id].model_id == "reader"
    log = store.audit_log("1.2.3")
    assert [e.action for e in log][:2] == ["finding accepted", "finding rejected"]
    assert all(e.user == "dr.a" for e in log)


def test_accepting_a_modified_finding_keeps_modified_and_bad_edit_is_refused(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    session = ReviewSession(store, FindingSet(), "1.2.3", "dr.a")
    session.start(ai_findings())
    session.edit("F1", diameter_mm=9.0)
    assert session.accept("F1").status is ReviewStatus.MODIFIED
    with pytest.raises(ValueError, match="diameter"):
        session.edit("F1", diameter_mm=0.0)
    assert store.decision_count("1.2.3") == 2


def test_tracking_uids_are_kept_through_the_review(tmp_path):
    findings = ai_findings()
    store = ReviewStore(tmp_path / "r.sqlite")
    fs = FindingSet()
    session = ReviewSession(store, fs, "1.2.3", "dr.a")
    session.start(findings)
    session.reject("F0")
    fs2 = FindingSet()
    ReviewSession(store, fs2, "1.2.3", "dr.a").start(findings)
    assert fs2.get("F0").tracking_uid == findings[0].tracking_uid
