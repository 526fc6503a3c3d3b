"""Manifest validation, sha256 check at load, broken models refused with a clear message."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import ENDO_ID, MODELS, NODULE_ID, edit_manifest

from inference.errors import ManifestError, ModelError
from inference.manifest import Task, file_sha256, load_manifest, parse_manifest
from inference.registry import ModelRegistry
from inference.runtime import ModelSession


def _raw(model_id: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MODELS / model_id / "manifest.json").read_text())
    return data


def test_shipped_manifests_are_valid_and_match_their_files() -> None:
    nod = load_manifest(MODELS / NODULE_ID)
    assert nod.task is Task.DETECTION_3D_HEATMAP
    assert nod.labels[0].code.value == "27925004"
    assert nod.pre("spacing_mm") == (2.0, 2.0, 2.0)
    assert nod.validation, "validated metrics must be recorded"
    assert file_sha256(nod.model_path) == nod.sha256
    es = load_manifest(MODELS / ENDO_ID)
    assert es.task is Task.FRAME_CLASSIFICATION_CAM
    assert es.applies_to.modalities == ("ES",)
    for m in (nod, es):
        assert m.model_path.stat().st_size < 20 * 1024 * 1024
        assert (m.directory / "MODEL_CARD.md").is_file()
    assert ModelRegistry(MODELS).verify() == [(ENDO_ID, "ok"), (NODULE_ID, "ok")]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("id",), None, "id is missing"),
        (("version",), 3, "version must be a non-empty string"),
        (("task",), "guess", "task must be one of"),
        (("task",), "segmentation-3d", "declared but not yet run"),
        (("sha256",), "abc", "sha256 must be 64 hex digits"),
        (("file",), "../x.onnx", "file must be a plain file name"),
        (("applies_to", "modality"), [], "applies_to.modality must be a non-empty list"),
        (("applies_to", "slice_spacing_mm"), [3.0, 1.0], "applies_to.slice_spacing_mm"),
        (("preprocessing", "spacing_mm"), [2, 2], "preprocessing.spacing_mm must be a list of 3"),
        (("preprocessing", "overlap"), 1.5, "preprocessing.overlap must be in [0, 1)"),
        (
            ("preprocessing", "window_hu"),
            [400, -1000],
            "preprocessing.window_hu must be [low, high]",
        ),
        (("decoding", "nms_radius_mm"), None, "decoding.nms_radius_mm is missing"),
        (("decoding", "max_findings"), 0, "decoding.max_findings must be a positive integer"),
        (("inputs",), [{"name": "x", "shape": [1, -1], "dtype": "float32"}], "inputs[0].shape"),
        (("inputs",), [{"name": "x", "shape": [1], "dtype": "double"}], "inputs[0].dtype"),
        (
            ("labels",),
            [{"name": "n", "code": {"scheme": "SCT"}}],
            "labels[0].code.value is missing",
        ),
        (("validation",), [{"metric": "CPM", "value": "high", "data": "x"}], "validation[0].value"),
        (("providers",), ["ROCMExecutionProvider"], "unknown provider 'ROCMExecutionProvider'"),
    ],
)
def test_invalid_fields_are_named(path: tuple[str, ...], value: Any, message: str) -> None:
    data = copy.deepcopy(_raw(NODULE_ID))
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(ManifestError) as exc:
        parse_manifest(data, MODELS / NODULE_ID)
    assert message in str(exc.value)


def test_not_json_is_refused(models_copy: Path) -> None:
    (models_copy / NODULE_ID / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(models_copy / NODULE_ID)
    # The registry lists the broken model with its reason and keeps the other one.
    entries = {e.directory.name: e for e in ModelRegistry(models_copy).entries()}
    assert entries[NODULE_ID].manifest is None and "not valid JSON" in entries[NODULE_ID].error
    assert entries[ENDO_ID].manifest is not None


def test_sha256_mismatch_refuses_the_model(models_copy: Path) -> None:
    d = models_copy / NODULE_ID
    with open(d / "model.onnx", "ab") as f:
        f.write(b"\0")
    m = load_manifest(d)
    with pytest.raises(ManifestError) as exc:
        ModelSession(m)
    msg = str(exc.value)
    assert "sha256" in msg and "refused" in msg and NODULE_ID in msg
    status = dict(ModelRegistry(models_copy).verify())
    assert "sha256" in status[NODULE_ID] and status[ENDO_ID] == "ok"


def test_missing_model_file_is_refused(models_copy: Path) -> None:
    (models_copy / ENDO_ID / "model.onnx").unlink()
    with pytest.raises(ManifestError, match="is missing"):
        ModelSession(load_manifest(models_copy / ENDO_ID))


def test_broken_graph_with_matching_sha_is_refused(models_copy: Path) -> None:
    d = models_copy / ENDO_ID
    (d / "model.onnx").write_bytes(b"this is not an onnx graph")
    edit_manifest(d, sha256=file_sha256(d / "model.onnx"))
    with pytest.raises(ModelError, match=r"ONNX Runtime cannot load model\.onnx"):
        ModelSession(load_manifest(d))


def test_manifest_shape_must_match_graph(models_copy: Path) -> None:
    d = models_copy / ENDO_ID
    raw = json.loads((d / "manifest.json").read_text())
    raw["inputs"][0]["shape"] = [1, 3, 128, 128]
    (d / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match=r"input 'frame' has shape \(8, 3, 128, 128\)"):
        ModelSession(load_manifest(d))
