"""Presentation contexts: which SOP classes and transfer syntaxes Loupe proposes and accepts.

What our storage SCP accepts, on both receive paths (fast_store.py and pynetdicom's acceptor,
through `negotiate_storage`): any storage SOP class (standard, private or unknown, as an
archive must), but only in a transfer syntax of ACCEPTED_TRANSFER_SYNTAXES:
- DECODED_TRANSFER_SYNTAXES: the viewer decodes them (pydicom with the pylibjpeg, GDCM and
  Pillow plugins that pyproject.toml installs): native (uncompressed), JPEG, JPEG-LS,
  JPEG 2000, HTJ2K, RLE.
- VIDEO_TRANSFER_SYNTAXES (MPEG-2, MPEG-4 AVC/H.264, HEVC/H.265): stored as received and
  kept for forwarding, but the viewer does not decode them.
Any other (JPEG XL, JPIP, SMPTE ST 2110, multi-component JPEG 2000, a made-up UID) is refused
per presentation context at negotiation: result 4, "transfer syntaxes not supported".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.uid import (
    HEVCM10P51,
    HEVCMP51,
    HTJ2K,
    JPEG2000,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG4HP41,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP41F,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import sop_class as _sop_class_module
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)
from pynetdicom.presentation import negotiate_unrestricted as _pynetdicom_unrestricted
from pynetdicom.sop_class import _STORAGE_CLASSES

LOSSLESS_COMPRESSED_SYNTAXES: tuple[str, ...] = (
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    RLELossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
)
LOSSY_COMPRESSED_SYNTAXES: tuple[str, ...] = (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
    HTJ2K,
)
NATIVE_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
# Video endoscopy and the like: stored as received, not decoded by the viewer. The "F" ones
# are the fragmentable variants of the same streams.
VIDEO_TRANSFER_SYNTAXES: tuple[str, ...] = (
    MPEG2MPML,
    MPEG2MPMLF,
    MPEG2MPHL,
    MPEG2MPHLF,
    MPEG4HP41,
    MPEG4HP41F,
    MPEG4HP41BD,
    MPEG4HP41BDF,
    MPEG4HP422D,
    MPEG4HP422DF,
    MPEG4HP423D,
    MPEG4HP423DF,
    MPEG4HP42STEREO,
    MPEG4HP42STEREOF,
    HEVCMP51,
    HEVCM10P51,
)
DECODED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    LOSSLESS_COMPRESSED_SYNTAXES + LOSSY_COMPRESSED_SYNTAXES + NATIVE_SYNTAXES
)
# Pixel Data in these is encapsulated (PS3.5 A.4): fragments in items.
ENCAPSULATED_SYNTAXES: frozenset[str] = frozenset(
    LOSSLESS_COMPRESSED_SYNTAXES + LOSSY_COMPRESSED_SYNTAXES + VIDEO_TRANSFER_SYNTAXES
)
# Everything we store, in the order we choose among those a sender proposes in one context,
# whatever its own order. Native first, as DCMTK's storescp and Orthanc choose: one context
# listing a compressed syntax before the native ones (storescu +C -xs does) comes from a
# sender that may hold native images and cannot compress them, and a sender that can may
# compress lossily. Senders that want a compressed object stored as it is propose its
# syntax in a context of its own (storescu, Orthanc and pynetdicom do by default), and we
# store it as received: the compressed syntaxes are accepted wherever they are proposed.
ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    NATIVE_SYNTAXES
    + LOSSLESS_COMPRESSED_SYNTAXES
    + LOSSY_COMPRESSED_SYNTAXES
    + VIDEO_TRANSFER_SYNTAXES
)
_PREFERENCE = {ts: rank for rank, ts in enumerate(ACCEPTED_TRANSFER_SYNTAXES)}
UNCOMPRESSED_SYNTAXES: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

# Service SOP classes (PS3.4), spelled out: pynetdicom.sop_class builds them dynamically,
# which type checkers cannot see.
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
PATIENT_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.1.2")
PATIENT_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.1.3")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")

# Upper limit of presentation contexts in one A-ASSOCIATE-RQ (PS3.8: context IDs 1..255, odd).
MAX_PROPOSED_CONTEXTS = 128

# Composite storage SOP classes Loupe writes itself (reports and related objects).
REPORT_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key Object Selection Document
    "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
    "1.2.840.10008.5.1.4.1.1.30",  # Parametric Map
)


def storage_scp_contexts() -> list[PresentationContext]:
    """Every storage SOP class pynetdicom knows, each with all accepted transfer syntaxes."""
    return [
        build_context(cx.abstract_syntax, list(ACCEPTED_TRANSFER_SYNTAXES))
        for cx in AllStoragePresentationContexts
        if cx.abstract_syntax is not None
    ]


_STORAGE_UIDS = frozenset(str(uid) for uid in _STORAGE_CLASSES.values())


def is_storage_like(abstract_syntax: str) -> bool:
    """The split pynetdicom's unrestricted storage makes: storage, private or unknown."""
    uid = UID(abstract_syntax)
    return (
        uid.is_private or str(uid) in _STORAGE_UIDS or not hasattr(_sop_class_module, uid.keyword)
    )


