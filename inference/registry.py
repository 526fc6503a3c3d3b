"""The installed models: `resources/models/<id>/` folders with manifest.json, model.onnx and
MODEL_CARD.md. A broken folder is listed with its error, never fatal for the others."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from inference.errors import ManifestError, ModelError
from inference.manifest import MANIFEST_NAME, Manifest, load_manifest, verify_model_file

DEFAULT_MODELS_DIR = Path(__file__).resolve().parents[1] / "resources" / "models"


def models_dir() -> Path:
    """`LOUPE_MODELS_DIR` when set, else the models shipped with Loupe."""
    env = os.environ.get("LOUPE_MODELS_DIR")
    return Path(env) if env else DEFAULT_MODELS_DIR


@dataclass(frozen=True)
class ModelEntry:
    directory: Path
    manifest: Manifest | None
    error: str  # empty when the manifest is valid


class ModelRegistry:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else models_dir()

    def entries(self) -> list[ModelEntry]:
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            if not (d / MANIFEST_NAME).exists():
                continue
            try:
                out.append(ModelEntry(d, load_manifest(d), ""))
            except ManifestError as exc:
                out.append(ModelEntry(d, None, str(exc)))
        return out

    def manifests(self) -> list[Manifest]:
        return [e.manifest for e in self.entries() if e.manifest is not None]

    def get(self, model_id: str) -> Manifest:
        for e in self.entries():
            if e.manifest is not None and e.manifest.id == model_id:
                return e.manifest
            if e.manifest is None and e.directory.name == model_id:
                raise ModelError(e.error)
        known = ", ".join(m.id for m in self.manifests()) or "none"
        raise ModelError(f"no model {model_id!r} in {self.root} (installed: {known})")

    def for_modality(self, modality: str) -> Manifest:
        """The first valid model (by id) that applies to the modality."""
        for m in self.manifests():
            if modality.upper() in m.applies_to.modalities:
                return m
        raise ModelError(f"no installed model applies to {modality} series (in {self.root})")

    def verify(self, ids: Sequence[str] = ()) -> list[tuple[str, str]]:
        """(id or folder, "ok" or the reason it is refused) for every model."""
        out: list[tuple[str, str]] = []
        for e in self.entries():
            name = e.manifest.id if e.manifest else e.directory.name
            if ids and name not in ids:
                continue
            if e.manifest is None:
                out.append((name, e.error))
                continue
            try:
                verify_model_file(e.manifest)
            except ModelError as exc:
                out.append((name, str(exc)))
                continue
            out.append((name, "ok"))
        return out
