"""The engine runs off the caller's thread, reports progress, cancels, and caches results per
(series, model id, model version)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from conftest import MODELS

from core.synthetic.endoscopy import write_endoscopy_study
from inference.engine import InferenceEngine
from inference.errors import Cancelled, InputNotApplicable
from inference.registry import ModelRegistry
from inference.series_input import group_series


@pytest.fixture(scope="module")
def es_series(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    out = tmp_path_factory.mktemp("es")
    write_endoscopy_study(out, seed=21, frames=10, patient_id="E", patient_name="E^E")
    groups = group_series([out])
    assert len(groups) == 1 and groups[0].modality == "ES"
    return groups[0]


def test_submit_progress_and_cache(es_series) -> None:  # type: ignore[no-untyped-def]
    engine = InferenceEngine(ModelRegistry(MODELS), providers=["CPUExecutionProvider"])
    threads: set[str] = set()
    fractions: list[float] = []

    def progress(f: float, _msg: str) -> None:
        threads.add(threading.current_thread().name)
        fractions.append(f)

    a = engine.submit(es_series, progress=progress).result(timeout=120)
    assert a.session.device == "CPU"
    assert len(a.endoscopy.frames) == 10  # type: ignore[union-attr]
    assert fractions[-1] == 1.0
    assert threads and all(t.startswith("loupe-inference") for t in threads)
    assert threading.current_thread().name not in threads
    # Same series, same model and version: the cached analysis comes back.
    assert engine.submit(es_series).result(timeout=60) is a
    assert engine.cached(es_series.series_instance_uid, a.model) is a
    engine.shutdown()


def test_cancel(es_series) -> None:  # type: ignore[no-untyped-def]
    engine = InferenceEngine(ModelRegistry(MODELS), providers=["CPUExecutionProvider"])
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        engine.submit(es_series, cancel=ev).result(timeout=60)
    assert engine.cached(es_series.series_instance_uid, engine.model_for("ES", None)) is None
    engine.shutdown()


def test_model_for_a_modality_it_does_not_apply_to(tmp_path: Path) -> None:
    engine = InferenceEngine(ModelRegistry(MODELS))
    with pytest.raises(InputNotApplicable, match="applies to ES series; this series is CT"):
        engine.model_for("CT", "endoscopy-lesion-ref")
    engine.shutdown()


@pytest.mark.slow
def test_stored_analyses_are_reused_and_never_stale(tmp_path: Path, es_series) -> None:  # type: ignore[no-untyped-def]
    """An analysis kept on disk comes back in a new engine (a reopened workstation) with the
    same candidates, tracking UIDs and heatmap, without running the model; a series whose
    input changed, and an unreadable stored result, are analysed again."""
    import json

    import numpy as np

    from core.synthetic.chest_ct import make_chest_ct
    from inference.result_store import ResultStore
    from inference.series_input import volume_from_phantom

    ph = make_chest_ct(
        seed=77, slices=48, rows=160, cols=160, pixel_spacing_mm=1.6, slice_spacing_mm=2.5,
        nodule_count=2, min_nodule_mm=8.0,
    )  # fmt: skip
    vol = volume_from_phantom(ph.hu, ph.spacing_mm, ph.origin_mm, "1.2.826.0.1.3680043.77")
    store = ResultStore(tmp_path / "analyses")
    first = InferenceEngine(ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store)
    a = first.analyze_volume(vol)
    assert a.candidates and a.probability_volume is not None
    assert store.has(vol.series_instance_uid, a.model)

    runs: list[float] = []
    again = InferenceEngine(ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store)
    b = again.analyze_volume(vol, progress=lambda f, _m: runs.append(f))
    assert runs == []  # the model did not run
    assert [(f.finding_id, f.tracking_uid) for f in b.candidates] == [
        (f.finding_id, f.tracking_uid) for f in a.candidates
    ]
    assert [f.probability for f in b.candidates] == [f.probability for f in a.candidates]
    assert b.probability_volume is not None
    np.testing.assert_allclose(
        b.probability_volume.probabilities, a.probability_volume.probabilities, atol=1e-3
    )
    assert b.point == a.point and b.capped == a.capped
    assert any("stored result" in w for w in b.warnings)

    # The series grew (more slices): another input, analysed again.
    grown = volume_from_phantom(ph.hu[:40], ph.spacing_mm, ph.origin_mm, vol.series_instance_uid)
    runs.clear()
    InferenceEngine(ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store).analyze_volume(
        grown, progress=lambda f, _m: runs.append(f)
    )
    assert runs, "a changed series must be analysed again"

    # A damaged stored result is not trusted.
    meta = next((tmp_path / "analyses").rglob("*.json"))
    meta.write_text("{not json", encoding="utf-8")
    runs.clear()
    c = InferenceEngine(
        ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store
    ).analyze_volume(grown, progress=lambda f, _m: runs.append(f))
    assert runs and c.candidates is not None
    json.loads(meta.read_text(encoding="utf-8"))  # and it was written anew, whole

    # Endoscopy: frames, their scores and heatmaps come back as well.
    e1 = InferenceEngine(ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store)
    ea = e1.analyze_series(es_series)
    e2 = InferenceEngine(ModelRegistry(MODELS), ["CPUExecutionProvider"], results=store)
    from inference.series_input import load_frames

    eb = e2.analyze_frames(load_frames(es_series))
    assert eb.endoscopy is not None and ea.endoscopy is not None
    assert [f.lesion_probability for f in eb.endoscopy.frames] == [
        f.lesion_probability for f in ea.endoscopy.frames
    ]
    assert [f.tracking_uid for f in eb.candidates] == [f.tracking_uid for f in ea.candidates]
    assert len(eb.frame_heatmaps) == len(ea.frame_heatmaps)
    assert any("stored result" in w for w in eb.warnings)
