"""From the frames of a series to one regular stack: split, sort, check spacing, build the affine.

Everything irregular that is found is described in `SeriesPlan.warnings`, with what was done.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.loading.errors import LoadError
from core.loading.headers import FileHeader, FrameHeader, PixelLayout
from core.volume import affine_from_dicom

__all__ = ["SeriesPlan", "describe", "plan_stack"]

F64 = npt.NDArray[np.float64]

_COSINE_TOL = 1e-3  # direction cosines equal within this are one orientation
_SPACING_TOL = 1e-3  # mm, pixel spacing
_DUPLICATE_MM = 0.01  # slices closer than this along the normal share a position
_TILT_WARN_DEG = 0.5  # report gantry tilt above this (the affine always uses the true step)
_MAX_FILLED_GAP = 10  # missing slices filled in at most per gap (and no more than the stack)
_MAX_NAMED = 5  # files named per warning before "and N more"
CT_FILL_HU = -1024  # air: the value of a slice that is missing or could not be decoded
INT16_MIN, INT16_MAX = -32768, 32767


@dataclass(frozen=True, eq=False)
class SeriesPlan:
    """The stack to load, in slice order, with its geometry: known before any pixel is read."""

    slices: tuple[FrameHeader | None, ...]  # index k -> frame; None: a missing slice left blank
    layouts: dict[str, PixelLayout]  # str(path) -> how that file's pixels are stored
    affine: F64  # index (k, j, i, 1) -> LPS mm
    dtype: np.dtype[np.int16] | np.dtype[np.float32]
    fill_value: float  # value of blank slices (missing or undecodable)
    rows: int
    columns: int
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    warnings: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, int, int]:
        return len(self.slices), self.rows, self.columns

    @property
    def sop_instance_uids(self) -> tuple[str, ...]:
        return tuple(s.sop_instance_uid if s else "" for s in self.slices)

    @property
    def frame_numbers(self) -> tuple[int, ...]:
        """1-based frame per slice when any slice comes from a multi-frame file (0: blank)."""
        if not any(s is not None and s.multi_frame for s in self.slices):
            return ()
        return tuple(s.frame_number if s else 0 for s in self.slices)


def describe(frames: Sequence[FrameHeader]) -> str:
    """Name the images of a warning: the first few files, then a count."""
    labels = [f.label for f in frames]
    shown = ", ".join(labels[:_MAX_NAMED])
    more = len(labels) - _MAX_NAMED
    return f"{shown} and {more} more" if more > 0 else shown


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _largest_group(
    frames: Sequence[FrameHeader], same: Callable[[FrameHeader, FrameHeader], bool]
) -> tuple[list[FrameHeader], list[list[FrameHeader]]]:
    """Cluster frames by `same` against each cluster's first member; (largest, the others)."""
    groups: list[list[FrameHeader]] = []
    for f in frames:
        for g in groups:
            if same(g[0], f):
                g.append(f)
                break
        else:
            groups.append([f])
    groups.sort(key=len, reverse=True)  # stable: ties keep the first seen
    return groups[0], groups[1:]


def _close(a: Sequence[float], b: Sequence[float], tol: float) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def _fmt(v: Sequence[float]) -> str:
    return "(" + ", ".join(f"{x:.3g}" for x in v) + ")"


def plan_stack(files: Sequence[FileHeader]) -> SeriesPlan:
    """Choose the largest consistent stack among the files' frames and work out its geometry."""
    frames = [f for fh in files for f in fh.frames]
    if not frames:
        raise LoadError("no image frames to load")
    warnings: list[str] = []

    # Files of another series (a folder holding two series): keep the largest series.
    kept, others = _largest_group(
        frames, lambda a, b: a.series_instance_uid == b.series_instance_uid
    )
    for g in others:
        warnings.append(
            f"images of another series ({g[0].series_instance_uid or 'no UID'}) dropped: "
            f"{_plural(len(g), 'image')} ({describe(g)})"
        )
    frames = kept

    # Localizers (scout views) sometimes travel inside the axial series.
    scouts = [f for f in frames if "LOCALIZER" in f.image_type]
    if scouts and len(scouts) < len(frames):
        warnings.append(f"localizer dropped: {_plural(len(scouts), 'image')} ({describe(scouts)})")
        frames = [f for f in frames if "LOCALIZER" not in f.image_type]

    frames = _split_orientation_size(frames, warnings)
    ref = frames[0]
    row_dir = np.asarray(ref.row_direction)
    col_dir = np.asarray(ref.column_direction)
    normal = np.cross(row_dir, col_dir)
    frames = _sorted_unique(frames, normal, warnings)

    layouts = {str(fh.path): fh.layout for fh in files}
    by_path = {str(fh.path): fh for fh in files}
    modality = Counter(by_path[str(f.path)].modality for f in frames).most_common(1)[0][0]
    study = Counter(by_path[str(f.path)].study_instance_uid for f in frames).most_common(1)[0][0]
    fill = float(CT_FILL_HU) if modality == "CT" else 0.0
    slots, step, origin = _slice_grid(frames, normal, fill, warnings)
    frame_uids = Counter(f.frame_of_reference_uid for f in frames)
    if len(frame_uids) > 1:
        warnings.append(
            f"{len(frame_uids)} frames of reference in one stack; kept "
            f"{frame_uids.most_common(1)[0][0]} as the volume's"
        )
    if modality != "CT":
        warnings.append(f"modality {modality or 'unknown'}: voxel values are not HU")
    dtype = _choose_dtype(frames, layouts)

    affine = affine_from_dicom(origin, row_dir, col_dir, ref.pixel_spacing, step)
    return SeriesPlan(
        slices=tuple(slots),
        layouts=layouts,
        affine=affine,
        dtype=dtype,
        fill_value=fill,
        rows=ref.rows,
        columns=ref.columns,
        study_instance_uid=study,
        series_instance_uid=ref.series_instance_uid,
        frame_of_reference_uid=frame_uids.most_common(1)[0][0],
        modality=modality,
        warnings=tuple(warnings),
    )


