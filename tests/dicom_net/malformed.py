"""Objects a receiver must refuse, byte for byte, and a valid multi-frame one to compare with:
each built from a real data set by changing only what is named."""

from __future__ import annotations

import io
import struct

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

# Multi-frame Grayscale Word Secondary Capture Image Storage
MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.3"
_PIXEL_OW = b"\xe0\x7f\x10\x00OW"
_PIXEL_OB = b"\xe0\x7f\x10\x00OB"


def split_part10(raw: bytes) -> tuple[str, bytes]:
    """(transfer syntax, data set bytes) of a Part 10 object."""
    ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True)
    meta_len = struct.unpack("<I", raw[140:144])[0]
    return str(ds.file_meta.TransferSyntaxUID), raw[144 + meta_len :]


def with_unknown_vr(data: bytes) -> bytes:
    """An explicit VR little endian data set with a private element of VR "ZZ" inserted
    before Patient's Name (0010,0010), in tag order."""
    at = data.index(b"\x10\x00\x10\x00PN")
    return data[:at] + struct.pack("<HH2sH", 0x0009, 0x1001, b"ZZ", 4) + b"ABCD" + data[at:]


def cut_before(data: bytes, tag_and_vr: bytes) -> bytes:
    """The data set up to (not including) the first element with this tag and VR: what a
    receiver sees when the last-fragment flag comes early, at an element boundary."""
    return data[: data.index(tag_and_vr)]


ROWS = b"\x28\x00\x10\x00US"


def with_rows(data: bytes, rows: int) -> bytes:
    """Rows (0028,0010) set to `rows`, the pixel data left as it is."""
    at = data.index(ROWS)
    return data[: at + 8] + struct.pack("<H", rows) + data[at + 10 :]


def nested_sequences(depth: int) -> bytes:
    """Content Sequence (0040,A730) nested `depth` deep, undefined lengths (explicit VR LE)."""
    sq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_end = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
    sq_end = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (sq + item) * depth + (item_end + sq_end) * depth


def with_nested_sequences(data: bytes, depth: int) -> bytes:
    """The data set with `nested_sequences(depth)` inserted before its Pixel Data."""
    at = data.index(_PIXEL_OW)
    return data[:at] + nested_sequences(depth) + data[at:]


def multiframe_rle(uid: str, frames: int = 3) -> bytes:
    """A valid Part 10 multi-frame secondary capture (16x16, 16 bits), RLE Lossless: one
    fragment per frame and a Basic Offset Table."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MULTIFRAME_SC
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.SOPClassUID, ds.SOPInstanceUID = MULTIFRAME_SC, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = uid + ".1", uid + ".2"
    ds.PatientName, ds.PatientID, ds.Modality = "Test^Multiframe", "LOUPE-MF", "OT"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.NumberOfFrames = frames
    ds.PixelData = np.arange(frames * 256, dtype=np.uint16).reshape(frames, 16, 16).tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
    encoded = [bytes(f) for f in generate_fragments(ds.PixelData)][1:]  # after the table
    ds.PixelData = encapsulate(encoded, has_bot=True)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def without_last_fragment(dataset: bytes) -> bytes:
    """An encapsulated data set whose Pixel Data lost its last fragment (the Basic Offset
    Table emptied, as a sender that cannot compute it leaves it)."""
    at = dataset.index(_PIXEL_OB)
    head, value = dataset[: at + 12], dataset[at + 12 : -8]  # Pixel Data's items, no delimiter
    fragments = [bytes(f) for f in generate_fragments(value)][1:]  # after the table
    return head + encapsulate(fragments[:-1], has_bot=False) + SEQUENCE_DELIMITER


SEQUENCE_DELIMITER = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
