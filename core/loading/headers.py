"""One file's header read into per-frame geometry and pixel layout, leaving the pixels on disk.

Classic images (one frame, Image Plane module) and enhanced multi-frame images (Shared and
Per-frame Functional Groups) give the same `FrameHeader`s, so one stack logic serves both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from core.loading.errors import FileProblem

__all__ = ["FileHeader", "FrameHeader", "PixelLayout", "Vec3", "read_dataset", "read_file_header"]

Vec3 = tuple[float, float, float]

PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
# Values longer than this stay on disk at header time: the pixel data is read once, when decoded.
_DEFER_BYTES = 4096
_NATIVE_SYNTAXES = {ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian}


_US_KEYWORDS = frozenset(
    {"Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel"}
)


def _get(ds: Dataset, keyword: str) -> Any:
    """A top-level value, parsed straight from the raw bytes when possible.

    pydicom converts values lazily through a generic (slow) path; for the few string and US
    attributes a slice header needs, splitting the bytes ourselves makes header reading about
    twice as fast. Anything else falls back to pydicom.
    """
    elem = ds.get_item(tag_for_keyword(keyword) or 0, keep_deferred=True)
    if elem is None:
        return None
    if not isinstance(elem, RawDataElement) or elem.value is None:
        return ds.get(keyword)
    raw = elem.value
    if keyword in _US_KEYWORDS:
        if len(raw) != 2:
            return ds.get(keyword)
        return int.from_bytes(raw, "little" if elem.is_little_endian else "big")
    text = raw.decode("latin-1").strip(" \x00")
    if text == "":
        return ""
    parts = [p.strip(" \x00") for p in text.split("\\")]
    return parts if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class PixelLayout:
    """How a file's pixels are stored: enough to read native pixels straight from disk."""

    rows: int
    columns: int
    number_of_frames: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int  # 0 unsigned, 1 two's complement
    transfer_syntax: str
    big_endian: bool
    native_offset: int | None  # file offset of uncompressed pixel data left on disk
    native_bytes: bytes | None  # uncompressed pixel data small enough to have been read already

    @property
    def native(self) -> bool:
        """True when the pixels are uncompressed and can be read without pydicom's handlers."""
        return self.native_offset is not None or self.native_bytes is not None

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.bits_allocated // 8

    @property
    def stored_range(self) -> tuple[int, int]:
        """Smallest and largest stored value BitsStored and PixelRepresentation allow."""
        bits = self.bits_stored
        if self.pixel_representation:
            return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        return 0, (1 << bits) - 1


@dataclass(frozen=True)
class FrameHeader:
    """One frame (a slice) of a file: where it is in the patient and how to rescale it."""

    path: Path
    frame_index: int  # 0-based index in its file
    multi_frame: bool
    sop_instance_uid: str
    instance_number: int | None
    position: Vec3  # ImagePositionPatient: centre of the first voxel, LPS mm
    row_direction: Vec3  # ImageOrientationPatient[0:3]: direction of increasing column index
    column_direction: Vec3  # ImageOrientationPatient[3:6]: direction of increasing row index
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing), mm
    rows: int
    columns: int
    rescale_slope: float
    rescale_intercept: float
    acquisition: str  # AcquisitionNumber, or stack/temporal position of an enhanced frame
    image_type: tuple[str, ...]
    slice_thickness: float | None  # mm
    series_instance_uid: str
    frame_of_reference_uid: str

    @property
    def frame_number(self) -> int:
        """1-based frame number as DICOM counts them."""
        return self.frame_index + 1

    @property
    def label(self) -> str:
        """The file, and the frame for multi-frame files: how warnings name an image."""
        if self.multi_frame:
            return f"{self.path} frame {self.frame_number}"
        return str(self.path)


@dataclass(frozen=True)
class FileHeader:
    path: Path
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    modality: str
    photometric_interpretation: str
    layout: PixelLayout
    frames: tuple[FrameHeader, ...]


