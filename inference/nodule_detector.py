"""Lung nodule detection in CT: resample, window, sliding-window heatmap, peaks, 3-D NMS,
findings in patient coordinates (LPS mm) with diameter, probability, slice and texture."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.findings import Finding
from core.heatmap import ProbabilityVolume
from core.uids import tracking_uid
from core.volume import Volume
from inference.ct_preprocess import resample_isotropic, window
from inference.errors import InputNotApplicable, ModelError
from inference.lung_segmentation import LungSegmentation, mask_to_grid, segment_lungs
from inference.manifest import Manifest, Task
from inference.peaks import local_maxima, nms_by_distance, refine_centroid
from inference.runtime import SESSIONS, ModelSession, SessionInfo, cpu_threads
from inference.sliding_window import plan_patches, run_sliding_window

F32 = npt.NDArray[np.float32]
Progress = Callable[[float, str], None]

# Sanity limits for any CT, whatever the model says (mm).
_MIN_SPACING_MM = 0.1
_MAX_SPACING_MM = 10.0
# Candidates are kept inside the lungs plus this margin (mm) unless the manifest says
# otherwise: juxtapleural nodules sit on the pleura, their centres a few mm inside the lung.
DEFAULT_PLEURAL_MARGIN_MM = 6.0


@dataclass(frozen=True, eq=False)
class NoduleResult:
    findings: list[Finding]
    probability_volume: ProbabilityVolume
    session: SessionInfo
    timings_s: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    lungs: LungSegmentation | None = None
    capped: bool = False  # max_findings was reached: lower candidates were not decoded


def calibrate(prob: F32, calibration: object) -> F32:
    """Map the network's probabilities through the manifest's calibration (Platt scaling
    fitted on validation candidates: p' = sigmoid(a * logit(p) + b); a monotonic map, so the
    ranking and the FROC do not change, only what a probability means)."""
    if not calibration:
        return prob
    if not isinstance(calibration, dict) or not {"a", "b"} <= calibration.keys():
        raise ModelError("decoding.calibration must be an object with 'a' and 'b'")
    a, b = float(calibration["a"]), float(calibration["b"])
    p = np.clip(prob, 1e-6, 1.0 - 1e-6)
    z = a * np.log(p / (1.0 - p)) + b
    out: F32 = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return out


def mask_on_output(
    seg: LungSegmentation, margin_mm: float, stride: int, shape: tuple[int, ...]
) -> npt.NDArray[np.bool_]:
    """The lungs plus `margin_mm` on the model's output grid (`stride` input voxels per
    output voxel; the segmentation's grid has `seg.factor`)."""
    region = seg.region(margin_mm)
    if seg.factor == stride:
        return mask_to_grid(region, 1, shape)
    if seg.factor % stride == 0:
        r = seg.factor // stride
        big = region.repeat(r, 0).repeat(r, 1).repeat(r, 2)
        return mask_to_grid(big, 1, shape)
    if stride % seg.factor == 0:
        return mask_to_grid(region, stride // seg.factor, shape)
    raise ModelError(f"lung mask grid (x{seg.factor}) and output stride {stride} are not multiples")


def check_applicable(manifest: Manifest, volume: Volume, body_part: str | None = None) -> list[str]:
    """Raise InputNotApplicable naming what and why; return warnings for softer issues."""
    at = manifest.applies_to
    warnings: list[str] = []
    mod = (volume.modality or "").upper()
    if mod not in at.modalities:
        raise InputNotApplicable(
            f"model {manifest.id} applies to {'/'.join(at.modalities)} series; "
            f"this series is {mod or 'of unknown modality'}"
        )
    if body_part is not None and at.body_parts:
        bp = body_part.upper()
        if bp not in at.body_parts and not (bp == "" and "" in at.body_parts):
            wanted = "/".join(p or "(none)" for p in at.body_parts)
            raise InputNotApplicable(
                f"model {manifest.id} applies to body part {wanted}; "
                f"this series is {bp or '(none)'}"
            )
    k = volume.shape[0]
    if k < at.min_slices:
        raise InputNotApplicable(
            f"model {manifest.id} needs at least {at.min_slices} slices; this series has {k}"
        )
    sk, sj, si = volume.spacing_mm
    for name, v in (("slice spacing", sk), ("row spacing", sj), ("column spacing", si)):
        if not math.isfinite(v) or not _MIN_SPACING_MM <= v <= _MAX_SPACING_MM:
            raise InputNotApplicable(
                f"{name} {v:.4g} mm is not a plausible CT spacing "
                f"({_MIN_SPACING_MM}-{_MAX_SPACING_MM} mm)"
            )
    if at.slice_spacing_mm is not None:
        lo, hi = at.slice_spacing_mm
        if not lo <= sk <= hi:
            raise InputNotApplicable(
                f"model {manifest.id} applies to slice spacing {lo:g}-{hi:g} mm; "
                f"this series has {sk:.3g} mm"
            )
    if at.pixel_spacing_mm is not None:
        lo, hi = at.pixel_spacing_mm
        if not (lo <= sj <= hi and lo <= si <= hi):
            raise InputNotApplicable(
                f"model {manifest.id} applies to pixel spacing {lo:g}-{hi:g} mm; "
                f"this series has {sj:.3g} x {si:.3g} mm"
            )
    if abs(abs(np.linalg.det(volume.direction)) - 1.0) > 1e-3:
        raise InputNotApplicable("the series' axes are not orthogonal (sheared geometry)")
    return warnings


class NoduleDetector:
    """Runs a `detection-3d-heatmap` model on a CT Volume."""

    def __init__(self, manifest: Manifest, providers: Sequence[str] | None = None) -> None:
        if manifest.task is not Task.DETECTION_3D_HEATMAP:
            raise ModelError(
                f"model {manifest.id} is a {manifest.task.value} model, not 3-D detection"
            )
        self.manifest = manifest
        self.session: ModelSession = SESSIONS.get(manifest, providers)
        spacing = manifest.pre("spacing_mm")
        if len(set(spacing)) != 1:
            raise ModelError(f"model {manifest.id}: preprocessing.spacing_mm must be isotropic")
        self.spacing = float(spacing[0])
        self.patch: tuple[int, int, int] = tuple(manifest.pre("patch_size"))
        self.stride_out = int(manifest.pre("output_stride"))
        self.input_name = manifest.inputs[0].name
        if manifest.inputs[0].shape[2:] != self.patch:
            raise ModelError(
                f"model {manifest.id}: preprocessing.patch_size {self.patch} differs from "
                f"inputs[0].shape {manifest.inputs[0].shape}"
            )
        # Optional test-time augmentation: outputs averaged over these flips of each patch.
        flips = manifest.preprocessing.get("test_time_flips", [])
        axes = {"z": 0, "y": 1, "x": 2}
        if not isinstance(flips, list) or any(f not in axes for f in flips):
            raise ModelError(
                f"model {manifest.id}: preprocessing.test_time_flips must be a list of "
                f"'x', 'y', 'z', not {flips!r}"
            )
        self.flip_axes: tuple[int, ...] = tuple(axes[f] for f in flips)

    def _run(self, tile: F32) -> list[F32]:
        out = self.session.run({self.input_name: np.ascontiguousarray(tile)[None, None]})
        return [np.asarray(v[0], dtype=np.float32) for v in out.values()]

    def _infer(self, tile: F32) -> list[F32]:
        outs = self._run(tile)
        for ax in self.flip_axes:
            flipped = self._run(np.flip(tile, axis=ax))
            # Outputs are (C, q, q, q): the patch axis `ax` is output axis ax + 1.
            outs = [o + np.flip(f, axis=ax + 1) for o, f in zip(outs, flipped, strict=True)]
        if self.flip_axes:
            n = 1.0 + len(self.flip_axes)
            outs = [o / n for o in outs]
        return outs

    def detect(
        self,
        volume: Volume,
        *,
        body_part: str | None = None,
        progress: Progress | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> NoduleResult:
        m = self.manifest
        warnings = check_applicable(m, volume, body_part)
        timings: dict[str, float] = {}
        t = time.perf_counter()
        antialias = bool(m.preprocessing.get("antialias", False))
        rs = resample_isotropic(volume, self.spacing, threads=cpu_threads(), antialias=antialias)
        timings["resample"] = time.perf_counter() - t
        t = time.perf_counter()
        seg = segment_lungs(rs.hu, self.spacing)
        timings["lungs"] = time.perf_counter() - t
        t = time.perf_counter()
        margin = float(m.decoding.get("pleural_margin_mm", DEFAULT_PLEURAL_MARGIN_MM))
        warnings = [*warnings, *seg.warnings]
        # Patches are run where the lungs (plus the margin and a few mm of context) are.
        search = seg.region(margin + 4.0)
        lo_hu, hi_hu = m.pre("window_hu")
        x = window(rs.hu, lo_hu, hi_hu)
        timings["preprocess"] = time.perf_counter() - t
        f = seg.factor

        def keep(start: tuple[int, int, int]) -> bool:
            a, b, c = (s // f for s in start)
            pa, pb, pc = (-(-p // f) for p in self.patch)
            return bool(search[a : a + pa, b : b + pb, c : c + pc].any())

        grid = plan_patches(x.shape, self.patch, float(m.pre("overlap")), align=4, keep=keep)
        channels = sum(o.shape[1] for o in m.outputs)
        t = time.perf_counter()
        out, _ = run_sliding_window(
            x,
            grid,
            self.patch,
            self.stride_out,
            self._infer,
            channels,
            pad_value=0.0,
            progress=progress,
            cancel=cancel,
        )
        timings["inference"] = time.perf_counter() - t
        t = time.perf_counter()
        # Crop to the resampled extent (padding removed) and restrict to the dilated lungs.
        oshape = tuple(-(-n // self.stride_out) for n in x.shape)
        out = out[:, : oshape[0], : oshape[1], : oshape[2]]
        # Calibrated probabilities, zero outside the lungs and their pleural margin: the
        # heatmap shows what the candidates are decoded from.
        prob = calibrate(np.ascontiguousarray(out[0]), m.decoding.get("calibration"))
        lung_out = mask_on_output(seg, margin, self.stride_out, oshape)
        prob = np.where(lung_out, prob, 0.0).astype(np.float32)
        findings, capped = self._decode(prob, out, rs.affine, volume)
        timings["decode"] = time.perf_counter() - t
        # The heatmap lives on the model's output grid: voxel o is centred on input voxel
        # stride*o + (stride-1)/2 of the resampled grid.
        a_out = rs.affine.copy()
        a_out[:3, :3] = rs.affine[:3, :3] * self.stride_out
        a_out[:3, 3] = rs.affine[:3, 3] + rs.affine[:3, :3] @ np.full(3, (self.stride_out - 1) / 2)
        pv = ProbabilityVolume(
            probabilities=prob,
            affine=a_out,
            series_instance_uid=volume.series_instance_uid,
            model_id=m.id,
            model_version=m.version,
        )
        return NoduleResult(findings, pv, self.session.info, timings, tuple(warnings), seg, capped)

    def _decode(
        self, prob: F32, out: F32, affine: npt.NDArray[np.float64], volume: Volume
    ) -> tuple[list[Finding], bool]:
        """Candidates at or above the decoding threshold, highest first, at most
        max_findings; and whether that cap was reached."""
        m = self.manifest
        thr = float(m.dec("threshold"))
        cap = int(m.dec("max_findings"))
        peaks = local_maxima(prob, thr)[: 20 * cap]
        if len(peaks) == 0:
            return [], False
        s = self.stride_out
        centres_idx = np.array([refine_centroid(prob, p) for p in peaks])
        in_idx = centres_idx * s + (s - 1) / 2.0
        world = in_idx @ affine[:3, :3].T + affine[:3, 3]
        scores = prob[peaks[:, 0], peaks[:, 1], peaks[:, 2]].astype(np.float64)
        # Peaks within edge_margin_mm of the first or last slice are dropped: the reference
        # model fires on the cut lung at the scan's z edges (see its model card).
        margin = float(m.decoding.get("edge_margin_mm", 0.0))
        if margin > 0:
            k_mm = in_idx[:, 0] * self.spacing
            z_len = (prob.shape[0] * s - 1) * self.spacing
            inside = (k_mm >= margin) & (k_mm <= z_len - margin)
            scores = np.where(inside, scores, -1.0)
        kept = nms_by_distance(world, scores, float(m.dec("nms_radius_mm")), cap + 1)
        capped = len(kept) > cap
        kept = kept[:cap]
        names = [o.name for o in m.outputs]
        textures: list[str] = list(m.decoding.get("texture_labels", []))
        findings: list[Finding] = []
        for i in kept:
            if scores[i] < 0:
                continue
            p = peaks[i]
            diameter = None
            if "diameter_mm" in names:
                diameter = float(out[names.index("diameter_mm"), p[0], p[1], p[2]])
            if diameter is not None and diameter < float(m.dec("min_diameter_mm")):
                continue
            attrs: dict[str, object] = {}
            if textures and "texture_probability" in names:
                c0 = names.index("texture_probability")
                tp = out[c0 : c0 + len(textures), p[0], p[1], p[2]]
                t = int(np.argmax(tp))
                attrs = {"type": textures[t], "type_probability": round(float(tp[t]), 3)}
            xyz = world[i]
            k = int(np.clip(np.rint(volume.world_to_index(xyz)[0]), 0, volume.shape[0] - 1))
            findings.append(
                Finding(
                    finding_id=(fid := f"{m.id}-{len(findings) + 1}"),
                    tracking_uid=tracking_uid(volume.series_instance_uid, m.id, m.version, fid),
                    model_id=m.id,
                    model_version=m.version,
                    series_instance_uid=volume.series_instance_uid,
                    probability=float(np.clip(scores[i], 0.0, 1.0)),
                    label=m.labels[0].name,
                    center_mm=(float(xyz[0]), float(xyz[1]), float(xyz[2])),
                    diameter_mm=diameter,
                    slice_index=k,
                    attributes=attrs,
                )
            )
        return findings, capped
