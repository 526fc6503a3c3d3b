"""Pixels of one file decoded and rescaled straight into slices of the output volume.

Uncompressed little/big endian pixels are read from disk at their offset (no copy through
pydicom); everything else (JPEG, JPEG-LS, JPEG 2000, RLE, deflate) goes through pydicom's
pixel handlers, one frame at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydicom.pixels.utils import iter_pixels

from core.loading.errors import FileProblem
from core.loading.headers import FileHeader, FrameHeader, PixelLayout, read_dataset

__all__ = ["decode_into", "rescale_into"]

INT16_MIN, INT16_MAX = -32768, 32767


def _native_dtype(layout: PixelLayout) -> np.dtype[np.integer]:
    kind = "i" if layout.pixel_representation else "u"
    order = ">" if layout.big_endian else "<"
    return np.dtype(f"{order}{kind}{layout.bits_allocated // 8}")


def _read_native(path_frame: FrameHeader, layout: PixelLayout) -> npt.NDArray[np.integer]:
    dtype = _native_dtype(layout)
    count = layout.rows * layout.columns
    start = path_frame.frame_index * layout.frame_bytes
    if layout.native_bytes is not None:
        raw = np.frombuffer(layout.native_bytes, dtype=dtype, count=count, offset=start).copy()
    else:
        assert layout.native_offset is not None
        raw = np.fromfile(
            path_frame.path, dtype=dtype, count=count, offset=layout.native_offset + start
        )
        if raw.size != count:
            raise FileProblem(path_frame.path, "pixel data is truncated")
    return raw.reshape(layout.rows, layout.columns)


def _mask_stored_bits(arr: npt.NDArray[np.integer], layout: PixelLayout) -> None:
    """Bits above BitsStored are not part of the value (old files keep overlays there)."""
    unused = arr.dtype.itemsize * 8 - layout.bits_stored
    if unused <= 0:
        return
    if layout.pixel_representation:
        arr <<= unused
        arr >>= unused  # arithmetic shift: sign-extends from the stored high bit
    else:
        arr &= (1 << layout.bits_stored) - 1


def rescale_into(
    stored: npt.NDArray[np.integer], slope: float, intercept: float, dst: npt.NDArray[np.generic]
) -> int:
    """dst = stored * slope + intercept (HU); returns how many values were clipped to int16."""
    if dst.dtype == np.int16:
        lo = int(stored.min()) + int(intercept)
        hi = int(stored.max()) + int(intercept)
        if lo >= INT16_MIN and hi <= INT16_MAX:
            np.add(stored, np.int32(intercept), out=dst, casting="unsafe")
            return 0
        wide = stored.astype(np.int64) + int(intercept)
        clipped = int(np.count_nonzero((wide < INT16_MIN) | (wide > INT16_MAX)))
        np.clip(wide, INT16_MIN, INT16_MAX, out=wide)
        dst[...] = wide
        return clipped
    if slope == 1:
        np.add(stored, np.float64(intercept), out=dst, casting="unsafe")
    else:
        np.multiply(stored, np.float64(slope), out=dst, casting="unsafe")
        np.add(dst, np.float64(intercept), out=dst, casting="unsafe")
    return 0


def decode_into(
    header: FileHeader,
    targets: Sequence[tuple[FrameHeader, int]],
    out: npt.NDArray[np.generic],
) -> list[str]:
    """Decode the frames `targets` names into out[k] as HU; returns notes (clipping).

    Raises FileProblem naming the file when its pixels cannot be decoded.
    """
    layout = header.layout
    notes: list[str] = []
    clipped = 0
    try:
        if layout.native:
            for frame, k in targets:
                arr = _read_native(frame, layout)
                _mask_stored_bits(arr, layout)
                clipped += rescale_into(arr, frame.rescale_slope, frame.rescale_intercept, out[k])
        else:
            ds = read_dataset(header.path, defer=False)
            wanted = sorted(targets, key=lambda t: t[0].frame_index)
            decoded = iter_pixels(ds, indices=[t[0].frame_index for t in wanted])
            done = 0
            for (frame, k), arr in zip(wanted, decoded, strict=False):
                done += 1
                if arr.shape != (layout.rows, layout.columns) or arr.dtype.kind not in "iu":
                    raise FileProblem(
                        header.path,
                        f"decoded frame is {arr.dtype} {arr.shape}, expected integers "
                        f"({layout.rows}, {layout.columns})",
                    )
                if not arr.flags.writeable:
                    arr = arr.copy()
                _mask_stored_bits(arr, layout)
                clipped += rescale_into(arr, frame.rescale_slope, frame.rescale_intercept, out[k])
            if done < len(wanted):
                raise FileProblem(header.path, f"only {done} of {len(wanted)} frames decoded")
    except FileProblem:
        raise
    except Exception as exc:  # decoders raise anything: RuntimeError, ValueError, NotImplemented
        name = getattr(layout.transfer_syntax, "name", layout.transfer_syntax)
        raise FileProblem(
            header.path, f"pixel data could not be decoded ({name}: {type(exc).__name__}: {exc})"
        ) from exc
    if clipped:
        notes.append(f"{header.path}: {clipped} values beyond the int16 range were clipped")
    return notes