def read_dataset(path: Path, *, defer: bool = True) -> Dataset:
    """dcmread that accepts files without a Part 10 preamble; errors become FileProblem."""
    defer_size = _DEFER_BYTES if defer else None
    try:
        try:
            return pydicom.dcmread(path, defer_size=defer_size)
        except InvalidDicomError:
            # Pre-Part 10 files (no preamble or meta) are common in old archives.
            return pydicom.dcmread(path, defer_size=defer_size, force=True)
    except FileProblem:
        raise
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ValueError)
        raise FileProblem(path, f"not readable as DICOM ({type(exc).__name__}: {exc})") from exc


def read_file_header(path: Path) -> FileHeader:
    """Header of one image file, pixels left on disk. Raises FileProblem naming the file."""
    path = Path(path)
    ds = read_dataset(path)
    try:
        return _file_header(path, ds)
    except FileProblem:
        raise
    except Exception as exc:  # malformed values (bad DS strings, short sequences, ...)
        raise FileProblem(path, f"malformed header ({type(exc).__name__}: {exc})") from exc


def _file_header(path: Path, ds: Dataset) -> FileHeader:
    if PIXEL_DATA not in ds:
        if "SOPClassUID" not in ds and "Modality" not in ds:
            raise FileProblem(path, "not a DICOM image (no SOP Class UID, no pixel data)")
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise FileProblem(path, "float pixel data is not a CT image")
        what = _sop_class_name(ds)
        raise FileProblem(path, f"no pixel data ({what})")
    samples = int(_get(ds, "SamplesPerPixel") or 1)
    photometric = str(_get(ds, "PhotometricInterpretation") or "").strip()
    if samples != 1:
        raise FileProblem(
            path,
            f"colour image ({photometric or 'no PhotometricInterpretation'}, {samples} samples"
            " per pixel), not a greyscale slice",
        )
    rows = _required_int(path, ds, "Rows")
    columns = _required_int(path, ds, "Columns")
    if rows < 1 or columns < 1:
        raise FileProblem(path, f"empty image ({rows} x {columns})")
    frames = int(_get(ds, "NumberOfFrames") or 1)
    if frames < 1:
        raise FileProblem(path, f"NumberOfFrames is {frames}")
    layout = _layout(path, ds, rows, columns, frames)
    if "PerFrameFunctionalGroupsSequence" in ds:
        frame_headers = _enhanced_frames(path, ds, rows, columns, frames)
    else:
        frame_headers = _classic_frames(path, ds, rows, columns, frames)
    return FileHeader(
        path=path,
        sop_instance_uid=str(_get(ds, "SOPInstanceUID") or ""),
        study_instance_uid=str(_get(ds, "StudyInstanceUID") or ""),
        series_instance_uid=str(_get(ds, "SeriesInstanceUID") or ""),
        frame_of_reference_uid=str(_get(ds, "FrameOfReferenceUID") or ""),
        modality=str(_get(ds, "Modality") or ""),
        photometric_interpretation=photometric,
        layout=layout,
        frames=frame_headers,
    )


def _sop_class_name(ds: Dataset) -> str:
    uid = _get(ds, "SOPClassUID")
    if not uid:
        return "no SOP Class UID"
    return str(UID(str(uid)).name)


def _required_int(path: Path, ds: Dataset | None, keyword: str) -> int:
    value = None if ds is None else _get(ds, keyword)
    if value is None or value == "":
        raise FileProblem(path, f"{keyword} is missing")
    return int(value)


def _layout(path: Path, ds: Dataset, rows: int, columns: int, frames: int) -> PixelLayout:
    bits_allocated = _required_int(path, ds, "BitsAllocated")
    bits_stored = int(_get(ds, "BitsStored") or bits_allocated)
    pixel_representation = int(_get(ds, "PixelRepresentation") or 0)
    if not 1 <= bits_stored <= bits_allocated:
        raise FileProblem(path, f"BitsStored {bits_stored} with BitsAllocated {bits_allocated}")
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if not syntax:
        implicit, little = ds.original_encoding
        syntax = str(
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        )
    offset: int | None = None
    data: bytes | None = None
    elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
    if syntax in _NATIVE_SYNTAXES and bits_allocated in (8, 16, 32):
        need = rows * columns * frames * bits_allocated // 8
        if isinstance(elem, RawDataElement) and elem.length != _UNDEFINED_LENGTH:
            if elem.value is None:
                offset = int(elem.value_tell)
                available = min(int(elem.length), os.path.getsize(path) - offset)
            else:
                data = bytes(elem.value)
                available = len(data)
        elif isinstance(elem, DataElement) and isinstance(elem.value, bytes):
            data = elem.value
            available = len(data)
        else:
            available = need
        if available < need:
            raise FileProblem(path, f"pixel data is truncated ({available} bytes, {need} expected)")
    return PixelLayout(
        rows=rows,
        columns=columns,
        number_of_frames=frames,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=pixel_representation,
        transfer_syntax=syntax,
        big_endian=syntax == ExplicitVRBigEndian,
        native_offset=offset,
        native_bytes=data,
    )


