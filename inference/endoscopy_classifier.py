"""Endoscopy frames in two stages: stage 1 drops uninformative frames (blurred, dark, not
oesophagus); stage 2 gives each informative frame a lesion probability, a class activation
map (from the exported feature map and classifier weights, no gradients) and a region.
Frames are ranked by risk."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.findings import Finding
from core.heatmap import FrameHeatmap
from inference.errors import Cancelled, InputNotApplicable, ModelError
from inference.frame_preprocess import resize_map, to_model_input
from inference.manifest import Manifest, Task
from inference.runtime import SESSIONS, ModelSession, SessionInfo

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class FrameRef:
    """Where a frame comes from: one instance (and 1-based frame number) of a series."""

    series_instance_uid: str
    sop_instance_uid: str
    frame: int = 1
    modality: str = "ES"


@dataclass(frozen=True, eq=False)
class FrameAssessment:
    ref: FrameRef
    informative: bool
    informative_probability: float
    lesion_probability: float | None  # None when stage 1 dropped the frame
    heatmap: FrameHeatmap | None
    region: tuple[int, int, int, int] | None  # (row0, col0, row1, col1) on the frame, exclusive
    reason: str = ""  # why stage 1 dropped it


@dataclass(frozen=True, eq=False)
class EndoscopyResult:
    frames: list[FrameAssessment]  # input order
    ranked: list[FrameAssessment]  # informative frames, highest lesion probability first
    findings: list[Finding]  # frames at or above the lesion threshold, ranked
    session: SessionInfo
    timings_s: dict[str, float] = field(default_factory=dict)


def cam_region(cam: F32, fraction: float) -> tuple[int, int, int, int] | None:
    """Bounding box (exclusive ends) of the CAM area >= fraction * its maximum, around the
    maximum (the 4-connected component that holds it)."""
    if cam.size == 0 or float(cam.max()) <= 0.0:
        return None
    mask = cam >= fraction * float(cam.max())
    r0, c0 = np.unravel_index(int(np.argmax(cam)), cam.shape)
    seen = np.zeros_like(mask)
    stack = [(int(r0), int(c0))]
    seen[r0, c0] = True
    rows, cols = [], []
    while stack:
        r, c = stack.pop()
        rows.append(r)
        cols.append(c)
        for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            rr, cc = r + dr, c + dc
            if (
                0 <= rr < mask.shape[0]
                and 0 <= cc < mask.shape[1]
                and mask[rr, cc]
                and not seen[rr, cc]
            ):
                seen[rr, cc] = True
                stack.append((rr, cc))
    return min(rows), min(cols), max(rows) + 1, max(cols) + 1


class EndoscopyClassifier:
    """Runs a `frame-classification-cam` model on RGB frames."""

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None) -> None:
        if manifest.task is not Task.FRAME_CLASSIFICATION_CAM:
            raise ModelError(f"model {manifest.id} is a {manifest.task.value} model, not frames")
        self.manifest = manifest
        self.session: ModelSession = SESSIONS.get(manifest, providers)
        self.size = int(manifest.pre("input_size")[0])
        self.batch = int(manifest.pre("batch"))
        self.mean = float(manifest.pre("mean"))
        self.std = float(manifest.pre("std"))
        spec = manifest.inputs[0]
        if spec.shape != (self.batch, 3, self.size, self.size):
            raise ModelError(
                f"model {manifest.id}: inputs[0].shape {spec.shape} does not match "
                f"preprocessing batch {self.batch} and input_size {self.size}"
            )
        self.input_name = spec.name

    def _check(self, rgb: U8, ref: FrameRef) -> None:
        mods = self.manifest.applies_to.modalities
        if ref.modality.upper() not in mods:
            raise InputNotApplicable(
                f"model {self.manifest.id} applies to {'/'.join(mods)} images; "
                f"instance {ref.sop_instance_uid} is {ref.modality or 'of unknown modality'}"
            )
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputNotApplicable(
                f"instance {ref.sop_instance_uid}: expected an RGB frame, got shape {rgb.shape}"
            )
        if min(rgb.shape[:2]) < 32:
            raise InputNotApplicable(
                f"instance {ref.sop_instance_uid}: frame {rgb.shape[0]}x{rgb.shape[1]} is too small"
            )

    def assess(
        self,
        frames: Sequence[tuple[U8, FrameRef]],
        *,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> EndoscopyResult:
        m = self.manifest
        inf_thr = float(m.dec("informative_threshold"))
        les_thr = float(m.dec("lesion_threshold"))
        frac = float(m.dec("region_fraction"))
        t0 = time.perf_counter()
        for rgb, ref in frames:
            self._check(rgb, ref)
        out: list[FrameAssessment] = []
        n = len(frames)
        for start in range(0, n, self.batch):
            if cancel is not None and cancel():
                raise Cancelled("cancelled")
            chunk = frames[start : start + self.batch]
            x = np.zeros((self.batch, 3, self.size, self.size), dtype=np.float32)
            for b, (rgb, _) in enumerate(chunk):
                x[b] = to_model_input(rgb, self.size, self.mean, self.std)
            y = self.session.run({self.input_name: x})
            p_inf = y["informative_probability"][:, 0]
            p_les = y["lesion_probability"][:, 0]
            feats = y["features"]
            w = y["cam_weights"].reshape(-1)
            bias = float(y["cam_bias"].reshape(-1)[0])
            for b, (rgb, ref) in enumerate(chunk):
                informative = bool(p_inf[b] >= inf_thr)
                if not informative:
                    out.append(
                        FrameAssessment(ref, False, float(p_inf[b]), None, None, None, _reason(rgb))
                    )
                    continue
                # CAM: the classifier applied at each position of the last feature map; its
                # spatial mean is the frame's lesion logit (global average pooling is linear).
                logits = np.tensordot(w, feats[b], axes=(0, 0)) + bias
                cam = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
                region = _frame_region(cam, frac, rgb.shape[0], rgb.shape[1])
                hm = FrameHeatmap(
                    probabilities=cam,
                    sop_instance_uid=ref.sop_instance_uid,
                    frame=ref.frame,
                    model_id=m.id,
                    model_version=m.version,
                )
                out.append(FrameAssessment(ref, True, float(p_inf[b]), float(p_les[b]), hm, region))
            if progress is not None:
                done = min(n, start + self.batch)
                progress(done / max(n, 1), f"frame {done}/{n}")
        ranked = sorted(
            (a for a in out if a.informative), key=lambda a: -(a.lesion_probability or 0.0)
        )
        findings = [
            Finding(
                finding_id=f"{m.id}-{k + 1}",
                model_id=m.id,
                model_version=m.version,
                series_instance_uid=a.ref.series_instance_uid,
                probability=float(np.clip(a.lesion_probability or 0.0, 0.0, 1.0)),
                label=m.labels[0].name,
                sop_instance_uid=a.ref.sop_instance_uid,
                frame=a.ref.frame,
                region=a.region,
                attributes={"rank": k + 1},
            )
            for k, a in enumerate(ranked)
            if (a.lesion_probability or 0.0) >= les_thr
        ]
        return EndoscopyResult(
            out, ranked, findings, self.session.info, {"total": time.perf_counter() - t0}
        )


_REGION_GRID = 64  # the CAM is smoothed onto 64x64 before the region is traced


def _frame_region(
    cam: F32, fraction: float, rows: int, cols: int
) -> tuple[int, int, int, int] | None:
    """CAM region in frame pixels (exclusive ends)."""
    box = cam_region(resize_map(cam, _REGION_GRID, _REGION_GRID), fraction)
    if box is None:
        return None
    r0, c0, r1, c1 = box
    sr, sc = rows / _REGION_GRID, cols / _REGION_GRID
    return int(r0 * sr), int(c0 * sc), min(rows, round(r1 * sr)), min(cols, round(c1 * sc))


def _reason(rgb: U8) -> str:
    """A human hint for a dropped frame (the model decides; this only explains)."""
    g = rgb.astype(np.float32).mean(axis=2)
    if float(g.mean()) < 30.0:
        return "dark"
    lap = g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    if float(lap.var()) < 20.0:
        return "blurred"
    return "uninformative (bubbles, fluid or not oesophagus)"
