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


def test_a_new_model_version_starts_a_new_review_and_carries_decisions_over(tmp_path):
    """The review belongs to the analysis it reviewed: the same version again keeps it; a new
    version starts a new one (the old kept as superseded) with each decision carried over to
    the new finding at the same place, and reader-added findings kept."""
    store = ReviewStore(tmp_path / "review.sqlite")
    session = ReviewSession(store, FindingSet(), "1.2.3", "dr.a")
    session.start(ai_findings())
    session.accept("F0")
    session.reject("F1")
    session.edit("F2", diameter_mm=12.0)
    added = session.add((55.0, 0.0, -140.0), 7.0)
    store.record_report("1.2.3", "ai", "9.9.1")

    # The same version analysed again: nothing changes.
    ReviewSession(store, FindingSet(), "1.2.3", "dr.a").start(ai_findings())
    assert {f.finding_id: f.status for f in store.restore("1.2.3")}["F1"] is ReviewStatus.REJECTED
    assert store.latest_report("1.2.3", "ai") == "9.9.1"

    # Version 2.0.0 finds F0's nodule 2 mm away, F1's nodule 30 mm away (another place),
    # misses F2 and F3, and finds a new one.
    def v2(n: int, centre: tuple[float, float, float]) -> Finding:
        return Finding(
            f"lung-nodule-ref-{n}",
            "lung-nodule-ref",
            "2.0.0",
            "1.2.3",
            0.8,
            center_mm=centre,
            diameter_mm=6.0,
        )

    new = [v2(1, (2.0, -20.0, -150.0)), v2(2, (40.0, -20.0, -150.0)), v2(3, (0.0, 80.0, -90.0))]
    fs = FindingSet()
    ReviewSession(store, fs, "1.2.3", "dr.b").start(new)
    got = {f.finding_id: f for f in fs}
    assert got["lung-nodule-ref-1"].status is ReviewStatus.ACCEPTED  # carried from F0
    assert got["lung-nodule-ref-2"].status is ReviewStatus.PENDING  # F1 was elsewhere
    assert got["lung-nodule-ref-3"].status is ReviewStatus.PENDING
    assert got[added.finding_id].status is ReviewStatus.ADDED
    assert not {"F0", "F1", "F2", "F3"} & set(got)
    assert [f.model_version for f in store.ai_findings("1.2.3")] == ["2.0.0"] * 3
    assert store.latest_report("1.2.3", "ai") is None  # the old version's SR is not this one's
    kinds = [kind for _, kind, _ in store.superseded("1.2.3")]
    assert kinds.count("ai_finding") == 4 and kinds.count("report") == 1
    assert kinds.count("decision") == 4  # accept, reject, edit, add
    assert {m for m, _, _ in store.superseded("1.2.3")} == {"lung-nodule-ref 1.0.0"}
    log = store.audit_log("1.2.3")
    assert any(e.action == "new review" and "2.0.0 replaces 1.0.0" in e.detail for e in log)
    assert any("carried over from F0" in e.detail for e in log)


def test_finding_numbers_never_change_when_a_finding_is_added(tmp_path):
    """Numbers are the AI's ranks; a reader-added finding gets the next free number and keeps
    it; nothing is renumbered (the list, markers, dialogs and `loupe review` share them)."""
    from core.findings import numbers

    ai = [
        Finding(
            f"lung-nodule-ref-{n}",
            "lung-nodule-ref",
            "2.0.0",
            "1.2.3",
            0.9 - n / 20,
            center_mm=(10.0 * n, 0.0, 0.0),
            diameter_mm=6.0,
        )
        for n in range(1, 9)
    ]
    store = ReviewStore(tmp_path / "r.sqlite")
    fs = FindingSet()
    session = ReviewSession(store, fs, "1.2.3", "dr.a")
    session.start(ai, show_from=0.6)  # ranks 7 and 8 (p 0.55, 0.5) hidden
    before = numbers(list(fs))
    assert before == {f"lung-nodule-ref-{n}": n for n in range(1, 7)}
    added = session.add((5.0, 5.0, 5.0), 8.0)
    after = numbers(list(fs))
    assert {k: after[k] for k in before} == before
    assert after[added.finding_id] == 9  # after every AI candidate, hidden ones included
    second = session.add((6.0, 6.0, 6.0), 8.0)
    # Restored in another process: the same numbers.
    fs2 = FindingSet()
    ReviewSession(ReviewStore(tmp_path / "r.sqlite"), fs2, "1.2.3", "dr.b").start(ai)
    again = numbers(list(fs2))
    assert again[added.finding_id] == 9 and again[second.finding_id] == 10
    assert again["lung-nodule-ref-8"] == 8


def test_undo_and_redo_every_edit_durably(tmp_path):
    """Ctrl+Z takes back any edit (a slipped ring drag, a rejection, an added finding); each
    undo and redo is a durable, audited decision, so a reopened review shows the result."""
    store = ReviewStore(tmp_path / "r.sqlite")
    fs = FindingSet()
    session = ReviewSession(store, fs, "1.2.3", "dr.a")
    session.start(ai_findings())
    session.edit("F0", diameter_mm=31.0)  # the slip: 6.0 -> 31.0
    session.reject("F1")
    added = session.add((55.0, 0.0, -140.0), 7.0)
    assert session.undo() is None  # the addition undone: the finding is gone
    assert added.finding_id not in {f.finding_id for f in fs}
    assert session.undo().status is ReviewStatus.PENDING  # F1 back to pending
    back = session.undo()
    assert back.diameter_mm == 6.0 and back.status is ReviewStatus.PENDING
    assert session.undo() is None and not session.can_undo
    redone = session.redo()
    assert redone.diameter_mm == 31.0 and redone.status is ReviewStatus.MODIFIED
    session.undo()
    session.accept("F2")  # a new edit clears what could be redone
    assert not session.can_redo

    # Reopened: exactly what the screen showed.
    restored = {f.finding_id: f for f in store.restore("1.2.3")}
    assert restored["F0"].diameter_mm == 6.0 and restored["F0"].status is ReviewStatus.PENDING
    assert restored["F1"].status is ReviewStatus.PENDING
    assert restored["F2"].status is ReviewStatus.ACCEPTED
    assert added.finding_id not in restored
    details = [e.detail for e in store.audit_log("1.2.3")]
    assert sum("(undo)" in d for d in details) == 3 and sum("(redo)" in d for d in details) == 1
    assert any(e.action == "finding removed" for e in store.audit_log("1.2.3"))


def test_snapshot_reads_the_whole_review_at_once(tmp_path):
    store = ReviewStore(tmp_path / "r.sqlite")
    session = ReviewSession(store, FindingSet(), "1.2.3", "dr.a")
    session.start(ai_findings())
    session.accept("F0")
    store.record_report("1.2.3", "ai", "9.1")
    store.set_key_image("1.2.3", "1.2.3.4", 1, True, "dr.a")
    snap = store.snapshot("1.2.3")
    assert [f.finding_id for f in snap.findings] == ["F0", "F1", "F2", "F3"]
    assert [f.status for f in snap.ai_findings] == [ReviewStatus.PENDING] * 4
    assert [f.finding_id for f in snap.pending] == ["F1", "F2", "F3"]
    assert snap.latest_reports == {"ai": "9.1"} and snap.key_images == [("1.2.3.4", 1)]