def _floats(path: Path, value: Any, n: int, keyword: str) -> tuple[float, ...]:
    if value is None:
        raise FileProblem(path, f"{keyword} is missing: not a cross-sectional image")
    try:
        seq = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        out = tuple(float(v) for v in seq)
    except (TypeError, ValueError) as exc:
        raise FileProblem(path, f"{keyword} is not numeric ({value!r})") from exc
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise FileProblem(path, f"{keyword} must be {n} finite numbers, got {value!r}")
    return out


def _orientation(path: Path, value: Any) -> tuple[Vec3, Vec3]:
    iop = _floats(path, value, 6, "ImageOrientationPatient")
    row, col = iop[:3], iop[3:]
    norm_r = math.sqrt(sum(v * v for v in row))
    norm_c = math.sqrt(sum(v * v for v in col))
    dot = sum(a * b for a, b in zip(row, col, strict=True))
    if abs(norm_r - 1) > 0.01 or abs(norm_c - 1) > 0.01 or abs(dot) > 0.01:
        raise FileProblem(path, f"ImageOrientationPatient is not two orthonormal vectors: {iop}")
    # Renormalise: 6-digit DS values are not exactly unit length.
    return (
        (row[0] / norm_r, row[1] / norm_r, row[2] / norm_r),
        (col[0] / norm_c, col[1] / norm_c, col[2] / norm_c),
    )


def _spacing(path: Path, value: Any) -> tuple[float, float]:
    ps = _floats(path, value, 2, "PixelSpacing")
    if ps[0] <= 0 or ps[1] <= 0:
        raise FileProblem(path, f"PixelSpacing must be positive, got {ps}")
    return ps[0], ps[1]


def _optional_float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def _rescale(path: Path, slope: Any, intercept: Any) -> tuple[float, float]:
    s = 1.0 if slope is None or slope == "" else _floats(path, slope, 1, "RescaleSlope")[0]
    b = (
        0.0
        if intercept is None or intercept == ""
        else _floats(path, intercept, 1, "RescaleIntercept")[0]
    )
    if s == 0:
        raise FileProblem(path, "RescaleSlope is 0")
    return s, b


def _image_type(ds: Dataset) -> tuple[str, ...]:
    value = _get(ds, "ImageType")
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip().upper() for v in value.split("\\"))
    return tuple(str(v).strip().upper() for v in value)