def _split_orientation_size(frames: list[FrameHeader], warnings: list[str]) -> list[FrameHeader]:
    """Keep the largest group of one orientation, size and pixel spacing; name the others."""

    def same(a: FrameHeader, b: FrameHeader) -> bool:
        return (
            (a.rows, a.columns) == (b.rows, b.columns)
            and _close(a.row_direction, b.row_direction, _COSINE_TOL)
            and _close(a.column_direction, b.column_direction, _COSINE_TOL)
            and _close(a.pixel_spacing, b.pixel_spacing, _SPACING_TOL)
        )

    kept, others = _largest_group(frames, same)
    ref = kept[0]
    for g in others:
        o = g[0]
        n = _plural(len(g), "image")
        if not (
            _close(o.row_direction, ref.row_direction, _COSINE_TOL)
            and _close(o.column_direction, ref.column_direction, _COSINE_TOL)
        ):
            warnings.append(
                f"mixed orientations: dropped {n} oriented {_fmt(o.row_direction)}/"
                f"{_fmt(o.column_direction)} (stack: {_fmt(ref.row_direction)}/"
                f"{_fmt(ref.column_direction)}): {describe(g)}"
            )
        elif (o.rows, o.columns) != (ref.rows, ref.columns):
            warnings.append(
                f"unequal sizes: dropped {n} of {o.rows} x {o.columns} "
                f"(stack: {ref.rows} x {ref.columns}): {describe(g)}"
            )
        else:
            warnings.append(
                f"unequal pixel spacing: dropped {n} of {_fmt(o.pixel_spacing)} mm "
                f"(stack: {_fmt(ref.pixel_spacing)} mm): {describe(g)}"
            )
    return kept


def _order_key(f: FrameHeader) -> tuple[str, int, str, int]:
    return (f.acquisition, f.instance_number or 0, str(f.path), f.frame_index)


def _sorted_unique(
    frames: list[FrameHeader], normal: F64, warnings: list[str]
) -> list[FrameHeader]:
    """Sort along the normal; resolve repeated positions by acquisition, else keep the first."""
    frames = sorted(frames, key=lambda f: (float(np.dot(f.position, normal)), _order_key(f)))
    proj = np.array([np.dot(f.position, normal) for f in frames])
    if len(frames) < 2 or np.min(np.diff(proj)) >= _DUPLICATE_MM:
        return frames
    acquisitions: dict[str, list[FrameHeader]] = {}
    for f in frames:
        acquisitions.setdefault(f.acquisition, []).append(f)
    if len(acquisitions) > 1 and all(
        len(g) < 2 or np.min(np.diff([np.dot(f.position, normal) for f in g])) >= _DUPLICATE_MM
        for g in acquisitions.values()
    ):
        groups = sorted(acquisitions.items(), key=lambda kv: len(kv[1]), reverse=True)
        (kept_key, kept), dropped = groups[0], groups[1:]
        for key, g in dropped:
            warnings.append(
                f"several acquisitions in one series: kept acquisition {kept_key or '(none)'} "
                f"({_plural(len(kept), 'slice')}), dropped acquisition {key or '(none)'} "
                f"({_plural(len(g), 'slice')}: {describe(g)})"
            )
        return kept
    kept_unique: list[FrameHeader] = []
    duplicates: list[FrameHeader] = []
    last = -math.inf
    for f, p in sorted(zip(frames, proj, strict=True), key=lambda fp: (fp[1], _order_key(fp[0]))):
        if p - last < _DUPLICATE_MM:
            duplicates.append(f)
        else:
            kept_unique.append(f)
            last = p
    warnings.append(
        f"repeated slice positions: kept the first image at each position, dropped "
        f"{_plural(len(duplicates), 'image')} ({describe(duplicates)})"
    )
    return kept_unique


