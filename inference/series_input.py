"""Inputs for the engine: DICOM files grouped by series, CT series as Volumes (through
core.loading), endoscopy instances as RGB frames (through core.frames), and phantoms as
Volumes for tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError

from core.frames import open_frames
from core.loading import LoadError, load_series
from core.volume import Volume
from inference.endoscopy_classifier import FrameRef
from inference.errors import InputNotApplicable

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SeriesFiles:
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    body_part: str
    paths: tuple[Path, ...]


def expand_paths(paths: Sequence[Path | str]) -> list[Path]:
    """Files as given, folders walked recursively (DICOMDIR files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(f for f in sorted(p.rglob("*")) if f.is_file() and f.name != "DICOMDIR")
        elif p.is_file():
            out.append(p)
        else:
            raise InputNotApplicable(f"{p}: no such file or folder")
    return out


def group_series(paths: Sequence[Path | str]) -> list[SeriesFiles]:
    """DICOM files grouped by Series Instance UID (non-DICOM files ignored)."""
    groups: dict[str, list[Path]] = {}
    info: dict[str, tuple[str, str, str]] = {}
    for f in expand_paths(paths):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError):
            continue
        uid = str(ds.get("SeriesInstanceUID", ""))
        if not uid:
            continue
        groups.setdefault(uid, []).append(f)
        info.setdefault(
            uid,
            (
                str(ds.get("StudyInstanceUID", "")),
                str(ds.get("Modality", "")).upper(),
                str(ds.get("BodyPartExamined", "")).upper(),
            ),
        )
    if not groups:
        raise InputNotApplicable(f"no DICOM series found in {', '.join(map(str, paths))}")
    return [
        SeriesFiles(uid, info[uid][0], info[uid][1], info[uid][2], tuple(groups[uid]))
        for uid in groups
    ]


def load_ct(series: SeriesFiles) -> Volume:
    try:
        return load_series(series.paths)
    except LoadError as exc:
        raise InputNotApplicable(f"series {series.series_instance_uid}: {exc}") from None


def load_frames(series: SeriesFiles) -> list[tuple[U8, FrameRef]]:
    """RGB frames (uint8, (rows, cols, 3)) of every instance, multi-frame expanded, in
    acquisition order, decoded by core.frames: the viewer's decoder, so the model sees the
    pixels the reader sees (YBR JPEG converted once, palettes applied, >8-bit scaled)."""
    try:
        frames = open_frames(series.paths)
        decoded = [frames.rgb(i) for i in range(len(frames))]
    except LoadError as exc:  # FrameError included: it names the file and the frame
        raise InputNotApplicable(f"series {series.series_instance_uid}: {exc}") from None
    uid, modality = series.series_instance_uid, series.modality
    return [
        (rgb, FrameRef(uid, ref.key.sop_instance_uid, ref.key.frame_number, modality))
        for rgb, ref in zip(decoded, frames, strict=True)
    ]


def volume_from_phantom(
    hu: npt.NDArray[np.int16],
    spacing_mm: tuple[float, float, float],
    origin_mm: tuple[float, float, float],
    series_instance_uid: str = "",
) -> Volume:
    """Volume of a core.synthetic CtPhantom (spacing (z, y, x), origin LPS (x, y, z))."""
    dz, dy, dx = spacing_mm
    a = np.eye(4)
    a[:3, 0] = (0.0, 0.0, dz)
    a[:3, 1] = (0.0, dy, 0.0)
    a[:3, 2] = (dx, 0.0, 0.0)
    a[:3, 3] = origin_mm
    return Volume(voxels=hu, affine=a, series_instance_uid=series_instance_uid, modality="CT")
