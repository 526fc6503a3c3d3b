"""Fixtures for the AI engine tests: copies of the shipped models to break on purpose."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"
NODULE_ID = "lung-nodule-ref"
ENDO_ID = "endoscopy-lesion-ref"


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A writable copy of resources/models."""
    dst = tmp_path / "models"
    shutil.copytree(MODELS, dst)
    return dst


def edit_manifest(model_dir: Path, **changes: object) -> None:
    p = model_dir / "manifest.json"
    data = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            data.pop(k, None)
        else:
            data[k] = v
    p.write_text(json.dumps(data))
