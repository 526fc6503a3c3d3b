"""Endoscopy frames: every frame gets a lesion probability, a heatmap masked to the field of
view and capped by that probability, and a region on the lesion; stage 1 flags uninformative
frames; JPEG studies score as their DCMTK-decompressed copies do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import ENDO_ID, MODELS
from peers import require_tool

from core.synthetic.endoscopy import make_endoscopy_frame, write_endoscopy_study
from core.synthetic.endoscopy_domain import make_randomised_frame
from inference.endoscopy_classifier import (
    EndoscopyClassifier,
    EndoscopyResult,
    FrameRef,
    cam_region,
)
from inference.engine import InferenceEngine
from inference.errors import InputNotApplicable
from inference.field_of_view import detect_field_of_view
from inference.manifest import load_manifest
from inference.registry import ModelRegistry
from inference.roc import roc_auc
from inference.series_input import group_series

pytestmark = pytest.mark.slow  # model runs on generated series: seconds to a minute each

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


def _check_every_frame_scored(res: EndoscopyResult, frames: list) -> None:  # type: ignore[type-arg]
    """Each frame: a probability, stage 1's verdict, a heatmap on the field-of-view grid that
    is 0 outside the field and never hotter than the frame's probability, a region inside."""
    assert len(res.frames) == len(frames)
    for a, (rgb, ref) in zip(res.frames, frames, strict=True):
        assert (a.sop_instance_uid, a.frame) == (ref.sop_instance_uid, ref.frame)
        assert 0.0 <= a.lesion_probability <= 1.0
        assert 0.0 <= a.informative_probability <= 1.0 and isinstance(a.informative, bool)
        assert a.heatmap is not None and a.region is not None
        heat = a.heatmap.probabilities
        fov = detect_field_of_view(rgb)
        assert heat.shape == fov.mask.shape
        assert float(heat.max()) <= a.lesion_probability + 1e-6
        assert float(heat.max()) == pytest.approx(a.lesion_probability, abs=1e-6)
        assert not heat[~fov.mask].any()
        r0, c0, r1, c1 = a.region
        b0, d0, b1, d1 = fov.box
        assert b0 <= r0 < r1 <= b1 and d0 <= c0 < c1 <= d1


def test_ranking_heatmap_and_region(classifier: EndoscopyClassifier) -> None:
    frames, truths = _frames(60, 970001)
    res = classifier.assess(frames)
    assert res.session.device == "CPU"
    _check_every_frame_scored(res, frames)
    # Stage 1: most uninformative frames are flagged, most informative ones kept.
    acc = np.mean([a.informative == t.informative for a, t in zip(res.frames, truths, strict=True)])
    assert acc >= 0.85
    # Every frame is scored: the AUC is over all of them, uninformative ones included.
    auc = roc_auc([a.lesion_probability for a in res.frames], [t.lesion for t in truths])
    assert auc >= AUC_FLOOR
    # Ranked highest risk first (informative frames); findings carry the frame and a region.
    probs = [a.lesion_probability for a in res.ranked]
    assert probs == sorted(probs, reverse=True)
    assert all(a.informative for a in res.ranked)
    top = res.ranked[0]
    assert truths[int(top.ref.sop_instance_uid.split("-")[1])].lesion
    assert top.heatmap is not None and top.heatmap.sop_instance_uid == top.ref.sop_instance_uid
    assert res.findings and res.findings[0].sop_instance_uid == top.ref.sop_instance_uid
    thr = classifier.manifest.candidate_threshold
    assert all(f.probability >= thr for f in res.findings)
    # The region overlaps the true lesion box on most detected lesion frames.
    overlaps = []
    for f in res.findings:
        t = truths[int(f.sop_instance_uid.split("-")[1])]
        if t.lesion and t.lesion_box and f.region:
            r0, c0, r1, c1 = f.region
            q0, d0, q1, d1 = t.lesion_box
            overlaps.append(r0 < q1 and q0 < r1 and c0 < d1 and d0 < c1)
    assert overlaps and np.mean(overlaps) >= 0.6


