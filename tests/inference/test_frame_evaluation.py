"""Frame evaluation against a site's labels: the CSV reader's errors name file and line; AUC,
sensitivity and specificity over every frame; operating points from labelled frames."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.endoscopy_classifier import EndoscopyResult, FrameAssessment, FrameRef
from inference.frame_evaluation import (
    LabelFileError,
    evaluate_frames,
    frame_operating_points,
    operating_points_from_scores,
    read_frame_labels,
)
from inference.manifest import OperatingPoint
from inference.runtime import SessionInfo

# (SOP Instance UID, frame, lesion probability, informative) of a made-up result.
FRAMES = [
    ("1.2.3.1", 1, 0.95, True),
    ("1.2.3.1", 2, 0.80, True),
    ("1.2.3.2", 1, 0.40, False),  # a lesion frame stage 1 calls uninformative
    ("1.2.3.3", 1, 0.60, True),
    ("1.2.3.4", 1, 0.10, True),
    ("1.2.3.5", 1, 0.05, False),
    ("1.2.3.6", 1, 0.30, True),  # not labelled
]
LABELS = {
    ("1.2.3.1", 1): True,
    ("1.2.3.1", 2): True,
    ("1.2.3.2", 1): True,
    ("1.2.3.3", 1): False,
    ("1.2.3.4", 1): False,
    ("1.2.3.5", 1): False,
    ("1.2.3.9", 1): False,  # labelled but not in the result
}


def _result() -> EndoscopyResult:
    frames = [
        FrameAssessment(FrameRef("s", uid, n), inf, 0.9 if inf else 0.1, p, None, None)
        for uid, n, p, inf in FRAMES
    ]
    session = SessionInfo("m", "1", ("CPUExecutionProvider",), ("CPUExecutionProvider",))
    return EndoscopyResult(frames, [], [], session)


def test_evaluate_frames_scores_every_labelled_frame() -> None:
    op = OperatingPoint("balanced", 0.5, 0.9, specificity=0.9, default=True)
    ev = evaluate_frames(LABELS, _result(), op)
    assert ev["frames_scored"] == 6 and ev["frames_unlabelled"] == 1
    assert ev["labelled_frames_missing"] == [("1.2.3.9", 1)]
    assert (ev["positives"], ev["negatives"]) == (3, 3)
    # Positives 0.95, 0.80, 0.40 against negatives 0.60, 0.10, 0.05: 8 of 9 pairs ordered.
    assert ev["auc"] == pytest.approx(8 / 9)
    assert ev["operating_point"] == "balanced" and ev["threshold"] == 0.5
    assert ev["sensitivity"] == pytest.approx(2 / 3) and ev["specificity"] == pytest.approx(2 / 3)
    assert (ev["true_positives"], ev["false_positives"]) == (2, 1)
    assert (ev["true_negatives"], ev["false_negatives"]) == (2, 1)
    assert ev["lesion_frames_called_uninformative"] == 1
    # A bare threshold works too, and moves sensitivity and specificity.
    low = evaluate_frames(LABELS, _result(), 0.3)
    assert low["operating_point"] == "threshold"
    assert low["sensitivity"] == 1.0 and low["specificity"] == pytest.approx(2 / 3)


def test_operating_points_from_labelled_frames() -> None:
    ops = frame_operating_points(LABELS, _result(), data="site X, 6 frames")
    by = {op.name: op for op in ops}
    assert [op.name for op in ops] == ["sensitive", "balanced", "specific"]
    assert [op.default for op in ops] == [False, True, False]
    # Sensitive: highest threshold keeping every lesion frame (0.40 is the lowest positive).
    assert 0.1 < by["sensitive"].threshold <= 0.4 and by["sensitive"].sensitivity == 1.0
    # Specific: lowest threshold with no false positive (0.60 is the highest negative).
    assert 0.6 < by["specific"].threshold <= 0.8 and by["specific"].specificity == 1.0
    assert by["specific"].sensitivity == pytest.approx(2 / 3)
    assert all(op.data == "site X, 6 frames" for op in ops)
    # The rates are those at the stored (rounded) threshold.
    again = evaluate_frames(LABELS, _result(), by["balanced"])
    assert again["sensitivity"] == pytest.approx(by["balanced"].sensitivity)
    assert again["specificity"] == pytest.approx(by["balanced"].specificity)
    with pytest.raises(ValueError, match="lesion and lesion-free"):
        operating_points_from_scores([0.1, 0.2], [True, True], data="x")


def test_read_frame_labels(tmp_path: Path) -> None:
    p = tmp_path / "labels.csv"
    p.write_text(
        "\ufeffsop_instance_uid,frame,lesion\n1.2.3.1,1,1\n1.2.3.1,2,yes\n\n1.2.3.2,1,No\n"
        "1.2.3.3,1,0\n",
        encoding="utf-8",
    )
    assert read_frame_labels(p) == {
        ("1.2.3.1", 1): True,
        ("1.2.3.1", 2): True,
        ("1.2.3.2", 1): False,
        ("1.2.3.3", 1): False,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("uid,frame,lesion\n", r"labels\.csv line 1: header must name .* missing sop_instance_uid"),
        ("sop_instance_uid,frame,lesion\n1.2,1,maybe\n", r"labels\.csv line 2: lesion .*'maybe'"),
        ("sop_instance_uid,frame,lesion\n1.2,1,1\n1.2,0,1\n", r"labels\.csv line 3: frame .*'0'"),
        ("sop_instance_uid,frame,lesion\n1.2,x,1\n", r"labels\.csv line 2: frame .*'x'"),
        (
            "sop_instance_uid,frame,lesion\n1.2,1,1\n1.3,1,0\n1.2,1,0\n",
            r"labels\.csv line 4: frame 1 of 1\.2 is already labelled on line 2",
        ),
        ("sop_instance_uid,frame,lesion\n1.2,1\n", r"labels\.csv line 2: 2 value\(s\)"),
        ("sop_instance_uid,frame,lesion\n", r"labels\.csv: no labelled frames"),
        ("", r"labels\.csv: empty"),
    ],
)
def test_label_file_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "labels.csv"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(LabelFileError, match=message):
        read_frame_labels(p)
    with pytest.raises(LabelFileError, match=r"missing\.csv: cannot be read"):
        read_frame_labels(tmp_path / "missing.csv")
