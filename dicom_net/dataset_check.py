"""What the archive accepts: a Part 10 object, fully parsed in one pass over its elements
before it is acknowledged (both receive paths, through ingest.py) or imported (archive.py).

"Fully parsed" means:
- The file meta is readable and names a transfer syntax we store (contexts.py). A deflated
  data set is inflated first.
- Every element decodes, at every level: a known VR (explicit VR syntaxes); a value that fits
  in its data set, item or sequence (nothing truncated); for binary VRs a length that is a
  multiple of the value size (US 2, UL 4, FD 8 ...); an undefined length only for a
  sequence, for UN holding a sequence, and for encapsulated Pixel Data; every item of every
  sequence walked the same way, down to MAX_SEQUENCE_DEPTH levels. In implicit VR the data
  dictionary says which elements are sequences; a private element of defined length stays
  opaque, one of undefined length is walked as a sequence (as pydicom reads it).
- SOP Instance, SOP Class, Study and Series Instance UIDs are present.
- Pixel data can be decoded. Image storage SOP classes ("... Image Storage", segmentations,
  parametric maps ...) must carry Pixel Data (or Float / Double Float Pixel Data). Pixel data,
  or Rows, needs Rows, Columns, Bits Allocated and Samples per Pixel, one value each.
  Native pixel data must hold at least Rows x Columns x Samples per Pixel x Number of Frames
  (default 1) x Bits Allocated / 8 bytes (2/3 of that for YBR_FULL_422; more is padding,
  which readers ignore). Encapsulated pixel data must come in an encapsulated transfer
  syntax (native in a native one), with its Basic Offset Table item and at least one
  fragment per frame (video: one stream in one or more fragments); a Basic Offset Table
  that is not empty has one offset per frame, each at the start of a fragment.
Not checked: text values against their VR and character set (readers replace what they
cannot decode), the order of elements, values other than those above.

A refusal is an `Unacceptable` with a C-STORE status (PS3.4 Annex B) and a reason that names
the element, never its value, so that it can go into the log and the response's Error
Comment without patient data:
- 0xC000 "Cannot understand": the bytes do not decode as DICOM (truncated, unknown VR,
  broken items, nesting too deep, a transfer syntax we do not store).
- 0xA900 "Data Set does not match SOP Class": it decodes, but lacks what its SOP class needs
  (UIDs, image attributes, pixel bytes, fragments).

The same walk reads the indexed attributes (InstanceHeader) where their values are plain
(printable ASCII in an ASCII-compatible character set, little endian); otherwise the caller
reads them with pydicom (header.read_header) from the object already checked. A received data
set is walked from its first fragment while the rest is on its way (`check_start`); when
its Pixel Data is native and last, what remains to check once it has arrived is its length.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydicom.datadict import dictionary_VR
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian
from pynetdicom.sop_class import _STORAGE_CLASSES

from dicom_net.contexts import (
    ACCEPTED_TRANSFER_SYNTAXES,
    ENCAPSULATED_SYNTAXES,
    VIDEO_TRANSFER_SYNTAXES,
)
from dicom_net.header import InstanceHeader

STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000

# Sequences nested deeper than this are refused: readers (pydicom, ours) recurse once or more
# per level, and real objects (SR content trees included) stay far below it.
MAX_SEQUENCE_DEPTH = 64
# A deflated data set may inflate to at most this (it is inflated in memory).
MAX_INFLATED_BYTES = 1 << 30


class Unacceptable(Exception):
    """The object is refused: `reason` names the element (no value), `status` the C-STORE
    status that says so."""

    def __init__(self, reason: str, status: int = STATUS_CANNOT_UNDERSTAND):
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _NotFast(Exception):
    """The walk cannot read the indexed values itself: pydicom reads them."""


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


# -- encodings --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Encoding:
    implicit: bool
    byteorder: Literal["little", "big"]
    # (group, element, VR, 16-bit length) of an explicit VR element header; for an implicit
    # VR element or an item only the group and element are meaningful.
    tag_vr_short: Callable[..., tuple[Any, ...]]
    tag_long: Callable[..., tuple[Any, ...]]  # (group, element, 32-bit length)
    u32: Callable[..., tuple[Any, ...]]


def _encoding(implicit: bool, prefix: Literal["<", ">"]) -> _Encoding:
    return _Encoding(
        implicit=implicit,
        byteorder="little" if prefix == "<" else "big",
        tag_vr_short=struct.Struct(prefix + "HH2sH").unpack_from,
        tag_long=struct.Struct(prefix + "HHI").unpack_from,
        u32=struct.Struct(prefix + "I").unpack_from,
    )


_EXPLICIT_LE = _encoding(False, "<")
_IMPLICIT_LE = _encoding(True, "<")
_EXPLICIT_BE = _encoding(False, ">")


def _dataset_encoding(ts: str) -> _Encoding:
    """How the data set of a transfer syntax we accept is encoded (deflated: once inflated)."""
    if ts not in _ACCEPTED:
        raise Unacceptable(f"transfer syntax {ts[:40]} is not one Loupe stores")
    if ts == ImplicitVRLittleEndian:
        return _IMPLICIT_LE
    if ts == ExplicitVRBigEndian:
        return _EXPLICIT_BE
    return _EXPLICIT_LE


_ACCEPTED = frozenset(ACCEPTED_TRANSFER_SYNTAXES)
_VIDEO = frozenset(VIDEO_TRANSFER_SYNTAXES)

_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_SHORT_VRS = frozenset(
    (
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    )
)  # fmt: skip
# Binary VRs: a value's length is a multiple of this.
_UNIT: dict[bytes | None, int] = {
    b"AT": 4, b"FL": 4, b"FD": 8, b"OD": 8, b"OF": 4, b"OL": 4, b"OV": 8, b"OW": 2,
    b"SL": 4, b"SS": 2, b"SV": 8, b"UL": 4, b"US": 2, b"UV": 8,
}  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _implicit_vr(tag: int) -> bytes | None:
    """An implicit VR element's VR from the data dictionary; None for private or unknown
    elements. Where the dictionary allows several ("US or SS"), one with the same value size,
    else OB (no size to check)."""
    try:
        text = dictionary_VR(tag)
    except KeyError:
        return None
    options = [v.strip().encode("ascii") for v in text.split(" or ")]
    if len(options) == 1:
        return options[0]
    units = {_UNIT.get(v) for v in options}
    return options[0] if len(units) == 1 else b"OB"


# -- the walk ---------------------------------------------------------------------------------
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))  # Pixel, Float, Double Float


@dataclass
class _TopLevel:
    """What the walk of the top-level data set collects."""

    values: dict[int, tuple[bytes, bytes | None]] = field(default_factory=dict)
    pixel_tag: int | None = None
    pixel_length: int = 0  # native pixel data: its value length
    basic_offset_table: bytes = b""  # encapsulated pixel data ...
    fragment_starts: list[int] | None = None  # ... where its fragments start


def _walk(
    data: bytes,
    pos: int,
    end: int,
    enc: _Encoding,
    depth: int,
    top: _TopLevel | None,
    *,
    delimited: bool = False,
    open_end: bool = False,
) -> int:
    """Walk the elements of one data set or item from `pos`; return the offset after it.

    The top-level data set (`top` given, values collected there) and an item of defined
    length end exactly at `end`; an item of undefined length (`delimited`) at its delimiter.
    With `open_end` (`data` is only the beginning of the data set), top-level pixel data of
    defined length running past `end` ends the walk: the offset returned is where it says the
    data set ends.
    """
    tag_vr_short, u32 = enc.tag_vr_short, enc.u32
    implicit = enc.implicit
    while pos < end:
        if pos + 8 > end:
            raise Unacceptable(f"truncated in an element header at byte {pos}")
        group, elem, vr_or_none, length = tag_vr_short(data, pos)
        tag = (group << 16) | elem
        vr: bytes | None = vr_or_none
        if group == 0xFFFE:
            if delimited and tag == _ITEM_END:
                return pos + 8
            raise Unacceptable(f"item tag {_tag(tag)} where an element belongs")
        if implicit:
            vr = _implicit_vr(tag)
            length = u32(data, pos + 4)[0]
            pos += 8
        elif vr in _LONG_VRS:
            if pos + 12 > end:
                raise Unacceptable(f"truncated in the header of element {_tag(tag)}")
            length = u32(data, pos + 8)[0]
            pos += 12
        elif vr in _SHORT_VRS:
            pos += 8
        else:
            raise Unacceptable(f"element {_tag(tag)} has unknown VR {vr!r}")
        if length == _UNDEFINED:
            if vr == b"SQ" or vr == b"UN" or (vr is None and tag not in _PIXEL_TAGS):
                # UN of undefined length holds a sequence in implicit VR little endian
                # (PS3.5 6.2.2); in implicit VR an unknown element of undefined length is one.
                inner = _IMPLICIT_LE if vr == b"UN" else enc
                pos = _sequence(data, pos, end, inner, depth + 1, tag, None)
            elif tag == _PIXEL_DATA and not implicit and vr in (b"OB", b"OW"):
                pos, offsets, starts = _fragments(data, pos, end, enc, top is not None)
                if top is not None and top.pixel_tag is None:
                    top.pixel_tag = tag
                    top.basic_offset_table = offsets
                    top.fragment_starts = starts
            else:
                raise Unacceptable(
                    f"element {_tag(tag)} has undefined length (only sequences and "
                    "encapsulated Pixel Data may)"
                )
            continue
        if pos + length > end:
            if open_end and top is not None and tag in _PIXEL_TAGS and top.pixel_tag is None:
                top.pixel_tag = tag
                top.pixel_length = length
                return int(pos + length)  # the rest of the pixels is still to come
            raise Unacceptable(f"truncated in element {_tag(tag)} ({end - pos} of {length} bytes)")
        if vr == b"SQ":
            _sequence(data, pos, end, enc, depth + 1, tag, pos + length)
        elif length % _UNIT.get(vr, 1):
            raise Unacceptable(
                f"element {_tag(tag)} ({vr!r}) has {length} bytes, not a multiple of {_UNIT[vr]}"
            )
        if top is not None:
            if tag in _PIXEL_TAGS:
                if top.pixel_tag is None:
                    top.pixel_tag = tag
                    top.pixel_length = length
            elif top.pixel_tag is None and tag in _COLLECTED:
                # Like read_header (stop_before_pixels): nothing after the pixels counts.
                top.values[tag] = (data[pos : pos + length], vr)
        pos += length
    if delimited:
        raise Unacceptable("truncated: an item of undefined length has no delimiter")
    return pos


def _sequence(
    data: bytes, pos: int, end: int, enc: _Encoding, depth: int, seq: int, defined_end: int | None
) -> int:
    """Walk the items of sequence `seq` (ending at `defined_end`, or at its delimiter)."""
    if depth > MAX_SEQUENCE_DEPTH:
        raise Unacceptable(f"sequences nested more than {MAX_SEQUENCE_DEPTH} levels deep")
    stop = end if defined_end is None else defined_end
    tag_long = enc.tag_long
    while defined_end is None or pos < defined_end:
        if pos + 8 > stop:
            raise Unacceptable(f"truncated in sequence {_tag(seq)}")
        group, elem, length = tag_long(data, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQUENCE_END and defined_end is None:
            return pos
        if tag != _ITEM:
            raise Unacceptable(f"sequence {_tag(seq)} holds {_tag(tag)} where an item belongs")
        if length == _UNDEFINED:
            pos = _walk(data, pos, stop, enc, depth, None, delimited=True)
        elif pos + length > stop:
            raise Unacceptable(f"truncated in an item of sequence {_tag(seq)}")
        else:
            _walk(data, pos, pos + length, enc, depth, None)
            pos += length
    return pos


def _fragments(
    data: bytes, pos: int, end: int, enc: _Encoding, keep: bool
) -> tuple[int, bytes, list[int] | None]:
    """Walk encapsulated pixel data (PS3.5 A.4): the Basic Offset Table item, fragments of
    defined length, the sequence delimiter. (offset after it, the table, with `keep` where
    each fragment's item starts, counted from the first fragment's as the table counts)."""
    tag_long = enc.tag_long
    table: bytes | None = None
    first = 0
    starts: list[int] | None = [] if keep else None
    while True:
        if pos + 8 > end:
            raise Unacceptable("truncated in Pixel Data (7FE0,0010): no sequence delimiter")
        group, elem, length = tag_long(data, pos)
        tag = (group << 16) | elem
        if tag == _SEQUENCE_END:
            pos += 8
            break
        if tag != _ITEM:
            raise Unacceptable(f"Pixel Data (7FE0,0010) holds {_tag(tag)} where an item belongs")
        if length == _UNDEFINED:
            raise Unacceptable("Pixel Data (7FE0,0010) has a fragment of undefined length")
        if pos + 8 + length > end:
            raise Unacceptable(
                f"truncated in a fragment of Pixel Data (7FE0,0010) "
                f"({max(end - pos - 8, 0)} of {length} bytes)"
            )
        if table is None:
            table = data[pos + 8 : pos + 8 + length]
            first = pos + 8 + length
        elif starts is not None:
            starts.append(pos - first)
        pos += 8 + length
    if table is None:
        raise Unacceptable("Pixel Data (7FE0,0010) is encapsulated without a Basic Offset Table")
    return pos, table, starts


# -- what the SOP class needs -----------------------------------------------------------------
_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018
_STUDY_INSTANCE, _SERIES_INSTANCE = 0x0020000D, 0x0020000E
_REQUIRED_UIDS = (
    (_SOP_INSTANCE, "SOP Instance UID"),
    (_SOP_CLASS, "SOP Class UID"),
    (_STUDY_INSTANCE, "Study Instance UID"),
    (_SERIES_INSTANCE, "Series Instance UID"),
)
_SAMPLES, _PHOTOMETRIC, _FRAMES = 0x00280002, 0x00280004, 0x00280008
_ROWS, _COLUMNS, _BITS_ALLOCATED = 0x00280010, 0x00280011, 0x00280100
_IMAGE_ATTRIBUTES = (
    (_ROWS, "Rows"),
    (_COLUMNS, "Columns"),
    (_BITS_ALLOCATED, "Bits Allocated"),
    (_SAMPLES, "Samples per Pixel"),
)
# Storage SOP classes whose IOD requires pixel data: "... Image Storage" by name, and these.
_IMAGE_CLASSES = frozenset(
    {str(uid) for keyword, uid in _STORAGE_CLASSES.items() if "ImageStorage" in keyword}
    | {
        "1.2.840.10008.5.1.4.1.1.6.2",  # Enhanced US Volume
        "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
        "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
        "1.2.840.10008.5.1.4.1.1.66.7",  # Label Map Segmentation
        "1.2.840.10008.5.1.4.1.1.66.8",  # Height Map Segmentation
        "1.2.840.10008.5.1.4.1.1.81.1",  # Ophthalmic Thickness Map
        "1.2.840.10008.5.1.4.1.1.82.1",  # Corneal Topography Map
    }
)


def _uid(raw: bytes) -> str:
    return raw.rstrip(b"\x00 ").decode("ascii", errors="replace").strip()


def _one_us(top: _TopLevel, tag: int, name: str, byteorder: Literal["little", "big"]) -> int:
    raw = top.values[tag][0]
    if len(raw) != 2:
        raise Unacceptable(f"{name} {_tag(tag)} must hold one value", STATUS_DATASET_MISMATCH)
    return int.from_bytes(raw, byteorder)


def _frames(top: _TopLevel) -> int:
    raw = top.values.get(_FRAMES, (b"", None))[0]
    text = raw.decode("ascii", errors="replace").strip(" \x00")
    if not text:
        return 1
    try:
        frames = int(text)
    except ValueError:
        frames = 0
    if frames < 1:
        raise Unacceptable(
            "Number of Frames (0028,0008) is not a positive integer", STATUS_DATASET_MISMATCH
        )
    return frames


def _check_needs(top: _TopLevel, ts: str, byteorder: Literal["little", "big"]) -> None:
    """What the SOP class needs besides decodable elements (module docstring)."""
    values = top.values
    for tag, name in _REQUIRED_UIDS:
        if not _uid(values.get(tag, (b"", None))[0]):
            raise Unacceptable(f"{name} {_tag(tag)} is missing", STATUS_DATASET_MISMATCH)
    if top.pixel_tag is None:
        if _uid(values[_SOP_CLASS][0]) in _IMAGE_CLASSES:
            raise Unacceptable(
                "image SOP class without Pixel Data (7FE0,0010)", STATUS_DATASET_MISMATCH
            )
        if _ROWS in values:
            raise Unacceptable("Rows (0028,0010) without Pixel Data", STATUS_DATASET_MISMATCH)
        return
    for tag, name in _IMAGE_ATTRIBUTES:
        if tag not in values:
            raise Unacceptable(
                f"{name} {_tag(tag)} is missing, Pixel Data needs it", STATUS_DATASET_MISMATCH
            )
    rows = _one_us(top, _ROWS, "Rows", byteorder)
    columns = _one_us(top, _COLUMNS, "Columns", byteorder)
    bits = _one_us(top, _BITS_ALLOCATED, "Bits Allocated", byteorder)
    samples = _one_us(top, _SAMPLES, "Samples per Pixel", byteorder)
    frames = _frames(top)
    if not rows or not columns or not samples:
        raise Unacceptable("Rows, Columns or Samples per Pixel is 0", STATUS_DATASET_MISMATCH)
    starts = top.fragment_starts
    if starts is None:  # native
        if ts in ENCAPSULATED_SYNTAXES:
            raise Unacceptable(f"Pixel Data {_tag(top.pixel_tag)} not encapsulated")
        if bits != 1 and (bits == 0 or bits % 8):
            raise Unacceptable(
                f"Bits Allocated (0028,0100) is {bits}: 1 or a multiple of 8",
                STATUS_DATASET_MISMATCH,
            )
        count = rows * columns * samples * frames
        needed = (count + 7) // 8 if bits == 1 else count * (bits // 8)
        photometric = values.get(_PHOTOMETRIC, (b"", None))[0].strip(b" \x00")
        if photometric == b"YBR_FULL_422":  # two samples' worth per pixel (PS3.3 C.7.6.3.1.2)
            needed = needed // 3 * 2
        if top.pixel_length < needed:
            raise Unacceptable(
                f"Pixel Data {_tag(top.pixel_tag)} has {top.pixel_length} bytes, the image "
                f"needs {needed}",
                STATUS_DATASET_MISMATCH,
            )
        return
    if ts not in ENCAPSULATED_SYNTAXES:
        raise Unacceptable("encapsulated Pixel Data (7FE0,0010) in a native transfer syntax")
    if not starts:
        raise Unacceptable("Pixel Data (7FE0,0010) has no fragment", STATUS_DATASET_MISMATCH)
    if ts in _VIDEO:
        return  # one stream, in as many fragments as the sender chose
    if len(starts) < frames:
        raise Unacceptable(
            f"{len(starts)} fragments of Pixel Data for {frames} frames", STATUS_DATASET_MISMATCH
        )
    table = top.basic_offset_table
    if table:
        if len(table) != 4 * frames:
            raise Unacceptable(
                f"Basic Offset Table has {len(table) // 4} entries for {frames} frames",
                STATUS_DATASET_MISMATCH,
            )
        offsets = struct.unpack(f"<{frames}I", table)
        known = set(starts)
        if (
            offsets[0] != 0
            or any(o not in known for o in offsets)
            or (list(offsets) != sorted(set(offsets)))
        ):
            raise Unacceptable(
                "Basic Offset Table points elsewhere than its fragments", STATUS_DATASET_MISMATCH
            )


# -- the indexed attributes -------------------------------------------------------------------
# Indexed attributes: tag -> (InstanceHeader field, expected VR).
_WANTED: dict[int, tuple[str, bytes]] = {
    0x00080016: ("sop_class_uid", b"UI"),
    0x00080018: ("sop_instance_uid", b"UI"),
    0x00080020: ("study_date", b"DA"),
    0x00080030: ("study_time", b"TM"),
    0x00080050: ("accession_number", b"SH"),
    0x00080060: ("modality", b"CS"),
    0x00080090: ("referring_physician_name", b"PN"),
    0x00081030: ("study_description", b"LO"),
    0x0008103E: ("series_description", b"LO"),
    0x00100010: ("patient_name", b"PN"),
    0x00100020: ("patient_id", b"LO"),
    0x00100030: ("patient_birth_date", b"DA"),
    0x00100040: ("patient_sex", b"CS"),
    0x00180015: ("body_part_examined", b"CS"),
    0x0020000D: ("study_instance_uid", b"UI"),
    0x0020000E: ("series_instance_uid", b"UI"),
    0x00200010: ("study_id", b"SH"),
    0x00200011: ("series_number", b"IS"),
    0x00200013: ("instance_number", b"IS"),
    0x00200052: ("frame_of_reference_uid", b"UI"),
    0x00280008: ("number_of_frames", b"IS"),
    0x00280010: ("rows", b"US"),
    0x00280011: ("columns", b"US"),
}
_SPECIFIC_CHARACTER_SET = 0x00080005
_COLLECTED = frozenset((*_WANTED, _SPECIFIC_CHARACTER_SET, _SAMPLES, _PHOTOMETRIC, _BITS_ALLOCATED))
# Character sets in which printable ASCII bytes decode to themselves.
_ASCII_COMPATIBLE = frozenset(
    ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126",
     "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", "ISO_IR 192")
)  # fmt: skip


def _text(raw: bytes, vr: bytes) -> str:
    if vr == b"UI":
        raw = raw.rstrip(b"\x00")
    if raw and (not raw.isascii() or b"\\" in raw or not raw.decode("ascii").isprintable()):
        raise _NotFast  # multi-valued or non-ASCII: pydicom's conversion decides
    return raw.decode("ascii").strip()


def _int_value(raw: bytes, vr: bytes) -> int | None:
    if vr == b"US":
        if len(raw) == 0:
            return None
        if len(raw) != 2:
            raise _NotFast
        return int.from_bytes(raw, "little")
    text = _text(raw, vr)
    if not text:
        return None
    digits = text[1:] if text[0] in "+-" else text
    if not digits.isdigit() or not digits.isascii():
        raise _NotFast
    return int(text)


def _header(top: _TopLevel, ts: str, enc: _Encoding) -> InstanceHeader | None:
    """The indexed attributes from the walk, or None where pydicom must read them."""
    if enc.byteorder != "little":
        return None
    try:
        charset = top.values.get(_SPECIFIC_CHARACTER_SET)
        if charset is not None and _text(charset[0], b"CS") not in _ASCII_COMPATIBLE:
            return None
        fields: dict[str, Any] = {}
        for tag, (name, expected_vr) in _WANTED.items():
            found = top.values.get(tag)
            if found is None:
                continue
            raw, vr = found
            if vr is not None and vr != expected_vr:
                return None
            if expected_vr in (b"IS", b"US"):
                fields[name] = _int_value(raw, expected_vr)
            else:
                fields[name] = _text(raw, expected_vr)
        return InstanceHeader(transfer_syntax_uid=ts, **fields)
    except (_NotFast, UnicodeDecodeError):
        return None


# -- whole objects and the start of received ones ---------------------------------------------
def _read_meta(data: bytes) -> tuple[str, int]:
    """(transfer syntax, offset after the file meta) of a Part 10 object."""
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Unacceptable("not a DICOM Part 10 object (no DICM prefix)")
    # File meta information: explicit VR little endian, group 0002.
    unpack = _EXPLICIT_LE.tag_vr_short
    ts = ""
    pos, end = 132, len(data)
    while pos + 8 <= end and data[pos : pos + 2] == b"\x02\x00":
        _group, elem, vr, length = unpack(data, pos)
        if vr in _LONG_VRS:
            if pos + 12 > end:
                raise Unacceptable("truncated in the file meta information")
            length = _EXPLICIT_LE.u32(data, pos + 8)[0]
            pos += 12
        elif vr in _SHORT_VRS:
            pos += 8
        else:
            raise Unacceptable(f"file meta element (0002,{elem:04X}) has unknown VR {vr!r}")
        if length == _UNDEFINED or pos + length > end:
            raise Unacceptable(f"truncated in file meta element (0002,{elem:04X})")
        if elem == 0x0010:
            ts = _uid(data[pos : pos + length])
        pos += length
    if not ts:
        raise Unacceptable("file meta without Transfer Syntax UID (0002,0010)")
    return ts, pos


def _inflate(data: bytes, pos: int) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate (PS3.5 A.5)
    try:
        body = inflater.decompress(data[pos:], MAX_INFLATED_BYTES)
    except zlib.error as exc:
        raise Unacceptable("deflated data set does not inflate") from exc
    if inflater.unconsumed_tail:
        raise Unacceptable(f"deflated data set inflates to more than {MAX_INFLATED_BYTES} bytes")
    if not inflater.eof:
        raise Unacceptable("truncated in the deflated data set")
    return body


def check_object(data: bytes) -> InstanceHeader | None:
    """Fully parse a Part 10 object (module docstring); raise Unacceptable if it cannot be
    accepted. Its indexed attributes, or None where pydicom must read them (the object is
    checked either way)."""
    ts, pos = _read_meta(data)
    enc = _dataset_encoding(ts)
    if ts == DeflatedExplicitVRLittleEndian:
        data, pos = _inflate(data, pos), 0
    top = _TopLevel()
    try:
        _walk(data, pos, len(data), enc, 0, top)
    except struct.error as exc:  # not expected: every read is bounds-checked first
        raise Unacceptable("truncated or malformed data set") from exc
    _check_needs(top, ts, enc.byteorder)
    return _header(top, ts, enc)


# How much of a data set's first fragment check_start copies and walks.
_EARLY_BYTES = 64 * 1024


def check_start(
    transfer_syntax: str, first: bytes | memoryview
) -> tuple[InstanceHeader, int] | None:
    """(header, length the data set announces) from the first fragment of a data set still
    arriving in `transfer_syntax`: every element before Pixel Data is in it and checked,
    native Pixel Data says where the data set ends. If what arrives ends exactly there, the
    object is fully parsed. None: check the whole data set once it is in (check_object),
    which also words any refusal."""
    found = _early(transfer_syntax, bytes(first[:_EARLY_BYTES]))
    if found is None and len(first) > _EARLY_BYTES:
        found = _early(transfer_syntax, bytes(first))
    return found


def _early(ts: str, data: bytes) -> tuple[InstanceHeader, int] | None:
    try:
        enc = _dataset_encoding(ts)
        if ts == DeflatedExplicitVRLittleEndian:
            return None
        top = _TopLevel()
        end = _walk(data, 0, len(data), enc, 0, top, open_end=True)
        _check_needs(top, ts, enc.byteorder)
    except (Unacceptable, struct.error):
        return None
    header = _header(top, ts, enc)
    return (header, end) if header is not None else None


def scan_elements(data: bytes, implicit: bool, tags: frozenset[int]) -> dict[int, bytes] | None:
    """Raw values of `tags` (indexed attributes only, see _WANTED) in one little endian data
    set, from one walk over its elements; None when it does not decode."""
    if not tags <= _WANTED.keys():
        raise ValueError("scan_elements reads indexed attributes only")
    top = _TopLevel()
    try:
        _walk(data, 0, len(data), _IMPLICIT_LE if implicit else _EXPLICIT_LE, 0, top)
    except (Unacceptable, struct.error):
        return None
    return {tag: value[0] for tag, value in top.values.items() if tag in tags}