def choose_transfer_syntax(proposed: Iterable[str]) -> str | None:
    """The one we accept among a context's proposed transfer syntaxes (None: none of ours)."""
    ours = [str(ts) for ts in proposed if str(ts) in _PREFERENCE]
    return min(ours, key=_PREFERENCE.__getitem__) if ours else None


def negotiate_storage(
    rq_contexts: list[PresentationContext],
    ac_contexts: list[PresentationContext],
    roles: dict[UID, tuple[bool | None, bool | None]] | None = None,
) -> tuple[list[PresentationContext], list[Any]]:
    """Our answer to each proposed presentation context, on both receive paths.

    Storage-like contexts (any storage SOP class, private or unknown) are accepted with the
    transfer syntax `choose_transfer_syntax` picks, or refused with result 4 (PS3.8 9.3.3.2:
    "transfer-syntaxes-not-supported (provider rejection)") when none is ours. Everything
    else (Verification, Query/Retrieve) is negotiated against `ac_contexts` as pynetdicom
    does. pynetdicom's own unrestricted negotiation would accept whatever transfer syntax a
    storage context lists first; it still answers the roles and the other contexts here.
    """
    kept: list[PresentationContext] = []
    refused: list[PresentationContext] = []
    for rq in rq_contexts:
        if rq.abstract_syntax is None or not is_storage_like(rq.abstract_syntax):
            kept.append(rq)
            continue
        ts = choose_transfer_syntax(rq.transfer_syntax)
        cx = PresentationContext()
        cx.context_id = rq.context_id
        cx.abstract_syntax = rq.abstract_syntax
        if ts is None:
            cx.transfer_syntax = [rq.transfer_syntax[0]]
            cx.result = 0x04
            refused.append(cx)
        else:
            cx.transfer_syntax = [UID(ts)]
            kept.append(cx)
    result, reply_roles = _pynetdicom_unrestricted(kept, ac_contexts, roles)
    return sorted(result + refused, key=lambda cx: cx.context_id or 0), reply_roles


def contexts_for_sending(pairs: Iterable[tuple[str, str]]) -> list[PresentationContext]:
    """Contexts to propose for C-STORE of objects given as (SOP class, transfer syntax).

    Each SOP class is proposed once with the objects' own syntaxes first and the two
    uncompressed ones as fallbacks (pynetdicom can decompress only where a codec exists,
    so the stored syntax is always offered first).
    """
    by_class: dict[str, list[str]] = {}
    for sop_class, ts in pairs:
        syntaxes = by_class.setdefault(sop_class, [])
        if ts and ts not in syntaxes:
            syntaxes.append(ts)
    contexts: list[PresentationContext] = []
    for sop_class, syntaxes in by_class.items():
        # A context per stored syntax, so the peer can accept exactly what we have.
        for ts in syntaxes:
            contexts.append(build_context(UID(sop_class), [ts]))
        if ExplicitVRLittleEndian not in syntaxes or ImplicitVRLittleEndian not in syntaxes:
            contexts.append(
                build_context(UID(sop_class), [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
            )
    if len(contexts) > MAX_PROPOSED_CONTEXTS:
        raise ValueError(
            f"{len(by_class)} SOP classes need {len(contexts)} presentation contexts, "
            f"more than the {MAX_PROPOSED_CONTEXTS} one association allows; send in batches"
        )
    return contexts