def test_wide_frames_with_a_round_field_are_not_flagged_at_the_border(
    classifier: EndoscopyClassifier,
) -> None:
    """576x768 frames with a round field of view (what model 1.0 flagged at p = 1.00 at the
    image border): lesion-free frames stay low, lesion frames rank above them."""
    frames, truths = [], []
    for k in range(12):
        img, t = make_randomised_frame(
            seed=424_200 + k, lesion=k % 2 == 0, informative=True, rows=576, cols=768
        )
        frames.append((img, FrameRef("es", f"w-{k}", 1, "ES")))
        truths.append(t)
    res = classifier.assess(frames)
    _check_every_frame_scored(res, frames)
    normal = [a.lesion_probability for a, t in zip(res.frames, truths, strict=True) if not t.lesion]
    assert max(normal) < 0.9 and float(np.median(normal)) < 0.2
    assert roc_auc([a.lesion_probability for a in res.frames], [t.lesion for t in truths]) >= 0.9


def test_dark_frame_is_flagged_with_reason_and_still_scored(
    classifier: EndoscopyClassifier,
) -> None:
    img, _ = make_endoscopy_frame(seed=12, lesion=False)
    dark = (img // 12).astype(np.uint8)
    res = classifier.assess([(dark, FrameRef("es", "d", 1, "ES"))])
    a = res.frames[0]
    assert not a.informative and a.reason == "dark"
    assert a.informative_probability < 0.5
    assert a.lesion_probability < 0.5  # scored, and low: there is no lesion
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


def test_jpeg_study_scores_as_its_dcmdjpeg_copy(tmp_path: Path) -> None:
    """A JPEG baseline study (DCMTK dcmcjpeg, YBR_FULL_422) and the same study decompressed
    by DCMTK dcmdjpeg give every frame the same probabilities (within 0.02): the engine
    decodes JPEG like DCMTK does (once, to RGB)."""
    dcmcjpeg, dcmdjpeg = require_tool("dcmcjpeg"), require_tool("dcmdjpeg")
    written, truths = write_endoscopy_study(
        tmp_path / "plain", seed=8, frames=8, patient_id="J", patient_name="J^J"
    )
    (tmp_path / "jpeg").mkdir()
    (tmp_path / "copy").mkdir()
    for path in written.paths:
        jpeg = tmp_path / "jpeg" / path.name
        subprocess.run([dcmcjpeg, "+eb", "+s2", "+q", "85", str(path), str(jpeg)], check=True)
        subprocess.run([dcmdjpeg, str(jpeg), str(tmp_path / "copy" / path.name)], check=True)
    results = {}
    for name in ("jpeg", "copy"):
        # One engine each: both studies share their UIDs, and the engine caches per series.
        engine = InferenceEngine(ModelRegistry(MODELS), providers=["CPUExecutionProvider"])
        (series,) = group_series([tmp_path / name])
        analysis = engine.analyze_series(series)
        engine.shutdown()
        assert analysis.endoscopy is not None
        results[name] = {(a.sop_instance_uid, a.frame): a for a in analysis.endoscopy.frames}
    assert len(results["jpeg"]) == 8 and results["jpeg"].keys() == results["copy"].keys()
    for key, a in results["jpeg"].items():
        b = results["copy"][key]
        assert abs(a.lesion_probability - b.lesion_probability) <= 0.02, key
        assert abs(a.informative_probability - b.informative_probability) <= 0.02, key
    # And the JPEG frames are analysed, not dropped for false colours: the informative
    # frames of the study are (mostly) called informative.
    informative = [t.informative for t in truths]
    called = [a.informative for a in results["jpeg"].values()]
    assert sum(c for c, t in zip(called, informative, strict=True) if t) >= sum(informative) - 1


def test_shipped_manifest_declares_operating_points_and_calibration() -> None:
    m = load_manifest(MODELS / ENDO_ID)
    assert m.version == "2.0.0"
    assert m.preprocessing["field_of_view"] == "crop-and-blank"
    names = [op.name for op in m.operating_points]
    assert names == ["sensitive", "balanced", "specific"]
    default = m.default_operating_point
    assert default.name == "balanced"
    thresholds = [op.threshold for op in m.operating_points]
    assert thresholds == sorted(thresholds)
    # Candidates reach down to the lowest point, so every point can be shown.
    assert m.candidate_threshold == pytest.approx(thresholds[0])
    sens = [op.sensitivity for op in m.operating_points]
    assert sens == sorted(sens, reverse=True)
    cal = m.decoding["calibration"]
    assert cal["temperature_lesion"] > 0 and "model.onnx" in cal["method"]
