"""The C-STORE handler shared by our storage SCP and by C-GET: check, write as received, index.

Speed matters here: the peer waits for our response before it sends the next instance. The
common case (little endian, printable ASCII in the indexed attributes) is checked and indexed
in one pass over the element headers (`_fast_header`); everything else, and anything that pass
does not fully understand, goes through pydicom (`check_complete` + `read_header`), which also
words the refusals. bench/check_fast_header.py checks that both give the same header.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.uid import UID
from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from dicom_net.archive import ArchivePart, LocalArchive, StoredInstance
from dicom_net.errors import ArchiveError
from dicom_net.header import InstanceHeader, check_complete, read_header

log = logging.getLogger(__name__)

STATUS_SUCCESS = 0x0000
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_DATASET_MISMATCH = 0xA900
STATUS_CANNOT_UNDERSTAND = 0xC000


@dataclass
class IngestCounters:
    stored: int = 0
    replaced: int = 0
    refused: int = 0
    bytes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class IncomingInstance:
    """A data set arriving in fragments. Each fragment is written to a file in incoming/ as
    it comes (so the file is nearly complete when the last one lands: the sender waits for
    our response); the header is read from the first fragment. Fragments are not kept: the
    caller may reuse their memory once add() returns, and the rare data set whose header
    cannot be read from its first fragment is checked from the file (StoreIngest.finish)."""

    def __init__(
        self,
        archive: LocalArchive,
        *,
        calling_ae: str,
        message_id: int,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
    ):
        self.calling_ae = calling_ae
        self.sop_instance_uid = sop_instance_uid
        self.source = f"C-STORE from {calling_ae} (message {message_id})"
        self.transfer_syntax = transfer_syntax
        self.prefix = _part10_prefix(sop_class_uid, sop_instance_uid, transfer_syntax)
        self.fragments = 0
        self.size = 0
        self.part: ArchivePart | None = None
        self.error: ArchiveError | None = None
        self.early: tuple[InstanceHeader, int] | None = None  # from the first fragment
        if self.prefix is not None:
            try:
                self.part = archive.open_part(source=self.source)
                self.part.write(self.prefix)
            except ArchiveError as exc:
                self.error = exc

    def add(self, fragment: bytes | memoryview) -> None:
        if not self.fragments and self.prefix is not None:
            self.early = header_from_start(self.transfer_syntax, fragment)
        self.fragments += 1
        self.size += len(fragment)
        if self.part is not None and self.error is None:
            try:
                self.part.write(fragment)
            except ArchiveError as exc:  # reported when the data set is complete
                self.error = exc

    def discard(self) -> None:
        """Remove the partial file (a refused or abandoned data set)."""
        if self.part is not None:
            self.part.discard()
            self.part = None

    def read_back(self) -> bytes:
        """Everything written so far (our file meta and the data set), from the file."""
        assert self.part is not None
        with open(self.part.path, "rb") as fh:
            return fh.read()


class StoreIngest:
    """Callable for EVT_C_STORE. Returns fast: one write, one rename, one index row."""

    def __init__(
        self,
        archive: LocalArchive,
        *,
        node_for_ae: Callable[[str], str | None] | None = None,
        on_stored: Callable[[StoredInstance], None] | None = None,
    ):
        self.archive = archive
        self.node_for_ae = node_for_ae
        self.on_stored = on_stored
        self.counters = IngestCounters()

    def __call__(self, event: Any) -> int:
        """pynetdicom's EVT_C_STORE handler.

        With STORE_RECV_CHUNKED_DATASET (ae.py) pynetdicom has written the data set to a
        temporary file as it arrived: it is copied into the archive in pieces, never held
        whole in memory, and the temporary file removed (pynetdicom removes it only on the
        acceptor side, not for C-GET)."""
        req = event.request
        try:
            spooled: Path | None = event.dataset_path
        except AttributeError:  # not spooled
            spooled = None
        incoming: IncomingInstance | None = None
        try:
            incoming = self.begin(
                calling_ae=str(event.assoc.requestor.ae_title),
                message_id=int(req.MessageID),
                sop_class_uid=str(req.AffectedSOPClassUID),
                sop_instance_uid=str(req.AffectedSOPInstanceUID),
                transfer_syntax=str(event.context.transfer_syntax),
            )
            if spooled is None:
                with req.DataSet.getbuffer() as dataset:
                    incoming.add(dataset)
            else:
                _copy_spooled(spooled, incoming)
            status, _comment = self.finish(incoming)
        except Exception as exc:  # pynetdicom raises various errors for unparsable requests
            if incoming is not None:
                incoming.discard()
            source = f"C-STORE from {str(event.assoc.requestor.ae_title).strip()}"
            return self._refuse(
                source, f"cannot decode the request ({exc})", STATUS_CANNOT_UNDERSTAND
            )
        finally:
            if spooled is not None:
                with contextlib.suppress(OSError):
                    os.unlink(spooled)
        return status

    def begin(
        self,
        *,
        calling_ae: str,
        message_id: int,
        sop_class_uid: str,
        sop_instance_uid: str,
        transfer_syntax: str,
    ) -> IncomingInstance:
        """Start receiving a data set: its fragments go to a file in incoming/ as they come.

        Used by pynetdicom's handler (above), through it by C-GET, and by the fast storage
        path (fast_store.py) as fragments arrive."""
        return IncomingInstance(
            self.archive,
            calling_ae=calling_ae.strip(),
            message_id=message_id,
            sop_class_uid=sop_class_uid.strip(),
            sop_instance_uid=sop_instance_uid.strip(),
            transfer_syntax=transfer_syntax,
        )

    def finish(self, incoming: IncomingInstance) -> tuple[int, str]:
        """The last fragment has arrived: check the data set, then keep it (move the file into
        place and index it) or refuse it (remove the file). (DIMSE status, error comment)."""
        try:
            return self._finish(incoming)
        finally:
            incoming.discard()  # no-op once committed

    def _finish(self, incoming: IncomingInstance) -> tuple[int, str]:
        source = incoming.source
        prefix = incoming.prefix
        if prefix is None:
            reason = "the request's UIDs are not plain ASCII"
            return self._refuse(source, reason, STATUS_CANNOT_UNDERSTAND), reason
        if incoming.error is not None or incoming.part is None:
            exc = incoming.error or ArchiveError(f"{source}: nothing was written")
            log.error("%s", exc)
            reason = "cannot write to the local archive (disk full or not writable?)"
            return self._refuse(source, str(exc), STATUS_OUT_OF_RESOURCES), reason
        try:
            early = incoming.early
            header: InstanceHeader | None = None
            if early is not None and early[1] == incoming.size:
                header = early[0]
            else:  # the general path, on the whole object as written
                try:
                    whole = incoming.read_back()
                except OSError as exc:
                    raise ArchiveError(f"{source}: cannot read back {exc.filename}") from exc
                header = _fast_header(whole)
                if header is None:
                    check_complete(whole, source=source)
                    header = read_header(whole, source=source)
        except ArchiveError as exc:
            return self._refuse(source, str(exc), STATUS_CANNOT_UNDERSTAND), str(exc)
        if header.sop_instance_uid != incoming.sop_instance_uid:
            reason = (
                "SOP Instance UID in the data set differs from the request's Affected SOP "
                "Instance UID"
            )
            return self._refuse(source, reason, STATUS_DATASET_MISMATCH), reason
        node = self.node_for_ae(incoming.calling_ae) if self.node_for_ae else None
        try:
            assert incoming.part is not None
            stored = self.archive.commit_part(
                incoming.part,
                header=header,
                source_ae=incoming.calling_ae,
                source_node=node,
                source=source,
            )
            incoming.part = None
        except ArchiveError as exc:
            log.error("%s", exc)
            reason = "cannot write to the local archive (disk full or not writable?)"
            return self._refuse(source, str(exc), STATUS_OUT_OF_RESOURCES), reason
        with self.counters.lock:
            self.counters.stored += 1
            self.counters.bytes += len(prefix) + incoming.size
            if stored.replaced:
                self.counters.replaced += 1
        if self.on_stored is not None:
            try:
                self.on_stored(stored)
            except Exception:  # a listener must never fail the store
                log.exception("on_stored listener failed")
        return STATUS_SUCCESS, ""

    def _refuse(self, source: str, reason: str, status: int) -> int:
        with self.counters.lock:
            self.counters.refused += 1
        log.warning("refused %s: %s (status 0x%04X)", source, reason, status)
        return status


# Pieces in which a data set spooled by pynetdicom is copied into the archive.
_SPOOL_CHUNK = 1 << 20
# pynetdicom's spooled file: preamble, "DICM", then (0002,0000) UL, 4 bytes, the meta length.
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"


def _copy_spooled(path: Path, incoming: IncomingInstance) -> None:
    """The data set of a Part 10 file pynetdicom wrote, into `incoming`, 1 MiB at a time."""
    with open(path, "rb") as fh:
        head = fh.read(144)
        if len(head) < 144 or head[128:132] != b"DICM" or head[132:140] != _META_GROUP_LENGTH:
            raise ArchiveError(f"{incoming.source}: pynetdicom's spooled file has no file meta")
        fh.seek(144 + struct.unpack("<I", head[140:144])[0])
        while chunk := fh.read(_SPOOL_CHUNK):
            incoming.add(chunk)


def discard_partial_spool(assoc: Any) -> None:
    """Remove the temporary file of a data set pynetdicom was still spooling when `assoc`
    (a pynetdicom Association) ended: pynetdicom removes it only after the C-STORE handler has
    run, so a peer that aborts or vanishes mid-data-set would leave it on disk."""
    message = getattr(assoc.dimse, "message", None)
    spool = getattr(message, "_data_set_file", None)
    if spool is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(spool.name)
    if not assoc.dul.is_alive():  # nothing writes to it any more
        with contextlib.suppress(OSError, ValueError):
            spool.close()


# -- Part 10 bytes as received ----------------------------------------------------------------
_PREAMBLE = b"\x00" * 128 + b"DICM"


def _ui(tag: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, b"UI", len(value)) + value


@functools.lru_cache(maxsize=1)
def _implementation_elements() -> bytes:
    version = PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")
    if len(version) % 2:
        version += b" "
    return _ui(0x00020012, PYNETDICOM_IMPLEMENTATION_UID) + (
        struct.pack("<HH2sH", 2, 0x13, b"SH", len(version)) + version
    )


def _part10_prefix(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str) -> bytes | None:
    """Preamble + file meta for a data set received as-is (None: UIDs not plain ASCII).

    Byte for byte what pynetdicom's `event.encoded_dataset(include_meta=True)` puts before
    the data set, without building and encoding a pydicom FileMetaDataset per instance.
    """
    try:
        elements = b"".join(
            (
                b"\x02\x00\x01\x00OB\x00\x00\x02\x00\x00\x00\x00\x01",
                _ui(0x00020002, sop_class_uid),
                _ui(0x00020003, sop_instance_uid),
                _ui(0x00020010, transfer_syntax),
                _implementation_elements(),
            )
        )
    except (UnicodeEncodeError, struct.error):
        return None
    group_length = struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(elements))
    return b"".join((_PREAMBLE, group_length, elements))


# -- one-pass completeness check and header --------------------------------------------------
class _NotFast(Exception):
    """The fast pass cannot vouch for this object: use the pydicom path."""


_LONG_VRS = frozenset(
    (b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV")
)
_SHORT_VRS = frozenset(
    (
        b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT",
        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
    )
)  # fmt: skip
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
# Character sets in which printable ASCII bytes decode to themselves.
_ASCII_COMPATIBLE = frozenset(
    ("", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 126",
     "ISO_IR 127", "ISO_IR 138", "ISO_IR 144", "ISO_IR 148", "ISO_IR 166", "ISO_IR 192")
)  # fmt: skip
_REQUIRED = ("sop_instance_uid", "sop_class_uid", "series_instance_uid", "study_instance_uid")
_PIXEL_TAGS = frozenset((0x7FE00010, 0x7FE00008, 0x7FE00009))
_PIXELS_SEEN = -1  # key in `found`: a pixel data element has been passed
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
_MAX_DEPTH = 32
_unpack_tag_vr_short = struct.Struct("<HH2sH").unpack_from
_unpack_tag_long = struct.Struct("<HHI").unpack_from
_unpack_u32 = struct.Struct("<I").unpack_from


@functools.lru_cache(maxsize=64)
def _dataset_encoding(ts: str) -> bool | None:
    """True: implicit VR little endian; False: explicit VR little endian (native or
    encapsulated pixel data); None: anything else (big endian, deflated, unknown)."""
    uid = UID(ts)
    if not uid.is_transfer_syntax or uid.is_deflated or not uid.is_little_endian:
        return None
    return bool(uid.is_implicit_VR)


def _walk(
    data: bytes,
    pos: int,
    end: int,
    implicit: bool,
    found: dict[int, tuple[bytes, bytes | None]] | None,
    depth: int,
    open_end: bool = False,
) -> int:
    """Walk the elements of one data set from `pos`; return the offset after it.

    At the top level (`found` given) the data set must end exactly at `end` and the wanted
    values are collected; inside an item it ends at the item delimiter. With `open_end`
    (`data` is only the beginning of the data set), Pixel Data of defined length running past
    `end` ends the walk: the offset returned is where it says the data set ends.
    """
    if depth > _MAX_DEPTH:
        raise _NotFast
    while pos < end:
        if pos + 8 > end:
            raise _NotFast
        group, elem, vr, short_len = _unpack_tag_vr_short(data, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE:
            if found is None and tag == _ITEM_END:
                return pos + 8
            raise _NotFast
        if implicit:
            vr = None
            length = _unpack_u32(data, pos + 4)[0]
            pos += 8
        elif vr in _LONG_VRS:
            if pos + 12 > end:
                raise _NotFast
            length = _unpack_u32(data, pos + 8)[0]
            pos += 12
        elif vr in _SHORT_VRS:
            length = short_len
            pos += 8
        else:
            raise _NotFast
        if found is not None:
            if tag in _PIXEL_TAGS:
                found[tag] = (b"", vr)
                found[_PIXELS_SEEN] = (b"", None)
                if open_end and length != _UNDEFINED and pos + length > end:
                    return int(pos + length)  # the rest of the pixels is still to come
            elif _PIXELS_SEEN not in found and (tag in _WANTED or tag == _SPECIFIC_CHARACTER_SET):
                # Like read_header (stop_before_pixels): nothing after the pixels is indexed.
                if length == _UNDEFINED or pos + length > end:
                    raise _NotFast
                found[tag] = (data[pos : pos + length], vr)
        if length == _UNDEFINED:
            if vr not in (None, b"SQ", b"OB", b"OW"):
                raise _NotFast  # e.g. UN of undefined length: implicit VR inside
            pos = _skip_items(data, pos, end, implicit, depth + 1)
            continue
        if pos + length > end:
            raise _NotFast  # truncated
        pos += length
    if found is None:
        raise _NotFast  # an item of undefined length without its delimiter
    return pos


def _skip_items(data: bytes, pos: int, end: int, implicit: bool, depth: int) -> int:
    """Skip the items of a sequence or of encapsulated pixel data up to its delimiter."""
    while True:
        if pos + 8 > end:
            raise _NotFast
        group, elem, length = _unpack_tag_long(data, pos)
        tag = (group << 16) | elem
        pos += 8
        if tag == _SEQUENCE_END:
            return pos
        if tag != _ITEM:
            raise _NotFast
        if length == _UNDEFINED:
            pos = _walk(data, pos, end, implicit, None, depth)
        elif pos + length > end:
            raise _NotFast
        else:
            pos += length


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


def _fast_header(data: bytes) -> InstanceHeader | None:
    """Check that a Part 10 object is complete and read its indexed attributes, in one pass.

    Returns None when the object needs the general pydicom path: another transfer syntax,
    anything malformed or truncated (pydicom words the refusal), values whose conversion is
    not trivially the same as pydicom's.
    """
    meta = _read_meta(data)
    if meta is None:
        return None
    ts, end_of_meta = meta
    return _dataset_header(ts, data, end_of_meta)


def scan_elements(data: bytes, implicit: bool, tags: frozenset[int]) -> dict[int, bytes] | None:
    """Raw values of `tags` (indexed attributes only, see _WANTED) in one little endian data
    set, from one walk over its elements; None when the walk cannot vouch for it."""
    if not tags <= _WANTED.keys():
        raise ValueError("scan_elements reads indexed attributes only")
    found: dict[int, tuple[bytes, bytes | None]] = {}
    try:
        _walk(data, 0, len(data), implicit, found, 0)
    except (_NotFast, struct.error, ValueError):
        return None
    return {tag: value[0] for tag, value in found.items() if tag in tags}


# How much of a data set's first fragment the early header check copies and walks.
_EARLY_BYTES = 64 * 1024


def header_from_start(
    transfer_syntax: str, first: bytes | memoryview
) -> tuple[InstanceHeader, int] | None:
    """(header, total length the data set announces) from the first fragment of a data set
    still arriving (encoded in `transfer_syntax`): every element up to Pixel Data must be in it, and
    Pixel Data (defined length) tells where the data set ends. The receiver compares that
    with what arrived once the last fragment is in, so the walk happens while the rest is on
    its way. None: use the general path on the whole data set."""
    found = _header_walk(transfer_syntax, bytes(first[:_EARLY_BYTES]), 0, open_end=True)
    if found is None and len(first) > _EARLY_BYTES:
        found = _header_walk(transfer_syntax, bytes(first), 0, open_end=True)
    return found


def _read_meta(data: bytes) -> tuple[str, int] | None:
    """(transfer syntax, offset after the file meta) of a Part 10 object, or None."""
    try:
        if len(data) < 144 or data[128:132] != b"DICM":
            return None
        # File meta information: explicit VR little endian, group 0002.
        meta: dict[int, tuple[bytes, bytes | None]] = {}
        pos = 132
        end = len(data)
        while pos + 8 <= end and data[pos : pos + 2] == b"\x02\x00":
            _g, elem, vr, short_len = _unpack_tag_vr_short(data, pos)
            if vr in _LONG_VRS:
                if pos + 12 > end:
                    return None
                length = _unpack_u32(data, pos + 8)[0]
                pos += 12
            elif vr in _SHORT_VRS:
                length = short_len
                pos += 8
            else:
                return None
            if length == _UNDEFINED or pos + length > end:
                return None
            meta[elem] = (data[pos : pos + length], vr)
            pos += length
        if 0x0010 not in meta:
            return None
        ts = _text(meta[0x0010][0], b"UI")
        return (ts, pos) if ts else None
    except (_NotFast, struct.error, ValueError, UnicodeDecodeError):
        return None


def _dataset_header(ts: str, data: bytes, pos: int) -> InstanceHeader | None:
    """Walk the whole data set in data[pos:] (encoded in `ts`) and build its header, or None."""
    found = _header_walk(ts, data, pos, open_end=False)
    return found[0] if found is not None else None


def _header_walk(
    ts: str, data: bytes, pos: int, *, open_end: bool
) -> tuple[InstanceHeader, int] | None:
    """(header, offset where the data set ends) of the data set in data[pos:], or None."""
    try:
        implicit = _dataset_encoding(ts)
        if implicit is None:
            return None
        found: dict[int, tuple[bytes, bytes | None]] = {}
        end = _walk(data, pos, len(data), implicit, found, 0, open_end=open_end)
        found.pop(_PIXELS_SEEN, None)
        charset = found.pop(_SPECIFIC_CHARACTER_SET, None)
        if charset is not None and _text(charset[0], b"CS") not in _ASCII_COMPATIBLE:
            return None
        has_pixels = any(tag in found for tag in _PIXEL_TAGS)
        if 0x00280010 in found and not has_pixels:
            return None
        values: dict[str, Any] = {}
        for tag, (raw, vr) in found.items():
            if tag not in _WANTED:
                continue
            name, expected_vr = _WANTED[tag]
            if vr is not None and vr != expected_vr:
                return None
            if expected_vr in (b"IS", b"US"):
                values[name] = _int_value(raw, expected_vr)
            else:
                values[name] = _text(raw, expected_vr)
        if not all(values.get(k) for k in _REQUIRED):
            return None
        return InstanceHeader(transfer_syntax_uid=ts, **values), end
    except (_NotFast, struct.error, ValueError, UnicodeDecodeError):
        return None
