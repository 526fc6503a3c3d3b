"""Endoscopy frames: each frame of VL Endoscopic, Video Endoscopic and multi-frame true colour
Secondary Capture images, identified by (SOP Instance UID, 1-based frame number) and decoded
lazily to RGB uint8 (YBR photometrics converted, palettes applied, >8-bit scaled down).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import pixel_array

from core.loading.errors import FileProblem, LoadError
from core.loading.headers import read_dataset

__all__ = ["FrameError", "FrameKey", "FrameRef", "FrameSequence", "open_frames"]

RGB = npt.NDArray[np.uint8]  # (rows, columns, 3)


class FrameError(FileProblem):
    """A frame (or its whole file) cannot be decoded; names the file and the frame."""


@dataclass(frozen=True, order=True)
class FrameKey:
    """How a frame is referenced in DICOM (e.g. in SR or KOS): instance and 1-based frame."""

    sop_instance_uid: str
    frame_number: int

    def __post_init__(self) -> None:
        if self.frame_number < 1:
            raise ValueError(f"frame_number is 1-based, got {self.frame_number}")


@dataclass(frozen=True)
class FrameRef:
    key: FrameKey
    path: Path
    rows: int
    columns: int
    photometric_interpretation: str
    number_of_frames: int  # frames in the file
    sop_class_uid: str


def _frame_refs(path: Path, ds: pydicom.Dataset) -> list[FrameRef]:
    if "PixelData" not in ds:
        raise FileProblem(path, "no pixel data")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        sop = str(ds.SOPInstanceUID)
    except (AttributeError, TypeError, ValueError) as exc:
        raise FileProblem(path, f"malformed image header ({exc})") from exc
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    return [
        FrameRef(
            key=FrameKey(sop, n),
            path=path,
            rows=rows,
            columns=columns,
            photometric_interpretation=photometric,
            number_of_frames=frames,
            sop_class_uid=str(ds.get("SOPClassUID", "")),
        )
        for n in range(1, frames + 1)
    ]


def _to_rgb8(arr: npt.NDArray[np.generic], ref: FrameRef) -> RGB:
    """Decoded frame (already RGB for YBR input) -> (rows, columns, 3) uint8."""
    if arr.ndim == 2:
        if ref.photometric_interpretation == "PALETTE COLOR":
            ds = pydicom.dcmread(ref.path, stop_before_pixels=True, force=True)
            arr = apply_color_lut(arr, ds)
        else:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
            if ref.photometric_interpretation == "MONOCHROME1":
                arr = arr.max() - arr
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise FrameError(ref.path, f"frame {ref.key.frame_number}: unexpected shape {arr.shape}")
    if arr.dtype == np.uint8:
        out: RGB = np.ascontiguousarray(arr, dtype=np.uint8)
        return out
    if arr.dtype.kind == "f":
        clipped: RGB = np.clip(arr, 0, 255).astype(np.uint8)
        return clipped
    top = int(arr.max()) if arr.size else 0
    shift = max(0, top.bit_length() - 8)  # scale >8-bit data to the 0..255 range
    return (arr.astype(np.uint32) >> shift).astype(np.uint8)


class FrameSequence(Sequence[FrameRef]):
    """Frames of an endoscopy study in acquisition order; pixels decoded on request."""

    def __init__(self, frames: Sequence[FrameRef], warnings: Sequence[str] = ()) -> None:
        self._frames = tuple(frames)
        self._index = {f.key: i for i, f in enumerate(self._frames)}
        self.warnings = tuple(warnings)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, index: int) -> FrameRef:  # type: ignore[override]
        return self._frames[index]

    def frame_keys(self) -> tuple[FrameKey, ...]:
        return tuple(f.key for f in self._frames)

    def index_of(self, key: FrameKey) -> int:
        try:
            return self._index[key]
        except KeyError:
            raise KeyError(f"no frame {key.frame_number} of {key.sop_instance_uid}") from None

    def rgb(self, index: int) -> RGB:
        """Decode frame `index` to RGB uint8. Raises FrameError naming the file and frame."""
        ref = self._frames[index]
        try:
            arr = pixel_array(str(ref.path), index=ref.key.frame_number - 1)
        except Exception as exc:  # decoders raise anything; the viewer needs one error type
            try:
                ds = read_dataset(ref.path, defer=False)
                arr = pixel_array(ds, index=ref.key.frame_number - 1)
            except Exception:
                syntax = _syntax_name(ref.path)
                raise FrameError(
                    ref.path,
                    f"frame {ref.key.frame_number} cannot be decoded ({syntax}: "
                    f"{type(exc).__name__}: {exc})",
                ) from exc
        return _to_rgb8(arr, ref)

    def iter_rgb(self) -> Iterator[tuple[FrameKey, RGB]]:
        for i, ref in enumerate(self._frames):
            yield ref.key, self.rgb(i)


def _syntax_name(path: Path) -> str:
    try:
        meta = pydicom.dcmread(path, stop_before_pixels=True, force=True).file_meta
        return str(meta.TransferSyntaxUID.name)
    except Exception:
        return "unknown transfer syntax"


def open_frames(paths: Sequence[Path | str]) -> FrameSequence:
    """Index the frames of the files (headers only). Unusable files become warnings naming
    them; LoadError when no frame remains."""
    refs: list[tuple[tuple[str, int, str], list[FrameRef]]] = []
    problems: list[str] = []
    for p in paths:
        path = Path(p)
        try:
            ds = read_dataset(path)
            order = (
                str(ds.get("AcquisitionDateTime", "") or ds.get("ContentTime", "")),
                int(ds.get("InstanceNumber", 0) or 0),
                str(path),
            )
            refs.append((order, _frame_refs(path, ds)))
        except FileProblem as exc:
            problems.append(str(exc))
        except (TypeError, ValueError) as exc:
            problems.append(f"{path}: malformed header ({exc})")
    if not refs:
        detail = "; ".join(problems[:5]) or "no files"
        raise LoadError(f"no endoscopy frames in {len(list(paths))} file(s): {detail}")
    refs.sort(key=lambda r: r[0])
    return FrameSequence([f for _, frames in refs for f in frames], problems)
