"""Inputs for the engine: DICOM files grouped by series, CT series as Volumes (through
core.loading), endoscopy instances as RGB frames, and phantoms as Volumes for tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.errors import InvalidDicomError

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
    instance number order."""
    items = []
    for f in series.paths:
        ds = pydicom.dcmread(f)
        items.append((int(ds.get("InstanceNumber", 0) or 0), str(ds.SOPInstanceUID), ds))
    items.sort(key=lambda t: t[0])
    out: list[tuple[U8, FrameRef]] = []
    for _, sop, ds in items:
        try:
            arr = ds.pixel_array
        except Exception as exc:  # pydicom raises several types for undecodable pixels
            raise InputNotApplicable(f"instance {sop}: pixels cannot be decoded ({exc})") from None
        if str(ds.get("PhotometricInterpretation", "")) not in ("RGB", ""):
            from pydicom.pixels.processing import convert_color_space

            arr = convert_color_space(arr, str(ds.PhotometricInterpretation), "RGB")
        n = int(ds.get("NumberOfFrames", 1) or 1)
        frames = arr if n > 1 else arr[None]
        for k, fr in enumerate(frames):
            out.append(
                (
                    np.asarray(fr, dtype=np.uint8),
                    FrameRef(series.series_instance_uid, sop, k + 1, series.modality),
                )
            )
    return out


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
