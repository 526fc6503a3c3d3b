"""Analyses kept on disk, per (series, model id, model version), so that a series a model
version already analysed is never analysed again: reopening a study shows its findings and
heatmaps at once, and a study pre-read on arrival is ready before the reader opens it.

Layout: ROOT/<series UID>/<model id>-<model version>.json (the commit marker, written last)
and .npz beside it (the CT probability volume as float16 and the endoscopy frame heatmaps).
Each write goes to a temporary file, is flushed to disk, then renamed: a crash leaves the
old result or none, never half of one. A stored result is used only when it was made from the
same input (`input_key`: the CT grid's shape and affine, or the frames' instance UIDs and
frame numbers): a series that has grown since is analysed again.

Written by hand: no library keeps ONNX results keyed by DICOM series; numpy's npz and JSON
are enough.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from core.findings import Finding
from core.heatmap import FrameHeatmap, ProbabilityVolume
from core.review import finding_from_json, finding_to_json
from inference.endoscopy_classifier import EndoscopyResult, FrameAssessment, FrameRef
from inference.manifest import Manifest
from inference.runtime import SessionInfo

log = logging.getLogger(__name__)

FORMAT = 1
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def volume_input_key(shape: Sequence[int], affine: np.ndarray) -> str:
    """What a CT result was made from: the grid (a series with more slices is another input)."""
    text = json.dumps([list(map(int, shape)), np.round(np.asarray(affine), 4).tolist()])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def frames_input_key(refs: Sequence[FrameRef]) -> str:
    text = "\n".join(f"{r.sop_instance_uid}:{r.frame}" for r in refs)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class ResultStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def _base(self, series_uid: str, model_id: str, version: str) -> Path:
        return self.root / _SAFE.sub("_", series_uid) / _SAFE.sub("_", f"{model_id}-{version}")

    def has(self, series_uid: str, model: Manifest) -> bool:
        return self._base(series_uid, model.id, model.version).with_suffix(".json").exists()

    def save(self, a: Any, input_key: str) -> None:
        """Keep an engine Analysis (inference.engine.Analysis)."""
        base = self._base(a.series_instance_uid, a.model.id, a.model.version)
        base.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {
            "format": FORMAT,
            "series_instance_uid": a.series_instance_uid,
            "model": a.model.id,
            "model_version": a.model.version,
            "input_key": input_key,
            "computed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "session": {
                "requested": list(a.session.requested),
                "providers": list(a.session.providers),
            },
            "candidates": [json.loads(finding_to_json(f)) for f in a.candidates],
            "warnings": list(a.warnings),
            "capped": bool(a.capped),
        }
        pv = a.probability_volume
        if pv is not None:
            arrays["probabilities"] = pv.probabilities.astype(np.float16)
            arrays["affine"] = np.asarray(pv.affine, dtype=np.float64)
        if a.endoscopy is not None:
            frames = []
            for n, fa in enumerate(a.endoscopy.frames):
                if fa.heatmap is not None:
                    arrays[f"hm{n}"] = fa.heatmap.probabilities.astype(np.float16)
                frames.append(
                    {
                        "sop_instance_uid": fa.ref.sop_instance_uid,
                        "frame": fa.ref.frame,
                        "modality": fa.ref.modality,
                        "informative": fa.informative,
                        "informative_probability": fa.informative_probability,
                        "lesion_probability": fa.lesion_probability,
                        "region": None if fa.region is None else list(fa.region),
                        "reason": fa.reason,
                        "heatmap": fa.heatmap is not None,
                    }
                )
            meta["frames"] = frames
        _write_atomic(base.with_suffix(".npz"), lambda fh: np.savez(fh, **arrays))  # type: ignore[arg-type]
        _write_atomic(base.with_suffix(".json"), lambda fh: fh.write(json.dumps(meta).encode()))

    def load(self, series_uid: str, model: Manifest, input_key: str) -> Any | None:
        """The stored Analysis of this series by this model version from this input, or None
        (none stored, another input, unreadable: the caller analyses again)."""
        from inference.engine import Analysis

        base = self._base(series_uid, model.id, model.version)
        try:
            meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("input_key") != input_key:
                return None
            with np.load(base.with_suffix(".npz")) as z:
                arrays = {k: z[k] for k in z.files}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("stored analysis %s unreadable (%s): analysing again", base.name, exc)
            return None
        candidates: list[Finding] = [finding_from_json(json.dumps(d)) for d in meta["candidates"]]
        session = SessionInfo(
            model.id,
            model.version,
            tuple(meta["session"]["requested"]),
            tuple(meta["session"]["providers"]),
        )
        warnings = (*meta["warnings"], f"stored result of {meta['computed_at']} (not run again)")
        pv = None
        if "probabilities" in arrays:
            pv = ProbabilityVolume(
                arrays["probabilities"].astype(np.float32),
                arrays["affine"],
                series_uid,
                model.id,
                model.version,
            )
        endoscopy = None
        heatmaps: tuple[FrameHeatmap, ...] = ()
        if "frames" in meta:
            frames = []
            for n, d in enumerate(meta["frames"]):
                ref = FrameRef(series_uid, d["sop_instance_uid"], d["frame"], d["modality"])
                hm = None
                if d["heatmap"]:
                    hm = FrameHeatmap(
                        arrays[f"hm{n}"].astype(np.float32),
                        d["sop_instance_uid"],
                        d["frame"],
                        model.id,
                        model.version,
                    )
                frames.append(
                    FrameAssessment(
                        ref,
                        d["informative"],
                        d["informative_probability"],
                        d["lesion_probability"],
                        hm,
                        None if d["region"] is None else tuple(d["region"]),
                        d["reason"],
                    )
                )
            ranked = sorted(
                (f for f in frames if f.informative), key=lambda f: -f.lesion_probability
            )
            endoscopy = EndoscopyResult(frames, ranked, candidates, session)
            heatmaps = tuple(f.heatmap for f in ranked if f.heatmap is not None)
        return Analysis(
            series_uid,
            model,
            session,
            candidates,
            probability_volume=pv,
            frame_heatmaps=heatmaps,
            endoscopy=endoscopy,
            warnings=tuple(warnings),
            capped=bool(meta["capped"]),
        )


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself is on disk
    finally:
        os.close(dir_fd)
