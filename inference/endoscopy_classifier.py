"""Endoscopy frames in two stages, every frame scored: stage 1 says whether a frame is
informative (not blurred, dark or outside the oesophagus); stage 2 gives every frame a lesion
probability, a heatmap (class activation map from the exported feature map and classifier
weights, no gradients, masked to the endoscope's field of view) and a region. Informative
frames are ranked by risk; those at or above the lesion threshold become (candidate)
findings."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.findings import Finding
from core.heatmap import FrameHeatmap
from core.uids import tracking_uid
from inference.errors import Cancelled, InputNotApplicable, ModelError
from inference.field_of_view import FieldOfView, detect_field_of_view
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
    """What the model said about one frame. Every frame has a lesion probability, a heatmap
    and a region, the uninformative ones included: stage 1 does not gate stage 2, it only keeps
    uninformative frames out of the ranking and the findings (and says why they are dropped)."""

    ref: FrameRef
    informative: bool  # stage 1: informative_probability >= the informative threshold
    informative_probability: float
    lesion_probability: float
    heatmap: FrameHeatmap | None
    region: tuple[int, int, int, int] | None  # (row0, col0, row1, col1) on the frame, exclusive
    reason: str = ""  # why stage 1 dropped it

    @property
    def sop_instance_uid(self) -> str:
        return self.ref.sop_instance_uid

    @property
    def frame(self) -> int:
        """1-based frame number within the instance."""
        return self.ref.frame


@dataclass(frozen=True, eq=False)
class EndoscopyResult:
    frames: list[FrameAssessment]  # input order, every frame
    ranked: list[FrameAssessment]  # informative frames, highest lesion probability first
    # Candidates: informative frames at or above the manifest's lesion_threshold (its lowest
    # operating point), ranked; the engine shows those at the chosen operating point.
    findings: list[Finding]
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


FIELD_OF_VIEW_MODES = ("crop-and-blank", "none")


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
        # Models since 2.0 see the field of view cropped and its outside blanked; older ones
        # the whole frame. The heatmap is masked to the field of view either way.
        mode = str(manifest.preprocessing.get("field_of_view", "none"))
        if mode not in FIELD_OF_VIEW_MODES:
            raise ModelError(
                f"model {manifest.id}: preprocessing.field_of_view must be one of "
                f"{', '.join(FIELD_OF_VIEW_MODES)}, not {mode!r}"
            )
        self.crop_to_field = mode == "crop-and-blank"
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
            fovs: list[FieldOfView] = []
            for b, (rgb, _) in enumerate(chunk):
                fov = detect_field_of_view(rgb)
                fovs.append(fov)
                crop = fov if self.crop_to_field else None
                x[b] = to_model_input(rgb, self.size, self.mean, self.std, crop)
            y = self.session.run({self.input_name: x})
            p_inf = y["informative_probability"][:, 0]
            p_les = y["lesion_probability"][:, 0]
            feats = y["features"]
            w = y["cam_weights"].reshape(-1)
            bias = float(y["cam_bias"].reshape(-1)[0])
            for b, (rgb, ref) in enumerate(chunk):
                informative = bool(p_inf[b] >= inf_thr)
                p = float(p_les[b])
                # CAM: the lesion classifier applied at each cell of the last feature map.
                # The graph pools these cells into the frame's logit (their mean in 1.x,
                # log-sum-exp since 2.0); the heatmap shows their shape, scaled to p.
                logits = (np.tensordot(w, feats[b], axes=(0, 0)) + bias).astype(np.float32)
                heat = heatmap_on_field(logits, p, fovs[b], cropped=self.crop_to_field)
                region = _frame_region(heat, frac, fovs[b])
                hm = FrameHeatmap(
                    probabilities=heat,
                    sop_instance_uid=ref.sop_instance_uid,
                    frame=ref.frame,
                    model_id=m.id,
                    model_version=m.version,
                )
                reason = "" if informative else _reason(rgb)
                out.append(
                    FrameAssessment(ref, informative, float(p_inf[b]), p, hm, region, reason)
                )
            if progress is not None:
                done = min(n, start + self.batch)
                progress(done / max(n, 1), f"frame {done}/{n}")
        ranked = sorted((a for a in out if a.informative), key=lambda a: -a.lesion_probability)
        findings = [
            Finding(
                finding_id=f"{m.id}-{k + 1}",
                tracking_uid=tracking_uid(
                    a.ref.series_instance_uid, m.id, m.version, f"{m.id}-{k + 1}"
                ),
                model_id=m.id,
                model_version=m.version,
                series_instance_uid=a.ref.series_instance_uid,
                probability=float(np.clip(a.lesion_probability, 0.0, 1.0)),
                label=m.labels[0].name,
                sop_instance_uid=a.ref.sop_instance_uid,
                frame=a.ref.frame,
                region=a.region,
                attributes={"rank": k + 1},
            )
            for k, a in enumerate(ranked)
            if a.lesion_probability >= les_thr
        ]
        return EndoscopyResult(
            out, ranked, findings, self.session.info, {"total": time.perf_counter() - t0}
        )


def heatmap_on_field(cell_logits: F32, probability: float, fov: FieldOfView, cropped: bool) -> F32:
    """The CAM on the field of view's grid (one value per `fov.step` pixels), 0 outside the
    field, scaled to [0, probability].

    Why scaled: the CAM's cells are logits around the frame's mean; shown raw, a frame at 1 %
    risk can light up red somewhere. Min-max over the field keeps where the model looked, and
    the frame's calibrated probability caps how hot it may look.
    """
    gr, gc = fov.mask.shape
    a0, b0, a1, b1 = fov.box_cells if cropped else (0, 0, gr, gc)
    grid = resize_map(cell_logits, a1 - a0, b1 - b0)
    inside = fov.mask[a0:a1, b0:b1]
    out = np.zeros((gr, gc), dtype=np.float32)
    if not inside.any():
        return out
    vals = grid[inside]
    lo, hi = float(vals.min()), float(vals.max())
    rel = (grid - lo) / (hi - lo) if hi > lo else np.ones_like(grid)
    out[a0:a1, b0:b1] = np.where(inside, np.float32(probability) * rel, 0.0)
    return out


def _frame_region(heat: F32, fraction: float, fov: FieldOfView) -> tuple[int, int, int, int] | None:
    """Region of the heatmap (on the field-of-view grid) in frame pixels, exclusive ends."""
    box = cam_region(heat, fraction)
    if box is None:
        return None
    r0, c0, r1, c1 = box
    s = fov.step
    return r0 * s, c0 * s, min(fov.rows, r1 * s), min(fov.columns, c1 * s)


def _reason(rgb: U8) -> str:
    """A human hint for a dropped frame (the model decides; this only explains)."""
    g = rgb.astype(np.float32).mean(axis=2)
    if float(g.mean()) < 30.0:
        return "dark"
    lap = g[1:-1, 1:-1] * 4 - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    if float(lap.var()) < 20.0:
        return "blurred"
    return "uninformative (bubbles, fluid or not oesophagus)"
