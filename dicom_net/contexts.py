"""Presentation contexts: which SOP classes and transfer syntaxes Loupe proposes and accepts."""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom.presentation import (
    AllStoragePresentationContexts,
    PresentationContext,
    build_context,
)

# What our storage SCP accepts. pynetdicom picks, for each proposed context, the first of
# *these* that the sender also proposed, so the encapsulated syntaxes come first: a sender
# offering a JPEG 2000 file with uncompressed fallbacks then sends it as is, and we store it
# as received (no decompression on their side, no re-compression anywhere). Senders of
# uncompressed images propose only uncompressed syntaxes and get Explicit VR Little Endian.
ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    JPEGLosslessSV1,
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    JPEGLSLossless,
    JPEG2000Lossless,
    RLELossless,
    "1.2.840.10008.1.2.4.201",  # HTJ2K Lossless
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    JPEG2000,
    "1.2.840.10008.1.2.4.203",  # HTJ2K
    "1.2.840.10008.1.2.4.100",  # MPEG2 Main Profile / Main Level (video endoscopy)
    "1.2.840.10008.1.2.4.102",  # MPEG-4 AVC/H.264 High Profile / Level 4.1
    "1.2.840.10008.1.2.4.103",  # MPEG-4 AVC/H.264 BD-compatible High Profile
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)
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
