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
