"""Key Object Selection (title DCM 113000 "Of Interest"): the key images of a review.

Key images are the CT slice nearest each nodule's centre and the high-risk endoscopy frames,
for findings the reader did not reject. Never titled 113001 "Rejected for Quality Reasons":
that is an IHE IOCM instruction to hide the images, not a reader's disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import pydicom
from pydicom.sr.codedict import codes

from core.findings import Finding, ReviewStatus
from core.reports.measurement_groups import SourceImages

KOS_SERIES_NUMBER = 903
OF_INTEREST = codes.DCM.OfInterest  # (113000, DCM)


def key_images(
    findings: Sequence[Finding], images: SourceImages, *, min_frame_probability: float
) -> list[pydicom.Dataset]:
    """Referenced images in finding order, each once."""
    return list(_chosen(findings, images, min_frame_probability).keys_ds.values())


class _Chosen:
    def __init__(self) -> None:
        self.keys_ds: dict[str, pydicom.Dataset] = {}
        self.frames: dict[str, list[int]] = {}  # multi-frame instances: the chosen frames


def _chosen(
    findings: Sequence[Finding], images: SourceImages, min_frame_probability: float
) -> _Chosen:
    out = _Chosen()
    for f in findings:
        if f.status is ReviewStatus.REJECTED:
            continue
        if f.center_mm is not None:
            ds = images.nearest_slice(f.center_mm)
        elif f.sop_instance_uid is not None and f.probability >= min_frame_probability:
            ds = images.get(f.sop_instance_uid)
        else:
            continue
        uid = str(ds.SOPInstanceUID)
        out.keys_ds.setdefault(uid, ds)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1 and f.frame is not None:
            frames = out.frames.setdefault(uid, [])
            if f.frame not in frames:
                frames.append(f.frame)
    return out


def _add_frame_numbers(kos: pydicom.Dataset, frames: dict[str, list[int]]) -> None:
    """Referenced Frame Number (0008,1160) on each IMAGE item of a multi-frame instance: the
    key frames of an endoscopy clip, not the whole clip (TID 2010 IMAGE items are TID 300
    image references, whose Referenced SOP Sequence item may list frames)."""
    for item in kos.get("ContentSequence", []):
        if item.get("ValueType") != "IMAGE":
            continue
        ref = item.ReferencedSOPSequence[0]
        chosen = frames.get(str(ref.ReferencedSOPInstanceUID))
        if chosen:
            ref.ReferencedFrameNumber = sorted(chosen) if len(chosen) > 1 else chosen[0]


def build_kos(
    findings: Sequence[Finding],
    *,
    source_images: Sequence[pydicom.Dataset],
    reader_name: str | None = None,
    device_uid: str | None = None,
    device_name: str = "Loupe",
    manufacturer: str = "Loupe",
    description: str = "Key images of the AI findings kept by the reader",
    min_frame_probability: float = 0.5,
    series_number: int = KOS_SERIES_NUMBER,
    instance_number: int = 1,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.ko.KeyObjectSelectionDocument:
    """A KOS "Of Interest" referencing the key images; the reader as person observer when
    given, else Loupe as device observer."""
    images = SourceImages(source_images)
    chosen = _chosen(findings, images, min_frame_probability)
    keys = list(chosen.keys_ds.values())
    if not keys:
        raise ValueError("no key image: every finding was rejected or below the threshold")
    person = device = None
    if reader_name is not None:
        person = hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=reader_name
            ),
        )
    else:
        device = hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=device_uid or hd.UID(), name=device_name, manufacturer_name=manufacturer
            ),
        )
    content = hd.ko.KeyObjectSelection(
        document_title=OF_INTEREST,
        referenced_objects=keys,
        observer_person_context=person,
        observer_device_context=device,
        description=description,
    )
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=keys,
        content=content,
        series_instance_uid=series_instance_uid or hd.UID(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or hd.UID(),
        instance_number=instance_number,
        manufacturer=manufacturer,
    )
    _add_frame_numbers(kos, chosen.frames)
    return kos