def _slice_grid(
    frames: list[FrameHeader], normal: F64, fill: float, warnings: list[str]
) -> tuple[list[FrameHeader | None], F64, F64]:
    """Place sorted frames on a regular grid: (slots with None for gaps, step vector, origin)."""
    pos = np.array([f.position for f in frames], dtype=np.float64)
    if len(frames) == 1:
        thickness = frames[0].slice_thickness
        if thickness is None:
            thickness = 1.0
            warnings.append("single slice without SliceThickness: slice step set to 1 mm")
        return [frames[0]], normal * thickness, pos[0]
    proj = pos @ normal
    d = np.diff(proj)
    median = float(np.median(d))
    # A hole larger than the stack itself is not a missing slice or two: it separates another
    # block (e.g. a lone slice far away). Keep the largest contiguous block.
    big = [i for i, di in enumerate(d) if di / median - 1 > max(_MAX_FILLED_GAP, len(frames))]
    if big:
        cuts = [0, *(i + 1 for i in big), len(frames)]
        blocks = [(cuts[b], cuts[b + 1]) for b in range(len(cuts) - 1)]
        lo, hi = max(blocks, key=lambda b: b[1] - b[0])
        big_gap = float(max(d[i] for i in big))
        dropped = frames[:lo] + frames[hi:]
        warnings.append(
            f"slices far from the stack (a gap of {big_gap:.0f} mm) dropped: "
            f"kept {_plural(hi - lo, 'contiguous slice')}, dropped "
            f"{_plural(len(dropped), 'image')} ({describe(dropped)})"
        )
        return _slice_grid(frames[lo:hi], normal, fill, warnings)
    tol = max(0.02, 0.02 * median)
    index = [0]
    gaps: list[tuple[float, int]] = []
    for i, di in enumerate(d):
        ratio = di / median
        n = round(ratio)
        if n >= 2 and abs(ratio - n) < 0.2:
            gaps.append((float(proj[i]), n - 1))
            index.append(index[-1] + n)
        else:
            index.append(index[-1] + 1)
    k = np.asarray(index, dtype=np.float64)
    # Least-squares fit pos = origin + k * step: the step keeps any in-plane shift (gantry tilt).
    kc = k - k.mean()
    step = (kc[:, None] * (pos - pos.mean(axis=0))).sum(axis=0) / float((kc * kc).sum())
    origin = pos.mean(axis=0) - k.mean() * step
    residual = float(np.max(np.linalg.norm(pos - (origin + k[:, None] * step), axis=1)))
    if residual <= tol:
        origin = pos[0]  # the first slice exactly where the file says; the fit agrees
    if gaps:
        missing = sum(n for _, n in gaps)
        where = ", ".join(f"{_plural(n, 'slice')} after {p:.2f} mm" for p, n in gaps[:_MAX_NAMED])
        warnings.append(
            f"missing slices: {missing} absent along the normal ({where}); step "
            f"{median:.3g} mm kept and blank slices ({fill:g}) put in their place, so every "
            f"real slice keeps its true position"
        )
    if residual > tol:
        real_steps = np.diff(proj)
        warnings.append(
            f"uneven slice spacing: steps from {real_steps.min():.3g} to "
            f"{real_steps.max():.3g} mm; "
            f"used the least-squares regular step of {float(step @ normal):.4g} mm; slices lie up "
            f"to {residual:.3g} mm from their grid positions"
        )
    cos_tilt = float(step @ normal) / float(np.linalg.norm(step))
    tilt = math.degrees(math.acos(min(1.0, max(-1.0, cos_tilt))))
    if tilt > _TILT_WARN_DEG:
        warnings.append(
            f"gantry tilt {tilt:.1f} degrees: the slice step is not along the slice normal; the "
            f"affine's k axis is the true step vector {_fmt(step)} mm (a sheared grid), "
            f"so positions stay right"
        )
    slots: list[FrameHeader | None] = [None] * (index[-1] + 1)
    for f, kk in zip(frames, index, strict=True):
        slots[kk] = f
    return slots, step, origin


def _choose_dtype(
    frames: Sequence[FrameHeader], layouts: dict[str, PixelLayout]
) -> np.dtype[np.int16] | np.dtype[np.float32]:
    """int16 when every slope is 1 and every intercept integral (16-bit stored values; rare
    results beyond int16 are clipped and reported at decode), else float32."""
    for f in frames:
        if f.rescale_slope != 1 or not float(f.rescale_intercept).is_integer():
            return np.dtype(np.float32)
        lo, hi = layouts[str(f.path)].stored_range
        if layouts[str(f.path)].bits_stored > 16 and (
            lo + f.rescale_intercept < INT16_MIN or hi + f.rescale_intercept > INT16_MAX
        ):
            return np.dtype(np.float32)
    return np.dtype(np.int16)