def _classic_frames(
    path: Path, ds: Dataset, rows: int, columns: int, frames: int
) -> tuple[FrameHeader, ...]:
    position = _floats(path, _get(ds, "ImagePositionPatient"), 3, "ImagePositionPatient")
    row_dir, col_dir = _orientation(path, _get(ds, "ImageOrientationPatient"))
    spacing = _spacing(path, _get(ds, "PixelSpacing"))
    slope, intercept = _rescale(path, _get(ds, "RescaleSlope"), _get(ds, "RescaleIntercept"))
    positions: list[Vec3] = [(position[0], position[1], position[2])]
    if frames > 1:
        # Classic multi-frame with a frame offset grid (e.g. RT Dose): frames lie along the
        # normal at the given offsets from ImagePositionPatient.
        offsets = _get(ds, "GridFrameOffsetVector")
        if offsets is None:
            raise FileProblem(path, f"{frames} frames without per-frame positions")
        off = _floats(path, offsets, frames, "GridFrameOffsetVector")
        normal = _cross(row_dir, col_dir)
        positions = [
            (
                position[0] + o * normal[0],
                position[1] + o * normal[1],
                position[2] + o * normal[2],
            )
            for o in off
        ]
        if "DoseGridScaling" in ds:
            slope = _floats(path, ds.DoseGridScaling, 1, "DoseGridScaling")[0]
    number = _get(ds, "InstanceNumber")
    acquisition = _get(ds, "AcquisitionNumber")
    common = {
        "path": path,
        "multi_frame": frames > 1,
        "sop_instance_uid": str(_get(ds, "SOPInstanceUID") or ""),
        "instance_number": int(number) if number not in (None, "") else None,
        "row_direction": row_dir,
        "column_direction": col_dir,
        "pixel_spacing": spacing,
        "rows": rows,
        "columns": columns,
        "rescale_slope": slope,
        "rescale_intercept": intercept,
        "acquisition": "" if acquisition in (None, "") else str(acquisition),
        "image_type": _image_type(ds),
        "slice_thickness": _optional_float(_get(ds, "SliceThickness")),
        "series_instance_uid": str(_get(ds, "SeriesInstanceUID") or ""),
        "frame_of_reference_uid": str(_get(ds, "FrameOfReferenceUID") or ""),
    }
    return tuple(
        FrameHeader(frame_index=f, position=positions[f], **common)  # type: ignore[arg-type]
        for f in range(len(positions))
    )


def _group_value(groups: Sequence[Dataset | None], sequence: str, keyword: str) -> Any:
    """A functional group attribute: the per-frame item wins over the shared one."""
    for group in groups:
        if group is None or sequence not in group:
            continue
        items = group[sequence].value
        if items and keyword in items[0]:
            return items[0][keyword].value
    return None


def _enhanced_frames(
    path: Path, ds: Dataset, rows: int, columns: int, frames: int
) -> tuple[FrameHeader, ...]:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    if len(per_frame) != frames:
        raise FileProblem(path, f"{len(per_frame)} per-frame functional groups for {frames} frames")
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared: Dataset | None = shared_seq[0] if shared_seq else None
    image_type = _image_type(ds)
    series = str(_get(ds, "SeriesInstanceUID") or "")
    frame_of_reference = str(_get(ds, "FrameOfReferenceUID") or "")
    sop = str(_get(ds, "SOPInstanceUID") or "")
    number = _get(ds, "InstanceNumber")
    acquisition = _get(ds, "AcquisitionNumber")
    out: list[FrameHeader] = []
    for f in range(frames):
        groups = (per_frame[f], shared)
        pos = _floats(
            path,
            _group_value(groups, "PlanePositionSequence", "ImagePositionPatient"),
            3,
            f"ImagePositionPatient of frame {f + 1}",
        )
        row_dir, col_dir = _orientation(
            path, _group_value(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        )
        spacing = _spacing(path, _group_value(groups, "PixelMeasuresSequence", "PixelSpacing"))
        slope, intercept = _rescale(
            path,
            _group_value(groups, "PixelValueTransformationSequence", "RescaleSlope"),
            _group_value(groups, "PixelValueTransformationSequence", "RescaleIntercept"),
        )
        stack = _group_value(groups, "FrameContentSequence", "StackID")
        temporal = _group_value(groups, "FrameContentSequence", "TemporalPositionIndex")
        key = [str(acquisition) if acquisition not in (None, "") else ""]
        if stack is not None:
            key.append(f"stack {stack}")
        if temporal is not None:
            key.append(f"time {temporal}")
        out.append(
            FrameHeader(
                path=path,
                frame_index=f,
                multi_frame=True,
                sop_instance_uid=sop,
                instance_number=int(number) if number not in (None, "") else None,
                position=(pos[0], pos[1], pos[2]),
                row_direction=row_dir,
                column_direction=col_dir,
                pixel_spacing=spacing,
                rows=rows,
                columns=columns,
                rescale_slope=slope,
                rescale_intercept=intercept,
                acquisition=" ".join(k for k in key if k),
                image_type=image_type,
                slice_thickness=_optional_float(
                    _group_value(groups, "PixelMeasuresSequence", "SliceThickness")
                ),
                series_instance_uid=series,
                frame_of_reference_uid=frame_of_reference,
            )
        )
    return tuple(out)


def _cross(a: Vec3, b: Vec3) -> Vec3:
    return (
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    )
