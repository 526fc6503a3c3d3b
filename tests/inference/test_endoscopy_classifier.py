"""Endoscopy frames: stage 1 drops uninformative frames, stage 2 ranks lesion frames first
with a CAM heatmap and a region on the lesion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ENDO_ID, MODELS

from core.synthetic.endoscopy import make_endoscopy_frame
from inference.endoscopy_classifier import EndoscopyClassifier, FrameRef, cam_region
from inference.errors import InputNotApplicable
from inference.manifest import load_manifest
from inference.roc import roc_auc

AUC_FLOOR = 0.9


@pytest.fixture(scope="module")
def classifier() -> EndoscopyClassifier:
    return EndoscopyClassifier(load_manifest(MODELS / ENDO_ID), ["CPUExecutionProvider"])


def _frames(n: int, seed0: int) -> tuple[list, list]:  # type: ignore[type-arg]
    rng = np.random.default_rng(seed0)
    frames, truths = [], []
    for k in range(n):
        lesion = bool(k % 3 == 0)
        informative = bool(k % 5 != 4)
        img, t = make_endoscopy_frame(
            seed=int(rng.integers(2**31)),
            rows=240,
            cols=240,
            lesion=lesion,
            informative=informative,
        )
        frames.append((img, FrameRef("es", f"sop-{k}", 1, "ES")))
        truths.append(t)
    return frames, truths


def test_ranking_heatmap_and_region(classifier: EndoscopyClassifier) -> None:
    frames, truths = _frames(60, 970001)
    res = classifier.assess(frames)
    assert res.session.device == "CPU"
    assert len(res.frames) == 60
    # Stage 1: most uninformative frames are dropped, most informative ones kept.
    acc = np.mean([a.informative == t.informative for a, t in zip(res.frames, truths, strict=True)])
    assert acc >= 0.85
    kept = [(a, t) for a, t in zip(res.frames, truths, strict=True) if a.informative]
    auc = roc_auc([a.lesion_probability for a, _ in kept], [t.lesion for _, t in kept])
    assert auc >= AUC_FLOOR
    # Ranked highest risk first; findings carry the frame's instance and a region.
    probs = [a.lesion_probability for a in res.ranked]
    assert probs == sorted(probs, reverse=True)
    top = res.ranked[0]
    truth_top = truths[int(top.ref.sop_instance_uid.split("-")[1])]
    assert truth_top.lesion
    assert top.heatmap is not None and top.heatmap.probabilities.shape == (16, 16)
    assert top.heatmap.sop_instance_uid == top.ref.sop_instance_uid
    assert res.findings and res.findings[0].sop_instance_uid == top.ref.sop_instance_uid
    # The CAM region overlaps the true lesion box on most detected lesion frames.
    overlaps = []
    for f in res.findings:
        t = truths[int(f.sop_instance_uid.split("-")[1])]
        if t.lesion and t.lesion_box and f.region:
            r0, c0, r1, c1 = f.region
            q0, d0, q1, d1 = t.lesion_box
            overlaps.append(r0 < q1 and q0 < r1 and c0 < d1 and d0 < c1)
    assert overlaps and np.mean(overlaps) >= 0.6


def test_dark_frame_is_dropped_with_reason(classifier: EndoscopyClassifier) -> None:
    img, _ = make_endoscopy_frame(seed=12, lesion=False)
    dark = (img // 12).astype(np.uint8)
    res = classifier.assess([(dark, FrameRef("es", "d", 1, "ES"))])
    a = res.frames[0]
    assert not a.informative and a.lesion_probability is None and a.reason == "dark"
    assert res.ranked == [] and res.findings == []


def test_refuses_what_it_does_not_apply_to(classifier: EndoscopyClassifier) -> None:
    img, _ = make_endoscopy_frame(seed=1, rows=64, cols=64, lesion=False)
    with pytest.raises(InputNotApplicable, match="applies to ES images; instance x is CT"):
        classifier.assess([(img, FrameRef("s", "x", 1, "CT"))])
    with pytest.raises(InputNotApplicable, match="expected an RGB frame"):
        classifier.assess([(img[..., 0], FrameRef("s", "x", 1, "ES"))])


def test_cam_region_is_the_component_around_the_maximum() -> None:
    cam = np.zeros((10, 10), dtype=np.float32)
    cam[2:4, 5:8] = 0.8
    cam[3, 6] = 1.0
    cam[8, 0] = 0.9  # a separate blob is not part of the region
    assert cam_region(cam, 0.5) == (2, 5, 4, 8)
